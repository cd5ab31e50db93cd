"""List the sampling presets: MrFlow's staged settings and the native baseline.

Every field can be overridden per generation (`mrflow generate --steps`,
`--refine-steps`, `--refine-sigma`, `--scale`).
"""

from __future__ import annotations

import argparse

from mrflow_daemon.builtin import model_card, refine_sigma, trained_weights
from mrflow_daemon.engine.presets import DEFAULT_PRESET, PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--names", action="store_true", help="print only the preset names, one per line"
    )


def format_presets() -> str:
    header = f"{'name':<9} {'steps':>5} {'refine':>6} {'sigma':>6} {'scale':>5}  description"
    lines = [header, "-" * len(header)]
    for preset in PRESETS.values():
        steps = "model" if preset.steps is None else str(preset.steps)
        refine = str(preset.refine_steps) if preset.staged else "-"
        sigma = f"{preset.refine_sigma:.2f}" if preset.staged else "-"
        scale = f"1/{preset.scale}" if preset.staged else "1"
        default = " (default)" if preset.name == DEFAULT_PRESET else ""
        lines.append(
            f"{preset.name:<9} {steps:>5} {refine:>6} {sigma:>6} {scale:>5}  {preset.description}{default}"
        )
    lines.append("")
    lines.append(
        "steps: low-res (stage 1) steps, 'model' = the model's own default (50; 4 for schnell)"
    )
    lines.append("refine/sigma: Euler steps from sigma to 0 at full size after the GAN upscale")
    weights = trained_weights()
    builtin = refine_sigma(model_card(weights)) if weights is not None else None
    lines.append(
        "a model's card may set its own sigma for every staged preset"
        + (f" (the built-in model's: {builtin:g})" if builtin is not None else "")
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print("\n".join(PRESETS) if args.names else format_presets())
    return 0
