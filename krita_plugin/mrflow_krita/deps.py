"""Find the plugin's pure-Python dependencies and say clearly what is missing.

Krita's embedded Python has only the standard library and PyQt. `mrflow install` copies
pure-Python msgpack, websockets and the `mrflow_protocol` package into `vendor/` next to this
file; this module puts that folder on `sys.path` before anything imports them. When one is
missing the docker shows `problems()` with the command that fixes it, never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parent / "vendor"
"""Where `mrflow install` places msgpack, websockets and mrflow_protocol (one folder each)."""

REQUIRED = ("msgpack", "websockets.sync.client", "mrflow_protocol")

FIX = "run `mrflow install` again (it copies them into {vendor}), then restart Krita"


@dataclass(frozen=True)
class Problem:
    module: str
    reason: str

    def __str__(self) -> str:
        return f"{self.module} cannot be imported ({self.reason})"


def use_vendored_packages() -> None:
    """Make the vendored copies importable, ahead of anything else on the path."""
    # The compiled msgpack extension does not exist for Krita's Python; use the fallback.
    os.environ.setdefault("MSGPACK_PUREPYTHON", "1")
    vendor = str(VENDOR_DIR)
    if VENDOR_DIR.is_dir() and vendor not in sys.path:
        sys.path.insert(0, vendor)


MIN_PYTHON = (3, 10)
"""The vendored packages' floor (mrflow_protocol and current websockets need 3.10)."""


def problems(version: tuple[int, int] = sys.version_info[:2]) -> list[Problem]:
    """Krita's Python when it is too old, else every required module that fails to import."""
    if version < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        return [
            Problem(
                "python",
                f"Krita runs Python {version[0]}.{version[1]}; MrFlow's plugin needs {need} or "
                "newer: on Windows and macOS that is Krita 5.2 or newer",
            )
        ]
    found = []
    for name in REQUIRED:
        try:
            importlib.import_module(name)
        except Exception as error:  # any import failure is reported, not raised
            found.append(Problem(name, f"{type(error).__name__}: {error}"))
    return found


def explain(found: list[Problem]) -> str:
    """A message for the docker: what is missing and how to fix it."""
    if [problem.module for problem in found] == ["python"]:
        return f"MrFlow cannot start: {found[0].reason}."
    lines = ["MrFlow cannot start: some of its files are missing."]
    lines += [f"  • {problem}" for problem in found]
    lines.append(FIX.format(vendor=VENDOR_DIR))
    return "\n".join(lines)
