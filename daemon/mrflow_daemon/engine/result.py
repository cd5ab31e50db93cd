"""What the engine returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from mrflow_daemon.engine.plan import Plan


@dataclass
class GenerationResult:
    image: Image.Image
    seed: int
    plan: Plan
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage, keyed by `Stage.value`, plus "total"."""
    lowres: Image.Image | None = None
    upscaled: Image.Image | None = None


@dataclass
class LowResCandidate:
    """Stage 1 alone: a cheap low-res image to choose from before refining."""

    image: Image.Image
    latents: torch.Tensor  # packed or unpacked per family; pass back to `refine()` unchanged
    seed: int
    plan: Plan
    seconds: float
