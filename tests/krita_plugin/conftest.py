"""Plugin tests run against `fake_krita` installed as the `krita` module.

Qt comes from the plugin's own shim (PySide6 in the project's virtual environment; Krita
itself uses PyQt). Nothing here needs a display.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fake_krita  # noqa: E402

_module = types.ModuleType("krita")
_module.__dict__.update(fake_krita.module_attributes())
sys.modules.setdefault("krita", _module)


@pytest.fixture
def krita() -> Iterator[fake_krita.Krita]:
    fake_krita.Krita.reset()
    yield fake_krita.Krita.instance()
    fake_krita.Krita.reset()
