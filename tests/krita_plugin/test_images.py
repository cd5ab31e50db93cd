"""Pixel conversions, in this environment's Qt binding and in Debian's PyQt5 (Krita's)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import images_checks
import pytest

HERE = Path(__file__).resolve().parent
PLUGIN_ROOT = HERE.parents[1] / "krita_plugin"


@pytest.mark.parametrize("check", images_checks.CHECKS, ids=lambda check: check.__name__)
def test_images(check) -> None:  # type: ignore[no-untyped-def]
    check()


def test_images_under_pyqt5_as_in_krita() -> None:
    python = shutil.which("python3", path="/usr/bin")
    if (
        python is None
        or subprocess.run([python, "-c", "import PyQt5.QtGui"], capture_output=True).returncode
    ):
        pytest.skip("Debian's python3-pyqt5 is not installed (apt-get install python3-pyqt5)")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{PLUGIN_ROOT}{os.pathsep}{HERE}",
        "MRFLOW_QT_API": "PyQt5",
        "QT_QPA_PLATFORM": "offscreen",
    }
    done = subprocess.run(
        [python, str(HERE / "images_checks.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok PyQt5")
