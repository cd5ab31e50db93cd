"""The analytic FLOP model against the published FLUX.1-dev numbers."""

from __future__ import annotations

import pytest
from mrflow_daemon.bench.flops import (
    FLUX_DEV,
    FLUX_DEV_COST,
    QWEN_IMAGE,
    T5_XXL,
    TERA,
    Recipe,
    count_flops,
    flop_table,
    flux_vae_flops,
    recipe_cost,
)

NATIVE = Recipe("native 50", False, 50)
PAPER = Recipe("12+1", True, 12, 1, 2)
X4 = Recipe("512 -> x4", True, 12, 1, 4)


@pytest.mark.parametrize(("side", "tflop"), [(512, 21.5), (1024, 74.4), (2048, 418.0)])
def test_flux_dev_step_cost_matches_the_published_numbers(side: int, tflop: float) -> None:
    assert FLUX_DEV.step_flops(side, side) / TERA == pytest.approx(tflop, rel=0.005)


def test_flux_dev_12_plus_1_transformer_ratio_is_11_2() -> None:
    native = recipe_cost(FLUX_DEV_COST, NATIVE, 1024, 1024)
    paper = recipe_cost(FLUX_DEV_COST, PAPER, 1024, 1024)
    assert native.transformer / paper.transformer == pytest.approx(11.2, abs=0.05)


def test_end_to_end_ratios_are_bounded_by_the_transformer_ratio() -> None:
    # Text encoders, VAE and super-resolution add cost MrFlow does not shrink, so the
    # end-to-end ratio is lower: about 10.5x at 1024 before the GAN, 27x for 512 -> x4 -> 2048.
    native = recipe_cost(FLUX_DEV_COST, NATIVE, 1024, 1024)
    paper = recipe_cost(FLUX_DEV_COST, PAPER, 1024, 1024)
    assert native.total is not None and paper.total is not None
    ratio = native.total / paper.total
    assert 9.8 < ratio < 10.6
    native_2k = recipe_cost(FLUX_DEV_COST, NATIVE, 2048, 2048)
    x4 = recipe_cost(FLUX_DEV_COST, X4, 2048, 2048)
    assert native_2k.total is not None and x4.total is not None
    assert native_2k.total / x4.total == pytest.approx(27, abs=1.0)


def test_vae_flops_are_counted_on_the_meta_device() -> None:
    decode = flux_vae_flops("decode", 1024, 1024)
    encode = flux_vae_flops("encode", 1024, 1024)
    assert decode is not None and encode is not None
    # The FLUX VAE decoder at 1024 px costs about 1/7 of a transformer step; the encoder less.
    assert 8 < decode / TERA < 13
    assert 0.3 < encode / decode < 0.6
    # Cost grows with the pixel count.
    smaller = flux_vae_flops("decode", 512, 512)
    assert smaller is not None and decode / smaller == pytest.approx(4, rel=0.2)


def test_count_flops_counts_a_matmul_exactly() -> None:
    import torch

    a = torch.empty(64, 32, device="meta")
    b = torch.empty(32, 16, device="meta")
    assert count_flops(lambda: a @ b) == 2 * 64 * 32 * 16


def test_t5_xxl_prompt_cost() -> None:
    # 4.6B parameters in its layers, 512 tokens, 2 FLOPs per multiply-add, plus attention.
    assert T5_XXL.flops() / TERA == pytest.approx(4.84, rel=0.01)


def test_qwen_image_costs_two_calls_per_step() -> None:
    one_call = QWEN_IMAGE.step_flops(1024, 1024) / QWEN_IMAGE.calls_per_step
    assert QWEN_IMAGE.calls_per_step == 2
    assert one_call / TERA == pytest.approx(69.9, rel=0.01)  # 60 blocks of 3072, 4096 + 94 tokens


def test_flop_table_rows() -> None:
    rows = flop_table()
    assert {(row.model, row.size) for row in rows} == {
        (model, size) for model in ("FLUX.1-dev", "Qwen-Image") for size in (1024, 2048)
    }
    for row in rows:
        ratio = row.end_to_end_ratio
        assert ratio is not None and 1 < ratio < row.transformer_ratio
        data = row.as_dict()
        assert data["transformer_ratio"] == pytest.approx(row.transformer_ratio, abs=0.01)
