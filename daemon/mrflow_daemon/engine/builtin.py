"""The built-in default model: what `mrflow generate` and `mrflow demo` use without --model.

For now it is the tiny random FLUX pipeline (noise-like images, seconds on a
CPU), created in the cache folder on first use; a later release replaces it
with a small trained model.
"""

from __future__ import annotations

from pathlib import Path

from mrflow_daemon import paths

BUILTIN_NAME = "builtin-tiny-flux"


def builtin_model_path() -> Path:
    """The built-in model's folder, written on first use (a few seconds, offline)."""
    folder = paths.cache_dir() / BUILTIN_NAME
    if not (folder / "model_index.json").exists():
        from mrflow_daemon.engine.tiny_model import make_tiny_model

        partial = folder.with_name(BUILTIN_NAME + ".partial")
        make_tiny_model(partial, family="flux", seed=0)
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        partial.rename(folder)
    return folder
