"""Who may talk to the daemon: the per-user token and the browser-origin policy.

The token is a random secret in the user's config folder, readable by that
user only (mode 0600). Every client (Krita plugin, tray, `mrflow client`)
reads the same file and sends it in its `hello`. Anyone who can read the file
could drive the GPU anyway, so it keeps out other users and, above all, web
pages: a browser lets any page open a websocket to localhost, but it always
sends an `Origin` header, and the daemon refuses such handshakes unless the
origin is allowed in the config.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
from collections.abc import Collection
from pathlib import Path

log = logging.getLogger(__name__)

TOKEN_BYTES = 32


class TokenFileError(RuntimeError):
    """The token file exists but cannot be used (empty, unreadable)."""


def ensure_token(path: Path) -> str:
    """Return the token stored at `path`, creating it (mode 0600) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        # O_EXCL: two daemons starting at once cannot overwrite each other's token.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token(path)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    log.info("created a new client token in %s", path)
    return token


def read_token(path: Path) -> str:
    """The token in an existing file; tightens loose permissions (POSIX) with a warning."""
    if os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("token file %s was readable by others (mode %o); setting 0600", path, mode)
            path.chmod(0o600)
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise TokenFileError(f"token file {path} is empty; delete it and a new one is created")
    return token


def token_matches(given: object, expected: str) -> bool:
    """Constant-time comparison, so response timing reveals nothing about the token."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def origin_allowed(origin: str | None, allowed_origins: Collection[str]) -> bool:
    """Non-browser clients send no Origin header; browsers always do and need an explicit allow.

    "*" in the allowed list admits every origin (never the default).
    """
    if origin is None:
        return True
    return "*" in allowed_origins or origin.rstrip("/") in {o.rstrip("/") for o in allowed_origins}
