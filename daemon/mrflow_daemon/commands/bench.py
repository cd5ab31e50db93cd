"""Time native against MrFlow on the same model, prompt, seed and size, stage by stage.

The model is a FLUX-architecture pipeline with random weights (speed depends
on shapes, not on weights): `--arch flux-dev` is the real FLUX.1-dev size
(12B transformer, T5-XXL, CLIP-L, FLUX VAE) for a GPU; `medium` finishes
native 50 steps at 1024 px in minutes on a laptop CPU. Both recipes run in
one process: a warm-up of each, then --repeats alternating runs; medians are
reported with a per-stage table, the analytic FLOP ratios for the real
FLUX.1-dev and Qwen-Image, and, as the last line, machine-readable JSON.

`mrflow bench flops` prints only the analytic FLOP table (no model is built).
`mrflow bench load ...` runs the daemon load test.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any

from mrflow_daemon.bench.arch import ARCHES  # plain data: importing it costs nothing

# OpenMP workers spin-wait by default; with two cores and any other load a step
# can then run many times slower. Must be set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

LOAD_MODULE = "mrflow_daemon.bench.load"


def _load_test_module() -> Any | None:
    try:
        return importlib.import_module(LOAD_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name is not None and LOAD_MODULE.startswith(exc.name):
            return None
        raise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench_command", metavar="{flops,load}")
    sub.add_parser(
        "flops",
        help="print the analytic FLOP ratios of FLUX.1-dev and Qwen-Image and exit",
        description="Analytic cost of native 50 steps against MrFlow 12+1 at 1024 and 2048 px.",
    ).set_defaults(bench_command="flops")
    load = _load_test_module()
    if load is not None:
        load_parser = sub.add_parser(
            "load", help="load-test a running daemon", description=load.__doc__
        )
        load.add_arguments(load_parser)
        load_parser.set_defaults(bench_command="load", _load_run=load.run)

    parser.add_argument(
        "--arch",
        choices=list(ARCHES),
        default="medium",
        help="model shape with random weights: "
        + "; ".join(f"{a.name} = {a.description}" for a in ARCHES.values())
        + " (default: medium)",
    )
    parser.add_argument(
        "--width", type=int, default=1024, help="target width in pixels (default: 1024)"
    )
    parser.add_argument(
        "--height", type=int, default=1024, help="target height in pixels (default: 1024)"
    )
    parser.add_argument(
        "--preset", default="paper", help="the MrFlow preset to time (default: paper = 12+1)"
    )
    parser.add_argument(
        "--baseline", default="native", help="the preset to compare against (default: native)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed runs of each recipe; medians reported (default: 3)",
    )
    parser.add_argument(
        "--scale",
        type=int,
        choices=(2, 4),
        default=None,
        help="override the MrFlow preset's factor (4: a quarter-size first stage)",
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed warm-up runs of each recipe (default: 1)"
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=2,
        help="structure steps in a warm-up run: same shapes, less time (default: 2; 0 = full)",
    )
    parser.add_argument(
        "--device", default=None, help="cuda, mps or cpu (default: the best available)"
    )
    parser.add_argument(
        "--dtype", default=None, help="bf16, fp16 or fp32 (default: bf16 on CUDA, fp32 on CPU)"
    )
    parser.add_argument(
        "--upscaler",
        default=None,
        help="upscaler weights or name (default: Real-ESRGAN, as the engine uses)",
    )
    parser.add_argument(
        "--prompt",
        default="a lighthouse on a rocky coast at dusk, oil painting",
        help="the prompt both recipes use",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for both recipes (default: 0)")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)"
    )
    parser.add_argument("--no-flops", action="store_true", help="skip the analytic FLOP table")


def _fail(message: str) -> int:
    print(f"mrflow bench: error: {message}", file=sys.stderr)
    return 2


def _validate(args: argparse.Namespace) -> str | None:
    from mrflow_daemon.engine.presets import PRESETS

    for flag in ("preset", "baseline"):
        if getattr(args, flag) not in PRESETS:
            return f"unknown --{flag} {getattr(args, flag)!r}; allowed: {', '.join(PRESETS)}"
    if args.repeats < 1:
        return f"--repeats must be at least 1, got {args.repeats}"
    if args.warmup < 0 or args.warmup_steps < 0:
        return "--warmup and --warmup-steps must not be negative"
    if args.width < 16 or args.height < 16:
        return f"--width and --height must be at least 16, got {args.width}x{args.height}"
    return None


def run_flops() -> int:
    from mrflow_daemon.bench.flops import flop_table, format_flop_table

    rows = flop_table()
    print(format_flop_table(rows))
    print(json.dumps({"flops": [row.as_dict() for row in rows]}))
    return 0


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "bench_command", None)
    if command == "flops":
        return run_flops()
    if command == "load":
        return int(args._load_run(args) or 0)
    error = _validate(args)
    if error:
        return _fail(error)
    return run_timing(args)


def run_timing(args: argparse.Namespace) -> int:
    if "torch" in sys.modules and os.environ.get("OMP_WAIT_POLICY") != "PASSIVE":
        print(
            "note: torch was imported before OMP_WAIT_POLICY=PASSIVE could be set", file=sys.stderr
        )
    import torch

    from mrflow_daemon.bench.arch import get_arch
    from mrflow_daemon.bench.engine import build_bench_engine
    from mrflow_daemon.bench.flops import (
        MMDiTShape,
        Recipe,
        flop_table,
        format_flop_table,
        recipe_cost,
    )
    from mrflow_daemon.bench.runner import format_stage_table, machine_description, run_bench
    from mrflow_daemon.engine.errors import EngineError
    from mrflow_daemon.engine.presets import PRESETS
    from mrflow_daemon.engine.request import GenerationRequest

    if args.threads:
        torch.set_num_threads(args.threads)
    arch = get_arch(args.arch)
    preset = PRESETS[args.preset]
    print(f"building {arch.summary()}", flush=True)
    try:
        engine = build_bench_engine(
            arch,
            device=args.device,
            dtype=args.dtype,
            upscaler=args.upscaler,
            scale=args.scale or (preset.scale if preset.staged else 2),
            max_side=max(4096, args.width, args.height),
            seed=args.seed,
        )
        transformer = engine.adapter.pipe.transformer
        params = sum(p.numel() for p in transformer.parameters())
        print(
            f"transformer {params / 1e6:,.1f}M parameters on {engine.device} as {engine.dtype}; "
            f"upscaler {engine.upscaler.name}",
            flush=True,
        )
        request = GenerationRequest(args.prompt, args.width, args.height, seed=args.seed)
        result = run_bench(
            engine,
            request,
            baseline=args.baseline,
            preset=args.preset,
            repeats=args.repeats,
            warmup=args.warmup,
            warmup_steps=args.warmup_steps or None,
            scale=args.scale,
            log=lambda line: print(line, flush=True),
        )
    except (EngineError, ValueError) as exc:
        return _fail(str(exc))

    base, mine = result.baseline, result.mrflow
    # What the FLOP count of this very shape predicts for the transformer alone.
    shape = MMDiTShape(
        arch.name, arch.double_blocks + arch.single_blocks, arch.hidden, text_tokens=512
    )
    width, height = engine.plan(request).width, engine.plan(request).height
    predicted = (
        recipe_cost(_model_of(shape), Recipe("b", False, base.steps), width, height).transformer
        / recipe_cost(
            _model_of(shape),
            Recipe("m", True, mine.steps, mine.refine_steps, args.scale or preset.scale),
            width,
            height,
        ).transformer
        if preset.staged
        else None
    )

    print()
    print(f"model     {arch.summary()}")
    print(f"          transformer {params / 1e6:,.1f}M parameters, random weights")
    print(f"machine   {machine_description(engine.device)}")
    print(f"device    {engine.device} {engine.dtype}; upscaler {engine.upscaler.name}")
    print(
        f"target    {width}x{height}; {base.preset}: {base.steps} steps at full size; "
        f"{mine.preset}: {mine.steps} steps at {mine.lowres[0]}x{mine.lowres[1]} + {mine.refine_steps} at full size"
    )
    print(f"runs      {args.repeats} timed (+{args.warmup} warm-up) of each, medians\n")
    print(format_stage_table(result))
    print()
    print(
        f"speedup   {result.speedup:.2f}x end to end ({base.median_total:.2f} s -> {mine.median_total:.2f} s)"
    )
    if engine.device.type == "cpu":
        print(
            f"          {result.cpu_time_speedup:.2f}x in CPU seconds used (steadier when the CPU is shared)"
        )
    if predicted is not None:
        print(f"          (the transformer FLOPs of this shape alone predict {predicted:.2f}x)")

    report: dict[str, Any] = {
        "arch": arch.name,
        "shape": arch.summary(),
        "transformer_params": params,
        "device": str(engine.device),
        "dtype": str(engine.dtype).removeprefix("torch."),
        "upscaler": engine.upscaler.name,
        "width": width,
        "height": height,
        "seed": args.seed,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "machine": machine_description(engine.device),
        "baseline": base.as_dict(),
        "mrflow": mine.as_dict(),
        "speedup": round(result.speedup, 3),
        "cpu_time_speedup": round(result.cpu_time_speedup, 3),
        "predicted_transformer_speedup": None if predicted is None else round(predicted, 3),
    }
    if engine.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(engine.device) / 2**30
        report["peak_memory_gib"] = round(peak, 2)
        print(f"memory    {peak:.1f} GiB peak allocated on the GPU")
    if not args.no_flops:
        rows = flop_table()
        print()
        print(format_flop_table(rows))
        report["flops"] = [row.as_dict() for row in rows]
    print(json.dumps(report))
    return 0


def _model_of(shape: Any) -> Any:
    """A cost model with only the transformer counted (for this arch's own prediction)."""
    from mrflow_daemon.bench.flops import ModelCost

    return ModelCost(shape, 0.0, lambda w, h: 0.0, lambda w, h: 0.0, lambda w, h, f: 0.0)
