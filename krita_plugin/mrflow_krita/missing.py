"""What the docker shows when MrFlow cannot start (files missing, Krita's Python too old).

It imports only the Qt shim: the rest of the plugin (and the protocol under it) may be what
failed to import.
"""

from __future__ import annotations

from typing import Any

from mrflow_krita.qt import QtCore, QtWidgets


class MissingPanel(QtWidgets.QWidget):  # type: ignore[misc]
    """Shown instead of the panel, with the explanation (selectable, to copy into a report)."""

    def __init__(self, explanation: str, parent: Any = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        label = QtWidgets.QLabel(explanation)
        label.setWordWrap(True)
        label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(label)
        layout.addStretch(1)
