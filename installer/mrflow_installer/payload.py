"""The files `mrflow install` puts into a pykrita folder, and where each comes from.

    pykrita/mrflow_krita.desktop           tells Krita about the plugin
    pykrita/mrflow_krita/...               the plugin package
    pykrita/mrflow_krita/vendor/msgpack/   pure-Python copies of the plugin's dependencies:
    pykrita/mrflow_krita/vendor/websockets/  Krita's Python has only the standard library and
    pykrita/mrflow_krita/vendor/mrflow_protocol/  PyQt (see mrflow_krita.deps)

Only `.py` sources are vendored: compiled speedups are built for this Python, not Krita's,
and both libraries fall back to pure Python without them. Each vendored library keeps its
licence file beside it, as their licences ask.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sysconfig
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

PLUGIN = "mrflow_krita"
VENDOR = PurePosixPath(PLUGIN, "vendor")
VENDORED = {"msgpack": "msgpack", "websockets": "websockets", "mrflow_protocol": "mrflow"}
"""Vendored import package -> the distribution it comes from (for its licence)."""

_SKIP_DIRS = {"__pycache__", "vendor", "logs"}

RUNTIME_DIRS = (PurePosixPath(PLUGIN, "logs"),)
"""Folders the plugin itself writes beside its code (mrflow_krita.log): not installed, never
touched by an upgrade, removed by `mrflow uninstall` together with the plugin."""


class PayloadError(RuntimeError):
    """A file the plugin needs cannot be found in this installation."""


@dataclass(frozen=True)
class PayloadFile:
    relative: PurePosixPath  # inside pykrita/
    source: Path

    def read(self) -> bytes:
        return self.source.read_bytes()


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise PayloadError(
            f"the Python package {name!r} is not installed in {sysconfig.get_paths()['purelib']}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def desktop_file() -> Path:
    """krita_plugin/mrflow_krita.desktop: beside the package in a checkout, in share/ in a wheel."""
    candidates = [
        package_dir(PLUGIN).parent / f"{PLUGIN}.desktop",
        Path(sysconfig.get_path("data")) / "share" / "mrflow" / "krita" / f"{PLUGIN}.desktop",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise PayloadError(
        f"{PLUGIN}.desktop is missing (looked in {', '.join(map(str, candidates))}); "
        "reinstall MrFlow"
    )


def _tree(root: Path, into: PurePosixPath, *, sources_only: bool) -> list[PayloadFile]:
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or _SKIP_DIRS.intersection(relative.parts[:-1]):
            continue
        if path.suffix in {".pyc", ".pyo"} or (sources_only and path.suffix != ".py"):
            continue
        files.append(PayloadFile(into.joinpath(*relative.parts), path))
    return files


def _licence(distribution: str) -> Path | None:
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name.upper().startswith(("LICENSE", "COPYING")):
            located = Path(str(file.locate()))
            if located.is_file():
                return located
    return None


def vendored_versions() -> dict[str, tuple[str, str]]:
    """Vendored distribution -> (its version, the Python versions it supports)."""
    found = {}
    for distribution in VENDORED.values():
        if distribution == "mrflow":
            continue
        try:
            meta = importlib.metadata.metadata(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
        found[distribution] = (meta["Version"], str(meta.json.get("requires_python") or "any"))
    return found


def payload() -> list[PayloadFile]:
    """Every file to install, by its place under pykrita/."""
    files = [PayloadFile(PurePosixPath(f"{PLUGIN}.desktop"), desktop_file())]
    files += _tree(package_dir(PLUGIN), PurePosixPath(PLUGIN), sources_only=False)
    for package, distribution in VENDORED.items():
        files += _tree(package_dir(package), VENDOR / package, sources_only=True)
        licence = _licence(distribution)
        if licence is not None and distribution != "mrflow":
            files.append(PayloadFile(VENDOR / package / "LICENSE", licence))
    return files
