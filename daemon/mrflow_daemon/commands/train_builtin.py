"""Train the built-in shapes model: VAE, x2 upscaler, text reading, then the FLUX transformer.

Seeded and resumable (--resume picks up the checkpoints in --out). On a CPU the default config
finishes within three hours on 2 cores; on a GPU, give --time-budget and the four parts share it.
The finished model is written to OUT/model (a FluxPipeline folder with an `upscaler/` beside its
components), with OUT/summary.json holding losses, speeds and quick quality numbers.
Example (one GPU, five minutes): mrflow train-builtin --device cuda --time-budget 300 --out runs/gpu
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path


def _shares(config: str) -> str:
    from mrflow_daemon.builtin.config import get_config

    return " / ".join(f"{share * 100:.0f}%%" for share in get_config(config).time_shares)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("builtin-train"),
        help="run folder (default: ./builtin-train)",
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ... (default: cpu)"
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"total training seconds, split VAE / upscaler / text / transformer {_shares('default')} "
        f"(cpu config: {_shares('cpu')}); the rest covers export and checks "
        "(default: the config's step counts)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    parser.add_argument(
        "--reuse-parts",
        type=Path,
        default=None,
        metavar="MODEL_DIR",
        help="take the VAE, upscaler and text encoders of an exported model of the same config "
        "(for example the shipped weights) and train only a new transformer",
    )
    parser.add_argument(
        "--continue-transformer",
        action="store_true",
        help="with --reuse-parts: start the transformer from that model's too (a fresh optimizer "
        "and learning-rate schedule over this run's time) instead of from scratch",
    )
    parser.add_argument(
        "--data-pool",
        type=int,
        default=None,
        metavar="N",
        help="reuse the encoded pictures of N transformer steps (0: fresh pictures every step; "
        "default: the config's, 1500 for cpu); a shorter run wants a smaller pool",
    )
    parser.add_argument(
        "--config",
        default="default",
        choices=("default", "cpu", "tiny"),
        help="sizes and step counts: default (GPU-sized), cpu (2 CPU cores, use with "
        "--time-budget), tiny (tests)",
    )
    parser.add_argument("--seed", type=int, default=None, help="override the config's seed")
    parser.add_argument(
        "--caption-dropout",
        type=float,
        default=None,
        metavar="P",
        help="share of transformer samples trained on the empty caption, 0 <= P < 1, so that "
        "true classifier-free guidance has an unconditional branch (default: the config's, 0.1 for "
        "cpu, 0 otherwise)",
    )
    parser.add_argument(
        "--kind-loss",
        type=float,
        default=None,
        metavar="W",
        help="weight of the auxiliary kind loss, 0 <= W <= 10: a linear head on the "
        "transformer's mid-depth image tokens predicts the kind of shape each covers "
        "(default: the config's, 0.5 for cpu, 0 = off otherwise)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="auto: bf16 autocast on CUDA, fp32 on CPU",
    )
    parser.add_argument(
        "--quick-check",
        type=int,
        default=32,
        metavar="N",
        help="after training, sample N held-out prompts natively and report the pass rate (0: skip)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _check_device(device: str) -> None:
    """A device name training runs on (cpu or cuda[:N]) that this machine has: the engine's
    `pick_device` checks CUDA and the index."""
    import torch

    from mrflow_daemon.engine.errors import EngineError
    from mrflow_daemon.engine.pipeline import pick_device

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise SystemExit(
            f"--device: {device!r} is not a torch device; allowed: cpu, cuda, cuda:N"
        ) from None
    if parsed.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device: training runs on cpu or cuda[:N], not {device!r}")
    try:
        pick_device(device)
    except EngineError as exc:
        raise SystemExit(f"--device {device}: {exc.message}; use --device cpu") from None


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from dataclasses import replace

    from mrflow_daemon.builtin.config import get_config
    from mrflow_daemon.builtin.train import ResumeMismatch, Trainer

    if args.time_budget is not None and not (
        math.isfinite(args.time_budget) and args.time_budget > 0
    ):
        raise SystemExit(
            f"--time-budget must be a positive, finite number of seconds, got {args.time_budget}"
        )
    if args.quick_check < 0:
        raise SystemExit(f"--quick-check must be 0 (skip) or more prompts, got {args.quick_check}")
    _check_device(args.device)
    if args.device.startswith("cuda") and args.data_pool is not None:
        raise SystemExit(
            "--data-pool is for CPU runs: on CUDA every step draws fresh pictures (the GPU renders "
            "them faster than it trains); leave it out"
        )
    if args.caption_dropout is not None and not 0 <= args.caption_dropout < 1:
        raise SystemExit(
            f"--caption-dropout must be at least 0 and below 1, got {args.caption_dropout}"
        )
    if args.kind_loss is not None and not 0 <= args.kind_loss <= 10:
        raise SystemExit(f"--kind-loss must be between 0 and 10, got {args.kind_loss}")
    if args.continue_transformer and args.reuse_parts is None:
        raise SystemExit(
            "--continue-transformer needs --reuse-parts MODEL_DIR: the model to continue"
        )
    if args.data_pool is not None and args.data_pool < 0:
        raise SystemExit(
            f"--data-pool must be 0 or a positive number of steps, got {args.data_pool}"
        )
    config = get_config(args.config)
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    if args.caption_dropout is not None:
        config = replace(
            config,
            transformer=replace(config.transformer, caption_dropout=args.caption_dropout),
        )
    if args.data_pool is not None:
        config = replace(config, transformer=replace(config.transformer, data_pool=args.data_pool))
    if args.kind_loss is not None:
        config = replace(
            config, transformer=replace(config.transformer, kind_loss_weight=args.kind_loss)
        )
    try:
        trainer = Trainer(
            config,
            args.out,
            device=args.device,
            time_budget=args.time_budget,
            resume=args.resume,
            progress=not args.no_progress,
            precision=args.precision,
            reuse_parts=args.reuse_parts,
            continue_transformer=args.continue_transformer,
        )
    except ValueError as exc:  # the model to reuse is no model, or not of this config's sizes
        if args.reuse_parts is None:
            raise
        raise SystemExit(f"--reuse-parts: {exc}") from None
    try:
        summary = trainer.run(quick_check=args.quick_check)
    except ResumeMismatch as exc:
        raise SystemExit(f"--resume: {exc}") from None
    short = {
        "model_dir": summary["model_dir"],
        "model_megabytes": round(summary["model_bytes"] / 1e6, 2),
        "wall_seconds": summary["wall_seconds"],
        **{
            part: {k: info[k] for k in ("steps", "seconds", "final_loss", "metrics")}
            for part, info in summary["parts"].items()
        },
    }
    print(json.dumps(short, indent=2))
    return 0


if (
    __name__ == "__main__"
):  # `python -m mrflow_daemon.commands.<this>`: no other subcommand's imports
    import sys

    _parser = argparse.ArgumentParser(prog="mrflow train-builtin", description=__doc__)
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
