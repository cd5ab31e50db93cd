"""`mrflow bench` end to end on the tiny arch, and its error handling."""

from __future__ import annotations

import json

import pytest
from mrflow_daemon.cli import main

STAGES = {"text_encode", "structure", "decode_lowres", "upscale", "encode", "refine", "decode"}


def test_bench_tiny_prints_a_stage_table_and_json_last(capsys: pytest.CaptureFixture[str]) -> None:
    args = "bench --arch tiny --width 64 --height 96 --repeats 1 --warmup 1 --device cpu"
    code = main([*args.split(), "--upscaler", "realesr-animevideov3", "--no-flops"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    assert report["arch"] == "tiny" and (report["width"], report["height"]) == (64, 96)
    native, mrflow = report["baseline"], report["mrflow"]
    assert (native["preset"], native["steps"], native["refine_steps"]) == ("native", 50, 0)
    assert (mrflow["preset"], mrflow["steps"], mrflow["refine_steps"]) == ("paper", 12, 1)
    assert mrflow["lowres"] == [32, 48]
    assert set(native["stages_s"]) == {"text_encode", "structure", "decode"}
    assert set(mrflow["stages_s"]) == STAGES
    assert report["speedup"] == pytest.approx(native["total_s"] / mrflow["total_s"], rel=0.01)
    assert report["predicted_transformer_speedup"] > 1
    assert report["cpu_time_speedup"] > 0 and native["cpu_s"] > 0
    text = "\n".join(lines)
    assert "upscale (Real-ESRGAN)" in text and "speedup" in text


def test_bench_flops_prints_the_table_without_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "flops"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    rows = json.loads(out[-1])["flops"]
    flux_1024 = next(r for r in rows if r["model"] == "FLUX.1-dev" and r["size"] == 1024)
    assert flux_1024["baseline_transformer_tflop"] == pytest.approx(50 * 74.36, rel=0.001)
    assert flux_1024["transformer_ratio"] == pytest.approx(11.2, abs=0.05)
    assert any("Qwen-Image" in line for line in out)


def test_unknown_preset_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--arch", "tiny", "--preset", "fastest"]) == 2
    err = capsys.readouterr().err
    assert "unknown --preset 'fastest'" in err and "paper" in err


def test_zero_repeats_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--arch", "tiny", "--repeats", "0"]) == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err
