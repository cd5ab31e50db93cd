"""The built-in default model: what `mrflow generate` and `mrflow demo` use without --model.

The small FLUX-architecture shapes model trained by the project (`mrflow train-builtin`,
docs/builtin-model.md) when this checkout ships its weights; otherwise the tiny random FLUX
pipeline (noise-like images, seconds on a CPU), created in the cache folder on first use.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mrflow_daemon import paths

BUILTIN_NAME = "builtin-tiny-flux"


def builtin_model_path() -> Path:
    """The built-in model's folder (the tiny random one is written on first use, offline)."""
    from mrflow_daemon.builtin import trained_weights

    trained = trained_weights()
    if trained is not None:
        return trained
    folder = paths.cache_dir() / BUILTIN_NAME
    if not (folder / "model_index.json").exists():
        from mrflow_daemon.engine.tiny_model import make_tiny_model

        partial = folder.with_name(BUILTIN_NAME + ".partial")
        make_tiny_model(partial, family="flux", seed=0)
        if folder.exists():
            shutil.rmtree(folder)
        partial.rename(folder)
    return folder
