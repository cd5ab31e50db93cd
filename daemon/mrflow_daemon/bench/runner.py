"""Time a baseline preset (native) against a MrFlow preset on one engine, side by side.

Both recipes run in the same process on the same model, prompt, seed and
target size: first a warm-up of each (so one-time costs such as kernel
selection, allocator growth and lazy imports land in neither), then
`repeats` runs of each, alternating, so slow drift of the machine (thermal,
other load) hits both alike. Reported numbers are medians. Stage times come
from the engine's own per-stage timings, which synchronise the device at
every stage boundary.
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from mrflow_daemon.engine.events import Stage
from mrflow_daemon.engine.pipeline import MrFlowEngine
from mrflow_daemon.engine.request import GenerationRequest

# The stages of one generation, in the order they run (the native preset uses three of them).
STAGE_ORDER = [stage.value for stage in Stage if stage is not Stage.LOAD]
STAGE_LABELS = {
    "text_encode": "text encoding",
    "structure": "low-res steps (native: all steps)",
    "decode_lowres": "VAE decode (low-res)",
    "upscale": "upscale (Real-ESRGAN)",
    "encode": "VAE encode + noise",
    "refine": "refine steps",
    "decode": "final VAE decode",
}


@dataclass
class RecipeTiming:
    """All timed runs of one preset."""

    preset: str
    totals: list[float] = field(default_factory=list)
    cpu_totals: list[float] = field(default_factory=list)
    """CPU seconds this process used per run: on a shared CPU, steadier than wall time."""
    stages: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    refine_steps: int = 0
    lowres: tuple[int, int] = (0, 0)

    @property
    def median_total(self) -> float:
        return statistics.median(self.totals)

    def median_stages(self) -> dict[str, float]:
        keys = [key for key in STAGE_ORDER if any(key in run for run in self.stages)]
        return {key: statistics.median(run.get(key, 0.0) for run in self.stages) for key in keys}

    def as_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "steps": self.steps,
            "refine_steps": self.refine_steps,
            "lowres": list(self.lowres),
            "total_s": round(self.median_total, 4),
            "stages_s": {key: round(value, 4) for key, value in self.median_stages().items()},
            "runs_s": [round(value, 4) for value in self.totals],
            "cpu_s": round(statistics.median(self.cpu_totals), 4),
        }


@dataclass
class BenchResult:
    baseline: RecipeTiming
    mrflow: RecipeTiming

    @property
    def speedup(self) -> float:
        return self.baseline.median_total / self.mrflow.median_total

    @property
    def cpu_time_speedup(self) -> float:
        """The ratio of CPU seconds used: for CPU runs on a machine other work shares."""
        return statistics.median(self.baseline.cpu_totals) / statistics.median(
            self.mrflow.cpu_totals
        )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _timed_run(engine: MrFlowEngine, request: GenerationRequest, timing: RecipeTiming) -> None:
    synchronize(engine.device)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = engine.generate(request)
    synchronize(engine.device)
    timing.totals.append(time.perf_counter() - start)
    timing.cpu_totals.append(time.process_time() - cpu_start)
    timing.stages.append({key: value for key, value in result.timings.items() if key != "total"})
    plan = result.plan
    timing.steps = plan.structure_steps
    timing.refine_steps = plan.refine_steps
    timing.lowres = (plan.lowres_width, plan.lowres_height)


def run_bench(
    engine: MrFlowEngine,
    request: GenerationRequest,
    *,
    baseline: str = "native",
    preset: str = "paper",
    repeats: int = 3,
    warmup: int = 1,
    warmup_steps: int | None = 2,
    scale: int | None = None,
    log: Any = print,
) -> BenchResult:
    """Time `baseline` and `preset` on `engine` for `request` (its preset field is ignored).

    `scale` overrides the MrFlow preset's factor (4: 512 -> x4 -> 2048).
    Warm-up runs use `warmup_steps` structure steps (same shapes and stages,
    fewer repeats of the same step; None = the full count).
    """
    base = dataclasses.replace(request, preset=baseline, return_stages=False)
    mine = dataclasses.replace(request, preset=preset, scale=scale, return_stages=False)
    # Validate both plans before any model time is spent.
    engine.plan(base)
    engine.plan(mine)
    for index in range(warmup):
        for req in (base, mine):
            log(f"warm-up {index + 1}/{warmup}: {req.preset}")
            engine.generate(dataclasses.replace(req, steps=warmup_steps) if warmup_steps else req)
    result = BenchResult(RecipeTiming(baseline), RecipeTiming(preset))
    for index in range(repeats):
        _timed_run(engine, base, result.baseline)
        log(f"run {index + 1}/{repeats}: {baseline} {result.baseline.totals[-1]:.2f} s")
        _timed_run(engine, mine, result.mrflow)
        log(f"run {index + 1}/{repeats}: {preset} {result.mrflow.totals[-1]:.2f} s")
    return result


def format_stage_table(result: BenchResult) -> str:
    base, mine = result.baseline, result.mrflow
    base_stages, mine_stages = base.median_stages(), mine.median_stages()
    name_width = max(len(label) for label in STAGE_LABELS.values())
    header_base = f"{base.preset} ({base.steps})"
    header_mine = f"{mine.preset} ({mine.steps}+{mine.refine_steps})"
    lines = [
        f"{'stage (median seconds)':<{name_width}}  {header_base:>14}  {header_mine:>14}  {'share':>6}"
    ]
    for key in STAGE_ORDER:
        if key not in base_stages and key not in mine_stages:
            continue
        share = mine_stages.get(key, 0.0) / mine.median_total * 100
        lines.append(
            f"{STAGE_LABELS[key]:<{name_width}}  {_cell(base_stages.get(key)):>14}  "
            f"{_cell(mine_stages.get(key)):>14}  {share:5.1f}%"
        )
    other_base = base.median_total - sum(base_stages.values())
    other_mine = mine.median_total - sum(mine_stages.values())
    lines.append(
        f"{'other (PIL, bookkeeping)':<{name_width}}  {_cell(other_base):>14}  {_cell(other_mine):>14}  "
        f"{other_mine / mine.median_total * 100:5.1f}%"
    )
    lines.append(
        f"{'total':<{name_width}}  {_cell(base.median_total):>14}  {_cell(mine.median_total):>14}"
    )
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def machine_description(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
