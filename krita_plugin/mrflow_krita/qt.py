"""One import point for Qt: PyQt5 in Krita 5.1+, PyQt6 in Krita 6.

Every other module imports Qt from here and uses fully scoped enum names
(`QImage.Format.Format_ARGB32`), which all bindings accept. PySide6 is accepted
last so the Qt image code can be unit-tested in a virtual environment that has no
PyQt; Krita itself only ever ships PyQt. `MRFLOW_QT_API` forces one binding.
"""

from __future__ import annotations

import os
from typing import Any

QT_API: str
QtCore: Any
QtGui: Any
QtWidgets: Any
Signal: Any


def _load(name: str) -> bool:
    global QT_API, QtCore, QtGui, QtWidgets, Signal
    try:
        if name == "PyQt5":
            from PyQt5 import QtCore, QtGui, QtWidgets  # type: ignore[no-redef]

            Signal = QtCore.pyqtSignal
        elif name == "PyQt6":
            from PyQt6 import QtCore, QtGui, QtWidgets  # type: ignore[no-redef]

            Signal = QtCore.pyqtSignal
        elif name == "PySide6":
            from PySide6 import QtCore, QtGui, QtWidgets  # type: ignore[no-redef]

            Signal = QtCore.Signal
        else:
            return False
    except ImportError:
        return False
    QT_API = name
    return True


_forced = os.environ.get("MRFLOW_QT_API")
if not any(_load(name) for name in ([_forced] if _forced else ["PyQt5", "PyQt6", "PySide6"])):
    raise ImportError(
        "MrFlow needs Qt for Python: PyQt5 (Krita 5) or PyQt6 (Krita 6)"
        + (f"; MRFLOW_QT_API={_forced} is not importable" if _forced else "")
    )
