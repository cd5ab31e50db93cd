"""The plugin's log file, which the docker's "Open log" button shows.

Kept in the plugin's own folder (`mrflow_krita/logs/mrflow_krita.log`) when it can be
written there, else in the system's temporary folder, so a user can find it next to the
plugin and attach it to a bug report.
"""

from __future__ import annotations

import logging
import tempfile
from logging.handlers import RotatingFileHandler
from pathlib import Path

LOGGER_NAME = "mrflow_krita"
log = logging.getLogger(LOGGER_NAME)

_log_file: Path | None = None


def _candidates() -> list[Path]:
    return [
        Path(__file__).resolve().parent / "logs",
        Path(tempfile.gettempdir()) / "mrflow_krita",
    ]


def setup_logging() -> Path | None:
    """Attach a rotating file handler once; return the log file's path (None if none works)."""
    global _log_file
    if _log_file is not None:
        return _log_file
    for folder in _candidates():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "mrflow_krita.log"
            handler = RotatingFileHandler(path, maxBytes=1_000_000, backupCount=2, encoding="utf-8")
        except OSError:
            continue
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        _log_file = path
        return path
    return None


def log_file() -> Path | None:
    return _log_file
