"""Jobs as the plugin sees them: what was asked, where the answer goes, how far it got.

Plain data and a state machine fed by protocol messages; no Qt, no Krita, no sockets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum

from mrflow_krita.geometry import Rect


class JobKind(str, Enum):
    FILL_CANVAS = "fill_canvas"  # txt2img over the whole canvas
    FILL_SELECTION = "fill_selection"  # inpaint: the selection is the mask
    REFINE = "refine"  # img2img of the canvas or the selection

    @property
    def label(self) -> str:
        return {
            "fill_canvas": "Fill canvas",
            "fill_selection": "Fill selection",
            "refine": "Refine",
        }[self.value]


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"  # the result is in the preview layer, waiting for Apply or Discard
    APPLIED = "applied"
    DISCARDED = "discarded"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """No more messages will come for this job."""
        return self not in (JobState.QUEUED, JobState.RUNNING)


STAGE_LABELS = {
    "load": "loading model",
    "text_encode": "reading prompt",
    "structure": "structure",
    "decode_lowres": "upscaling",
    "upscale": "upscaling",
    "encode": "upscaling",
    "refine": "refining",
    "decode": "refining",
}
"""What the docker calls each engine stage: the artist sees three phases, not eight."""


def stage_label(stage: str) -> str:
    return STAGE_LABELS.get(stage, stage.replace("_", " "))


@dataclass
class Job:
    id: str
    kind: JobKind
    document_key: str
    prompt: str
    target: Rect
    """Where in the document the generated image goes (scaled to fit exactly)."""
    size: tuple[int, int]
    """What the daemon generates (width, height): the target rounded to the model's multiple."""
    shape: bytes | None = None
    """Feathered selection over `target` (one byte per pixel): the result's alpha; None = opaque."""
    canvas: tuple[int, int] = (0, 0)
    """The document's size when the job started: `target` is in its coordinates."""
    state: JobState = JobState.QUEUED
    queue_position: int | None = None
    stage: str = ""
    step: int = 0
    total: int = 0
    percent: float = 0.0
    eta: float | None = None
    error: str = ""
    preview_node: str | None = None
    result_png: bytes | None = None
    seed: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    created_at: float = field(default_factory=time.monotonic)
    last_painted: float = 0.0
    """When a preview was last painted (monotonic seconds), to keep Krita responsive."""

    @property
    def status_text(self) -> str:
        if self.state is JobState.QUEUED:
            ahead = self.queue_position
            return "queued" if not ahead else f"queued ({ahead} ahead)"
        if self.state is JobState.RUNNING:
            text = stage_label(self.stage) if self.stage else "starting"
            if self.total:
                text += f" {self.step}/{self.total}"
            if self.eta is not None:
                text += f" · {format_seconds(self.eta)} left"
            return text
        if self.state is JobState.FAILED:
            return f"failed: {self.error}"
        return self.state.value


def format_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


@dataclass
class HistoryEntry:
    """One finished result of a document, kept to apply again."""

    job_id: str
    kind: JobKind
    prompt: str
    seed: int
    target: Rect
    shape: bytes | None
    result_png: bytes
    thumbnail_png: bytes
    timings: dict[str, float]
    model: str = ""
    preset: str = ""
    canvas: tuple[int, int] = (0, 0)
    """The document's size when it was made (see `Job.canvas`)."""

    @property
    def total_seconds(self) -> float | None:
        return self.timings.get("total")


def short_prompt(prompt: str, limit: int = 40) -> str:
    """The prompt on one line, shortened to keep the Layers docker tidy."""
    text = " ".join(prompt.split()) or "no prompt"
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def layer_name(prompt: str, seed: int, limit: int = 40) -> str:
    """`[MrFlow] prompt (seed)`."""
    return f"[MrFlow] {short_prompt(prompt, limit)} ({seed})"
