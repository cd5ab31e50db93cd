"""A `MrFlowEngine` around a random-weight FLUX pipeline of a chosen arch preset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mrflow_daemon.bench.arch import ArchPreset, build_flux_pipeline
from mrflow_daemon.engine.pipeline import MrFlowEngine, pick_device, pick_dtype


def flux_dev_family() -> Any:
    """What the engine knows about FLUX.1-dev: the FamilyInfo `family_info` gives its real folder."""
    from mrflow_daemon.engine.plan import FamilyInfo
    from mrflow_daemon.engine.tiny_model import FLUX_DEV_SCHEDULER

    return FamilyInfo(
        "flux-dev", dict(FLUX_DEV_SCHEDULER), 50, 3.5, uses_guidance=True, true_cfg=False
    )


def build_bench_engine(
    arch: ArchPreset,
    *,
    device: str | None = None,
    dtype: str | None = None,
    upscaler: str | Path | None = None,
    scale: int = 2,
    max_side: int = 4096,
    seed: int = 0,
) -> MrFlowEngine:
    """The engine the product runs, on a FLUX pipeline of `arch` shapes with random weights."""
    from mrflow_daemon.engine.families import make_adapter
    from mrflow_daemon.upscale import load_upscaler

    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    pipe = build_flux_pipeline(arch, str(torch_device), torch_dtype, seed=seed)
    pipe.set_progress_bar_config(disable=True)
    adapter = make_adapter(pipe, flux_dev_family())
    adapter.fit_preview()
    sr = load_upscaler(upscaler, device=str(torch_device), dtype=torch_dtype, scale=scale)
    return MrFlowEngine(
        adapter,
        sr,
        model_name=f"random FLUX ({arch.name})",
        device=torch_device,
        dtype=torch_dtype,
        max_side=max_side,
    )
