"""Engines that load on first use and stay resident until unloaded.

Only the worker thread loads, runs and unloads engines (they own device
memory); the asyncio side only reads `loaded_names()` for status replies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mrflow_daemon.engine.events import CancelToken, Listener
    from mrflow_daemon.engine.request import GenerationRequest
    from mrflow_daemon.engine.result import GenerationResult

log = logging.getLogger(__name__)

BUILTIN = "builtin"


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
    is not installed yet.
    """
    from mrflow_daemon import models

    return models.resolve(name)
