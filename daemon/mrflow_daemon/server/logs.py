"""The daemon's logs: a rotating file in the platform's log folder, and the console."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
MAX_LOG_BYTES = 2 * 1024 * 1024
BACKUP_COUNT = 5

_HANDLER_MARK = "_mrflow_daemon_handler"


def configure_logging(level: str, log_file: Path | None, *, console: bool = True) -> None:
    """Attach the daemon's handlers to the root logger (idempotent: old ones are replaced)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                log_file, maxBytes=MAX_LOG_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8"
            )
        )
    if console:
        handlers.append(logging.StreamHandler())
    formatter = logging.Formatter(LOG_FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(level.upper())
    # websockets logs every failed handshake at INFO with a traceback; keep that at debug level.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, root.level))
