"""What a caller asks the engine for. Validated here, before any model runs.

A request names a preset and may override any of its fields; `resolve_plan()`
in `plan.py` turns request + preset + model family into a concrete `Plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from mrflow_daemon.engine.presets import DEFAULT_PRESET

if TYPE_CHECKING:
    from PIL import Image


def eight_bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit greyscale scaled to 8 bits (Pillow's convert clips them: 32768 -> 255)."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    return image


def input_rgb(image: Image.Image) -> Image.Image:
    """An input image as RGB; transparent pixels are read as white paper, not as whatever
    colour they store (often black). The daemon and `mrflow generate` read inputs alike."""
    from PIL import Image

    image = eight_bit(image)
    if not image.has_transparency_data:
        return image.convert("RGB")
    paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(paper, image.convert("RGBA")).convert("RGB")


class Mode(str, Enum):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"  # refine an input image with a strength
    INPAINT = "inpaint"  # fill the white part of a mask; black pixels come back unchanged


@dataclass(frozen=True)
class LoraSpec:
    path: Path
    weight: float = 1.0


@dataclass
class GenerationRequest:
    prompt: str
    width: int = 1024
    height: int = 1024
    negative_prompt: str = ""
    preset: str = DEFAULT_PRESET
    # Per-request overrides of the preset (None: use the preset's / family's value).
    steps: int | None = None
    refine_steps: int | None = None
    refine_sigma: float | None = None
    scale: int | None = None
    guidance: float | None = None
    seed: int | None = None  # None: a random seed, reported back in the result
    # img2img / inpaint
    image: Image.Image | None = None
    mask: Image.Image | None = None  # L mode: 255 = regenerate, 0 = keep
    strength: float = 0.6
    loras: list[LoraSpec] = field(default_factory=list)
    return_stages: bool = True  # keep the low-res and upscaled images in the result

    @property
    def mode(self) -> Mode:
        if self.image is None:
            return Mode.TXT2IMG
        return Mode.INPAINT if self.mask is not None else Mode.IMG2IMG
