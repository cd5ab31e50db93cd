"""Qt runs headless for the tray tests, with one QApplication for the whole session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session", autouse=True)
def qapp() -> object:
    """A QApplication (widgets need one; a QGuiApplication made first would be the wrong kind)."""
    widgets = pytest.importorskip("PySide6.QtWidgets")
    return widgets.QApplication.instance() or widgets.QApplication([])
