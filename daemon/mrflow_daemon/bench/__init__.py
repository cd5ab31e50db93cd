"""`mrflow bench`: native against MrFlow, timed on one model, plus the analytic FLOP ratios.

    flops.py   what a generation costs in FLOPs (FLUX.1-dev, Qwen-Image; no model built)
    arch.py    FLUX-architecture pipelines with random weights, tiny to full FLUX.1-dev size
    engine.py  the product's MrFlowEngine around such a pipeline
    runner.py  warm-up, repeats, medians, per-stage table
    load.py    the daemon load test (`mrflow bench load`)

Modules import torch lazily where they can, so `mrflow --help` stays fast.
"""
