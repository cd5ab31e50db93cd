"""The plugin's per-user settings, and where the daemon's token lives by default.

Settings are plain data; a `SettingsStore` (Krita's own kritarc through `readSetting` /
`writeSetting` inside Krita, a dict in tests) keeps them between sessions as strings.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Protocol

DEFAULT_URL = "ws://127.0.0.1:9817"  # mrflow_protocol.DEFAULT_PORT on loopback


def default_token_file() -> Path:
    """The same path as the daemon's `mrflow_daemon.paths.token_file()`.

    That function asks platformdirs for `user_config_dir("mrflow", appauthor=False)`; Krita's
    Python has no platformdirs, so its per-platform rule is repeated here (a test checks the
    two agree on this machine).
    """
    home = os.environ.get("MRFLOW_HOME")
    if home:
        return Path(home).expanduser() / "config" / "token"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "mrflow" / "token"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "mrflow" / "token"
    # Krita from Flathub sees XDG_CONFIG_HOME as its own sandbox folder
    # (~/.var/app/org.kde.krita/config); the daemon runs outside and writes ~/.config.
    xdg = "" if os.environ.get("FLATPAK_ID") else os.environ.get("XDG_CONFIG_HOME", "").strip()
    return Path(xdg or Path.home() / ".config").expanduser() / "mrflow" / "token"


class SettingsStore(Protocol):
    def read(self, key: str, default: str) -> str: ...

    def write(self, key: str, value: str) -> None: ...


@dataclass(frozen=True)
class Settings:
    daemon_url: str = DEFAULT_URL
    token_file: str = ""
    """Empty: `default_token_file()`."""
    model: str = ""
    """Empty: the daemon's default model."""
    preset: str = "paper"
    negative_prompt: str = ""
    strength: float = 0.6
    """How much Refine changes: 0 keeps the image, 1 repaints it."""
    guidance: float = 0.0
    """0: the model's own default; otherwise its guidance (embedded guidance for FLUX.1-dev, the
    true classifier-free guidance scale for Qwen-Image and the built-in model, where 1 turns it
    off and halves the time per step)."""
    max_side: int = 1024
    """The longest side generated; larger regions are generated at this size and scaled up."""

    def token_path(self) -> Path:
        return Path(self.token_file).expanduser() if self.token_file else default_token_file()

    def read_token(self) -> str | None:
        """The token, or None when the file is not there yet (the daemon creates it)."""
        try:
            return self.token_path().read_text(encoding="utf-8").strip() or None
        except OSError:
            return None


def load_settings(store: SettingsStore) -> Settings:
    """Stored values over the defaults; a value that does not parse keeps its default."""
    values: dict[str, object] = {}
    for spec in fields(Settings):
        default = getattr(Settings(), spec.name)
        raw = store.read(spec.name, str(default))
        try:
            values[spec.name] = type(default)(raw)
        except ValueError:
            values[spec.name] = default
    return replace(Settings(), **values)  # type: ignore[arg-type]


def save_settings(store: SettingsStore, settings: Settings) -> None:
    for spec in fields(Settings):
        store.write(spec.name, str(getattr(settings, spec.name)))


class MemoryStore:
    """A SettingsStore in a dict (tests, and a fallback when Krita cannot store settings)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def read(self, key: str, default: str) -> str:
        return self.values.get(key, default)

    def write(self, key: str, value: str) -> None:
        self.values[key] = value
