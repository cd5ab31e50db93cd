"""`pull(name)`: install a catalog model, whatever its kind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mrflow_daemon import paths
from mrflow_daemon.models.catalog import (
    CATALOG,
    BuiltinEntry,
    PipelineEntry,
    WeightsEntry,
    find_entry,
)
from mrflow_daemon.models.download import download_file, sha256_of
from mrflow_daemon.models.errors import ModelStoreError, UnknownModelError


def pull(name: str, *, progress: bool = True, token: str | None = None) -> Path:
    """Download catalog model `name` unless an intact copy is installed; return its path."""
    entry = find_entry(name)
    if entry is None:
        raise UnknownModelError(
            f"{name!r} is not in the catalog. Models that can be pulled: "
            + ", ".join(e.name for e in CATALOG if not isinstance(e, BuiltinEntry))
        )
    if isinstance(entry, BuiltinEntry):
        from mrflow_daemon.engine.builtin import builtin_model_path

        return builtin_model_path()
    with _only_pull_of(entry.name):
        if isinstance(entry, WeightsEntry):
            return pull_weights(entry, progress=progress)
        from mrflow_daemon.models.hub import pull_pipeline

        return pull_pipeline(entry, token=token or os.environ.get("HF_TOKEN") or None)


@contextmanager
def _only_pull_of(name: str) -> Iterator[None]:
    """Two pulls of one model at once would write the same partial files: refuse the second."""
    from filelock import FileLock, Timeout

    lock = paths.models_dir() / f".{name}.pull.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(lock), timeout=0):
            yield
    except Timeout:
        raise ModelStoreError(
            f"another `mrflow models pull {name}` is running; wait for it to finish "
            f"(it holds {lock})"
        ) from None


def pull_weights(entry: WeightsEntry, *, progress: bool = True, url: str | None = None) -> Path:
    """Fetch a weights file (from `url` instead of the release URL when given, e.g. a mirror)."""
    destination = paths.upscalers_dir() / entry.filename
    if destination.is_file() and sha256_of(destination) == entry.sha256:
        return destination
    return download_file(
        url or entry.url,
        destination,
        sha256=entry.sha256,
        size_bytes=entry.size_bytes,
        progress=progress,
    )


__all__ = ["PipelineEntry", "pull", "pull_weights"]
