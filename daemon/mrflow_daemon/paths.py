"""Where MrFlow keeps its files, per platform (platformdirs).

`MRFLOW_HOME`, when set, puts every folder under that one directory instead
(tests, portable installs). Nothing here creates a folder; callers do, when
they first write.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "mrflow"


def _home() -> Path | None:
    value = os.environ.get("MRFLOW_HOME")
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    home = _home()
    return home / "config" if home else Path(platformdirs.user_config_dir(APP, appauthor=False))


def data_dir() -> Path:
    home = _home()
    return home / "data" if home else Path(platformdirs.user_data_dir(APP, appauthor=False))


def cache_dir() -> Path:
    home = _home()
    return home / "cache" if home else Path(platformdirs.user_cache_dir(APP, appauthor=False))


def log_dir() -> Path:
    home = _home()
    return home / "logs" if home else Path(platformdirs.user_log_dir(APP, appauthor=False))


def models_dir() -> Path:
    """Installed diffusion pipelines (one diffusers folder each) and upscaler weights."""
    return data_dir() / "models"


def upscalers_dir() -> Path:
    return models_dir() / "upscalers"


def config_file() -> Path:
    return config_dir() / "daemon.toml"


def token_file() -> Path:
    """The per-user secret every client sends at the handshake (mode 0600)."""
    return config_dir() / "token"
