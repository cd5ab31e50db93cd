"""Where Krita keeps its Python plugins and its settings file, on each platform.

Krita's resource folder holds `pykrita/` (Python plugins); `kritarc` (KConfig INI) holds,
among everything else, `[python] enable_NAME=true` for each enabled plugin:

    Linux (native, AppImage)  $XDG_DATA_HOME/krita (~/.local/share/krita)   $XDG_CONFIG_HOME/kritarc
    Linux (Flatpak)           ~/.var/app/org.kde.krita/data/krita            ~/.var/app/org.kde.krita/config/kritarc
    Windows                   %APPDATA%\\krita                                %LOCALAPPDATA%\\kritarc
    macOS                     ~/Library/Application Support/krita            ~/Library/Preferences/kritarc

The AppImage uses the same folders as a native install, so one profile serves both.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Platform = Literal["linux", "windows", "macos"]
FLATPAK_ID = "org.kde.krita"


def current_platform() -> Platform:
    if sys.platform == "win32":
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "linux"


@dataclass(frozen=True)
class KritaProfile:
    """One Krita installation's per-user folders."""

    label: str  # "native", "flatpak", ...
    resource_dir: Path  # holds pykrita/
    kritarc: Path

    @property
    def pykrita_dir(self) -> Path:
        return self.resource_dir / "pykrita"

    def exists(self) -> bool:
        """Krita has run with this profile (or something was installed into it)."""
        return self.resource_dir.is_dir() or self.kritarc.is_file()


def _env_dir(env: Mapping[str, str], name: str, fallback: Path) -> Path:
    value = env.get(name, "").strip()
    return Path(value).expanduser() if value else fallback


def known_profiles(
    platform: Platform | None = None, env: Mapping[str, str] | None = None, home: Path | None = None
) -> list[KritaProfile]:
    """Every profile Krita could use on `platform`, the usual one first."""
    platform = platform or current_platform()
    env = os.environ if env is None else env
    home = home or Path.home()
    if platform == "windows":
        appdata = _env_dir(env, "APPDATA", home / "AppData" / "Roaming")
        local = _env_dir(env, "LOCALAPPDATA", home / "AppData" / "Local")
        return [KritaProfile("windows", appdata / "krita", local / "kritarc")]
    if platform == "macos":
        return [
            KritaProfile(
                "macos",
                home / "Library" / "Application Support" / "krita",
                home / "Library" / "Preferences" / "kritarc",
            )
        ]
    data = _env_dir(env, "XDG_DATA_HOME", home / ".local" / "share")
    config = _env_dir(env, "XDG_CONFIG_HOME", home / ".config")
    flatpak = home / ".var" / "app" / FLATPAK_ID
    return [
        KritaProfile("native or AppImage", data / "krita", config / "kritarc"),
        KritaProfile("Flatpak", flatpak / "data" / "krita", flatpak / "config" / "kritarc"),
    ]


def target_profiles(
    krita_dir: Path | None = None,
    *,
    platform: Platform | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> list[KritaProfile]:
    """The profiles to install into.

    `krita_dir` (from --krita-dir) wins: Krita's resource folder, or its `pykrita` folder
    itself; its kritarc is the platform's usual one. Otherwise every profile that exists, or
    the usual one when Krita has never run (so the plugin is there on its first start).
    """
    profiles = known_profiles(platform, env, home)
    if krita_dir is not None:
        resource_dir = krita_dir.expanduser().resolve()
        if resource_dir.name == "pykrita":
            resource_dir = resource_dir.parent
        return [KritaProfile("--krita-dir", resource_dir, profiles[0].kritarc)]
    existing = [profile for profile in profiles if profile.exists()]
    return existing or profiles[:1]
