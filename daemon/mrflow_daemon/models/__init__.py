"""The model manager: a catalog of named models, downloads that resume and verify, and
`resolve(name_or_path)` which turns what a user typed into the path the engine loads.

    from mrflow_daemon.models import installed_models, resolve
    resolve("FLUX.1-schnell")  # -> models_dir()/FLUX.1-schnell, or ModelNotFoundError naming
                               #    `mrflow models pull FLUX.1-schnell`
"""

from __future__ import annotations

from mrflow_daemon.models.catalog import (
    BUILTIN_MODEL,
    CATALOG,
    DEFAULT_MODEL,
    BuiltinEntry,
    CatalogEntry,
    PipelineEntry,
    WeightsEntry,
    find_entry,
)
from mrflow_daemon.models.errors import (
    ChecksumMismatchError,
    DownloadError,
    GatedModelError,
    InsufficientDiskSpaceError,
    ModelStoreError,
    UnknownModelError,
)
from mrflow_daemon.models.pull import pull
from mrflow_daemon.models.store import InstalledModel, check, installed_models, remove, resolve

__all__ = [
    "BUILTIN_MODEL",
    "CATALOG",
    "DEFAULT_MODEL",
    "BuiltinEntry",
    "CatalogEntry",
    "ChecksumMismatchError",
    "DownloadError",
    "GatedModelError",
    "InstalledModel",
    "InsufficientDiskSpaceError",
    "ModelStoreError",
    "PipelineEntry",
    "UnknownModelError",
    "WeightsEntry",
    "check",
    "find_entry",
    "installed_models",
    "pull",
    "remove",
    "resolve",
]
