"""Quality benchmark on the built-in shapes world: checker pass rates, native against MrFlow presets.

Checks ground truth, VAE reconstructions, and each preset's 256 x 256 generations over N held-out
prompt/seed pairs (never used in training), with 95% Wilson intervals, per-check rates, edge width
(sharpness) and seconds per image. Writes OUT/results.json and OUT/grid.png.
Example: mrflow eval --model builtin --n 500 --presets native,paper --out eval-results
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="builtin",
        help="a built-in-world model folder, or 'builtin' for the shipped one (default)",
    )
    parser.add_argument(
        "--n", type=int, default=500, help="held-out prompt/seed pairs (default 500)"
    )
    parser.add_argument(
        "--presets",
        default="native,paper",
        help="comma-separated presets to compare (default: native,paper; see `mrflow presets`)",
    )
    parser.add_argument("--out", type=Path, default=Path("eval-results"), help="output folder")
    parser.add_argument(
        "--device", default=None, help="torch device (default: CUDA if present, else CPU)"
    )
    parser.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="guidance for every row, 0 to 100 (default: the model's; for the built-in model its "
        "true CFG scale, 2; 1 turns true CFG off)",
    )
    parser.add_argument(
        "--refine-sigma",
        type=float,
        default=None,
        help="refine sigma for every staged preset, above 0 and at most 1 (default: the model "
        "card's, 0.4 for the built-in model; else each preset's, paper 0.12, text 0.18)",
    )
    parser.add_argument(
        "--refine-steps",
        type=int,
        default=None,
        help="refine Euler steps for every staged preset, 1 to 50 (default: each preset's, 1)",
    )
    parser.add_argument(
        "--native-from",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="compare against the native row of an earlier run's results.json (same model, "
        "--n and --guidance) instead of sampling native again",
    )
    parser.add_argument(
        "--extend",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="continue an earlier run with the same model, presets and options to --n pairs: its "
        "pairs are this run's first, so only the rest are sampled",
    )
    parser.add_argument(
        "--upscaler",
        default=None,
        help="upscaler weights (default: the model folder's upscaler/*.safetensors)",
    )


def _resolve_model(name: str) -> Path:
    if name == "builtin":
        from mrflow_daemon.builtin import trained_weights

        weights = trained_weights()
        if weights is None:
            raise SystemExit(
                "the built-in model's trained weights are not in this checkout "
                "(daemon/mrflow_daemon/builtin/weights); train them with `mrflow train-builtin` "
                "and pass --model OUT/model"
            )
        return weights
    return Path(name).expanduser()


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from tqdm import tqdm

    from mrflow_daemon.builtin.evaluate import (
        ExtendError,
        NativeFromError,
        evaluate,
        format_table,
    )
    from mrflow_daemon.engine.errors import EngineError
    from mrflow_daemon.engine.plan import MAX_REFINE_STEPS
    from mrflow_daemon.engine.presets import UnknownPresetError, get_preset

    if args.n < 1:
        raise SystemExit("--n must be at least 1")
    if args.guidance is not None and not 0 <= args.guidance <= 100:
        raise SystemExit(f"--guidance must be between 0 and 100, not {args.guidance:g}")
    if args.refine_sigma is not None and not 1e-4 <= args.refine_sigma <= 1:
        raise SystemExit(f"--refine-sigma must be between 0.0001 and 1, not {args.refine_sigma:g}")
    if args.refine_steps is not None and not 1 <= args.refine_steps <= MAX_REFINE_STEPS:
        raise SystemExit(
            f"--refine-steps must be between 1 and {MAX_REFINE_STEPS}, not {args.refine_steps}"
        )
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    try:
        for name in presets:
            get_preset(name)
    except UnknownPresetError as exc:
        raise SystemExit(f"--presets: {exc}") from None
    repeated = sorted({name for name in presets if presets.count(name) > 1})
    if repeated:
        raise SystemExit(f"--presets: name each preset once; named twice: {', '.join(repeated)}")
    bars: dict[str, tqdm] = {}

    def progress(name: str, done: int, total: int) -> None:
        if name not in bars:
            bars[name] = tqdm(total=total, desc=name, dynamic_ncols=True)
        bars[name].update(done - bars[name].n)
        if done == total:
            bars[name].close()

    try:
        results = evaluate(
            _resolve_model(args.model),
            n=args.n,
            presets=presets,
            out_dir=args.out,
            device=args.device,
            upscaler=args.upscaler,
            guidance=args.guidance,
            refine_sigma=args.refine_sigma,
            refine_steps=args.refine_steps,
            native_from=args.native_from,
            extend=args.extend,
            on_progress=progress,
        )
    except NativeFromError as exc:  # checked before any generation
        raise SystemExit(f"--native-from: {exc}") from None
    except ExtendError as exc:
        raise SystemExit(f"--extend: {exc}") from None
    except EngineError as exc:  # no such model, no such device, ...
        where = f"--{exc.field.replace('_', '-')}: " if exc.field else ""
        raise SystemExit(f"{where}{exc.message}") from None
    print(format_table(results))
    print(
        json.dumps({"results": str(args.out / "results.json"), "grid": str(args.out / "grid.png")})
    )
    return 0


if (
    __name__ == "__main__"
):  # `python -m mrflow_daemon.commands.<this>`: no other subcommand's imports
    import sys

    _parser = argparse.ArgumentParser(prog="mrflow eval", description=__doc__)
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
