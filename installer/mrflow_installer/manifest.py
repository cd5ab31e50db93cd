"""The record of exactly what `mrflow install` added, so `mrflow uninstall` removes that and no more.

Kept as JSON in `paths.data_dir() / "install-manifest.json"`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mrflow_daemon import paths

FORMAT = 1


def manifest_path() -> Path:
    return paths.data_dir() / "install-manifest.json"


@dataclass
class ProfileRecord:
    label: str
    pykrita: str
    kritarc: str
    files: dict[str, str] = field(default_factory=dict)  # path under pykrita -> sha256
    kritarc_added_line: bool = False
    kritarc_added_group: bool = False
    kritarc_created: bool = False


@dataclass
class InstallManifest:
    version: str
    profiles: list[ProfileRecord] = field(default_factory=list)
    autostart: str | None = None  # the login entry we wrote
    token: str | None = None  # the token file, when the installer created it
    created_dirs: list[str] = field(default_factory=list)  # absolute, made by the installer

    def profile(self, pykrita: Path) -> ProfileRecord | None:
        return next((p for p in self.profiles if Path(p.pykrita) == pykrita), None)

    def save(self) -> None:
        path = manifest_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, **asdict(self)}
        text = json.dumps(data, indent=1, sort_keys=True) + "\n"
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return  # unchanged: keep the file's modification time too
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)

    @classmethod
    def load(cls) -> InstallManifest | None:
        path = manifest_path()
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError(f"an unknown format {data.get('format')!r}")
            profiles = [ProfileRecord(**p) for p in data.get("profiles", [])]
            return cls(
                data["version"],
                profiles,
                data.get("autostart"),
                data.get("token"),
                data.get("created_dirs", []),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"the install record {path} cannot be read: {exc}") from None
