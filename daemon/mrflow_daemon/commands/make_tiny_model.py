"""Write a tiny random pipeline in diffusers format, fully offline.

The model has the real architecture (FLUX.1 or Qwen-Image) at toy sizes and
random weights: its images are noise, but it loads and runs through exactly
the same code as a real model, in seconds on a CPU. Use it to try the CLI,
the daemon and the Krita plugin without downloading anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mrflow_daemon.engine.tiny_model import TINY_FAMILIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="folder to write the pipeline into (created)")
    parser.add_argument(
        "--family",
        choices=TINY_FAMILIES,
        default="flux",
        help="architecture: flux (FLUX.1-dev, embedded guidance), flux-schnell (no guidance input) "
        "or qwen (Qwen-Image, true CFG) (default: flux)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights (default: 0)"
    )


def run(args: argparse.Namespace) -> int:
    from mrflow_daemon.engine.tiny_model import make_tiny_model

    folder = make_tiny_model(args.dir, family=args.family, seed=args.seed)
    print(f"wrote a tiny {args.family} pipeline to {folder}")
    return 0
