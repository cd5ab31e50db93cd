"""Named sampling presets: plain data records, listed by `mrflow presets`.

Numbers are the MrFlow paper's (arXiv 2607.01642): the reference "12+1"
setting is 12 low-res steps at half the target size, a one-shot GAN x2
upscale, re-noise to sigma 0.12 and one Euler step back to sigma 0.
Every field can be overridden per request (see `GenerationRequest`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    staged: bool
    """False for `native`: the unmodified pipeline at full resolution."""
    steps: int | None
    """Stage-1 steps (all steps for native); None means the model family's own default."""
    refine_steps: int = 1
    refine_sigma: float = 0.12
    scale: int = 2
    """Low-res stage at target / scale; the upscaler enlarges by this factor."""
    distilled_only: bool = False
    """Meant for timestep-distilled models (FLUX.1-schnell, turbo LoRAs)."""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("paper", "MrFlow reference: 12 low-res steps + 1 refine step, sigma 0.12", True, 12),
        Preset("quality", "more structure steps: 20 + 1, sigma 0.12", True, 20),
        Preset("text", "stronger refine for legible text: 12 + 1, sigma 0.18", True, 12, 1, 0.18),
        Preset(
            "turbo",
            "for timestep-distilled models (FLUX.1-schnell): 4 + 1, sigma 0.25",
            True,
            4,
            1,
            0.25,
            distilled_only=True,
        ),
        Preset(
            "native",
            "the unmodified full-resolution pipeline (50 steps; 4 for schnell): the baseline",
            False,
            None,
            refine_steps=0,
            refine_sigma=0.0,
            scale=1,
        ),
    )
}

DEFAULT_PRESET = "paper"


class UnknownPresetError(ValueError):
    pass


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        allowed = ", ".join(PRESETS)
        raise UnknownPresetError(f"unknown preset {name!r}; allowed: {allowed}") from None
