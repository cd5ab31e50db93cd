"""Engines that load on first use and stay resident until unloaded.

Only the worker thread loads, runs and unloads engines (they own device
memory); the asyncio side only reads `loaded_names()` for status replies.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mrflow_daemon.engine.events import CancelToken, Listener
    from mrflow_daemon.engine.request import GenerationRequest
    from mrflow_daemon.engine.result import GenerationResult

log = logging.getLogger(__name__)


class Engine(Protocol):
    """What the daemon uses of `MrFlowEngine` (tests may wrap one)."""

    @property
    def family(self) -> str: ...

    def generate(
        self,
        request: GenerationRequest,
        listener: Listener = ...,
        cancel: CancelToken | None = None,
    ) -> GenerationResult: ...

    def unload(self) -> None: ...


@dataclass(frozen=True)
class EngineOptions:
    device: str | None = None
    dtype: str | None = None
    offload: bool = False
    upscaler: str | None = None
    max_side: int = 2048


EngineFactory = Callable[[Path, EngineOptions], Engine]


def load_mrflow_engine(path: Path, options: EngineOptions) -> Engine:
    """The real factory: `MrFlowEngine.from_pretrained` (imported here: torch is heavy)."""
    import diffusers
    import transformers

    from mrflow_daemon.engine.pipeline import MrFlowEngine

    # A daemon has no terminal to draw loading bars on; they would only litter the log.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    return MrFlowEngine.from_pretrained(
        path,
        device=options.device,
        dtype=options.dtype,
        offload=options.offload,
        upscaler=options.upscaler,
        max_side=options.max_side,
    )


def resolve_model(name: str) -> Path:
    """A model name (catalog, installed or 'builtin') or a diffusers folder -> the folder to load.

    Raises ModelNotFoundError naming the `mrflow models pull` command for a catalog model that
    is not installed yet, and UnsupportedModelError for anything that is not a folder of a
    supported family (its JSON configs are read, no weights): a bad name is refused before the
    loaded model is unloaded to make room for it.
    """
    from mrflow_daemon import models
    from mrflow_daemon.engine.errors import UnsupportedModelError
    from mrflow_daemon.engine.families import family_info

    path = models.resolve(name)
    if path.is_file():
        raise UnsupportedModelError(
            f"{name!r} is the file {path}, not a diffusers model folder (an upscaler is chosen "
            "with `mrflow serve --upscaler`)",
            field="model",
        )
    family_info(path)
    return path


class ModelHost:
    """Resident engines by resolved folder, least recently used first out."""

    def __init__(
        self,
        options: EngineOptions,
        *,
        factory: EngineFactory = load_mrflow_engine,
        resolver: Callable[[str], Path] = resolve_model,
        max_resident: int = 1,
    ) -> None:
        self.options = options
        self.factory = factory
        self.resolver = resolver
        self.max_resident = max_resident
        self._engines: OrderedDict[str, tuple[Path, Engine]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> Engine:
        """The engine for `name`, loading it (and unloading the oldest over the cap) if needed."""
        with self._lock:
            if name in self._engines:
                self._engines.move_to_end(name)
                return self._engines[name][1]
        path = self.resolver(name)
        with self._lock:
            for other, (other_path, engine) in self._engines.items():
                if other_path == path:  # the same folder under another name
                    self._engines.move_to_end(other)
                    return engine
        while len(self._engines) >= self.max_resident:
            oldest = next(iter(self._engines))
            self.unload(oldest)
        log.info("loading model %s from %s", name, path)
        engine = self.factory(path, self.options)
        with self._lock:
            self._engines[name] = (path, engine)
        return engine

    def unload(self, name: str | None = None) -> list[str]:
        """Unload one model (or all when `name` is None); returns the names unloaded."""
        with self._lock:
            names = list(self._engines) if name is None else [n for n in self._engines if n == name]
            engines = [self._engines.pop(n)[1] for n in names]
        for unloaded, engine in zip(names, engines, strict=True):
            log.info("unloading model %s", unloaded)
            engine.unload()
        if engines:
            free_device_memory()
        return names

    def is_loaded(self, name: str) -> bool:
        with self._lock:
            return name in self._engines

    def loaded_names(self) -> list[str]:
        with self._lock:
            return list(self._engines)


def free_device_memory() -> None:
    """Return cached device memory to the driver (after an unload or an out-of-memory error)."""
    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        mps.empty_cache()
