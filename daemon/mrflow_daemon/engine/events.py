"""What the engine reports while it works, and how a caller stops it.

This is the one interface between the engine and everything that shows its
progress (the CLI's progress bars, the daemon's websocket messages, tests).
A listener is any callable taking an `Event`; it runs on the engine's thread,
so it must be quick (copy what it needs and return).

Order for one staged generation:

    StageStarted(TEXT_ENCODE) ... StageFinished(TEXT_ENCODE)
    StageStarted(STRUCTURE)  StepPreview(step=1..N1)  StageFinished(STRUCTURE)
    StageStarted(DECODE_LOWRES) StageFinished(DECODE_LOWRES) StageImage("lowres")
    StageStarted(UPSCALE)     StageFinished(UPSCALE)  StageImage("upscaled")
    StageStarted(ENCODE)      StageFinished(ENCODE)
    StageStarted(REFINE)      StepProgress(step=1..N2) StageFinished(REFINE)
    StageStarted(DECODE)      StageFinished(DECODE)
    Finished(result)

The native preset reports TEXT_ENCODE, STRUCTURE (all steps, with previews)
and DECODE only. `explore()` reports TEXT_ENCODE once, then for each
candidate STRUCTURE (with previews), DECODE_LOWRES and StageImage("lowres"),
and no Finished. `refine()` reports TEXT_ENCODE, then DECODE_LOWRES through
Finished as above. Previews are at latent resolution (1/8 of the stage size).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image

    from mrflow_daemon.engine.result import GenerationResult


class Stage(str, Enum):
    """The parts of one generation, in the order they run."""

    LOAD = "load"  # loading or moving the pipeline (only when it happens inside a job)
    TEXT_ENCODE = "text_encode"
    STRUCTURE = "structure"  # stage 1: low-res sampling (or all steps, for native)
    DECODE_LOWRES = "decode_lowres"
    UPSCALE = "upscale"
    ENCODE = "encode"  # VAE encode of the upscaled image, then noise injection
    REFINE = "refine"
    DECODE = "decode"


@dataclass(frozen=True)
class StageStarted:
    stage: Stage


@dataclass(frozen=True)
class StageFinished:
    stage: Stage
    seconds: float


@dataclass(frozen=True)
class StepPreview:
    """One low-res (structure) step, with a cheap RGB preview of the predicted clean image."""

    stage: Stage
    step: int  # 1-based
    total: int
    image: Image.Image  # latent-to-RGB projection at latent resolution (no VAE decode)
    seconds: float  # time this step took


@dataclass(frozen=True)
class StepProgress:
    """One refine step (no preview: the refine stage is one or two steps)."""

    stage: Stage
    step: int
    total: int
    seconds: float


@dataclass(frozen=True)
class StageImage:
    """A decoded image at a stage boundary."""

    kind: Literal["lowres", "upscaled"]
    image: Image.Image


@dataclass(frozen=True)
class Finished:
    result: GenerationResult


Event = StageStarted | StageFinished | StepPreview | StepProgress | StageImage | Finished
Listener = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default listener."""


class GenerationCancelled(Exception):
    """Raised out of the engine when its `CancelToken` was set; nothing is returned."""


@dataclass
class CancelToken:
    """Set from any thread; the engine checks it between steps and stages."""

    _event: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or `timeout` seconds pass; whether it was cancelled."""
        return self._event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise GenerationCancelled()
