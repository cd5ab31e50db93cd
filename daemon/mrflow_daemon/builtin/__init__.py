"""The built-in model: a small FLUX-architecture pipeline trained on a procedural world of shapes.

world.py draws the world and its caption grammar, checker.py checks pictures against captions,
train.py trains every part (`mrflow train-builtin`), evaluate.py runs the quality benchmark
(`mrflow eval`). The trained weights ship in `weights/` (a FluxPipeline folder with the x2
upscaler in `weights/upscaler/`); see docs/builtin-model.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).parent / "weights"
UPSCALER_GLOB = "upscaler/*.safetensors"
CARD_FILE = "builtin.json"  # what a built-in-world model is: example prompt, working size


def trained_weights() -> Path | None:
    """The committed trained model folder, or None when this checkout has none."""
    return WEIGHTS_DIR if (WEIGHTS_DIR / "model_index.json").is_file() else None


def trained_upscaler(model_dir: Path | None = None) -> Path | None:
    """The x2 upscaler trained with the built-in model (inside its folder), or None."""
    folder = model_dir or trained_weights()
    if folder is None:
        return None
    found = sorted(folder.glob(UPSCALER_GLOB))
    return found[0] if found else None


def model_card(model_dir: Path) -> dict[str, Any] | None:
    """A built-in-world model's `builtin.json` (example prompt, working size), or None."""
    try:
        card = json.loads((model_dir / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def working_size(card: dict[str, Any] | None) -> tuple[int, int] | None:
    """The (width, height) a built-in-world model was trained for, from its card."""
    size = card.get("working_size") if card else None
    if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return size[0], size[1]
    return None


def true_cfg_scale(card: dict[str, Any] | None) -> float | None:
    """The true classifier-free guidance scale a built-in-world model is sampled at (from its
    card; set when it was trained with caption dropout, so the empty caption is a real
    unconditional prediction), or None for one sampled without true CFG."""
    value = card.get("true_cfg_scale") if card else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1.0 < value <= 20.0:
        return None
    return float(value)


def refine_sigma(card: dict[str, Any] | None) -> float | None:
    """The refine sigma a built-in-world model's staged presets use instead of their own (from
    its card), or None where each preset's own applies. A small model's low-res stage gets
    more wrong than FLUX.1's at 512 px, so its refine step must start from more noise to mend
    it (docs/quality.md measures the sweep)."""
    value = card.get("refine_sigma") if card else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1e-4 <= value <= 1.0:
        return None
    return float(value)


def max_side(model_dir: Path | None) -> int | None:
    """The longest side a built-in-world model folder was trained for (from its card), or None
    for any other folder. The daemon advertises it so clients size their requests to it."""
    size = working_size(model_card(model_dir)) if model_dir is not None else None
    return max(size) if size else None
