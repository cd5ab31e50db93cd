"""Benchmark model shapes: the full FLUX.1-dev size built on the meta device only."""

from __future__ import annotations

import pytest
import torch
from mrflow_daemon.bench.arch import (
    ARCHES,
    FLUX_DEV_TRANSFORMER_PARAMS,
    build_flux_pipeline,
    build_on_meta,
    count_parameters,
    get_arch,
    materialize,
    transformer_config,
    vae_config,
)


def test_flux_dev_transformer_has_the_published_parameter_count() -> None:
    from diffusers import FluxTransformer2DModel

    arch = get_arch("flux-dev")
    model = build_on_meta(lambda: FluxTransformer2DModel(**transformer_config(arch)))
    assert count_parameters(model) == FLUX_DEV_TRANSFORMER_PARAMS  # 11.9B
    assert all(p.device.type == "meta" for p in model.parameters())


def test_flux_dev_text_encoders_and_vae_have_the_real_sizes() -> None:
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    arch = get_arch("flux-dev")
    t5 = build_on_meta(lambda: T5EncoderModel(T5Config(**arch.t5, feed_forward_proj="gated-gelu")))
    t5.tie_weights()
    clip = build_on_meta(lambda: CLIPTextModel(CLIPTextConfig(**arch.clip)))
    vae = build_on_meta(lambda: AutoencoderKL(**vae_config(arch)))
    assert count_parameters(t5) == 4_762_310_656  # T5-XXL encoder
    assert count_parameters(clip) == 123_060_480  # CLIP ViT-L/14 text model
    assert count_parameters(vae) == 83_819_683  # FLUX.1 VAE
    # bf16 (2 bytes each): everything fits a 40 GB budget with room for activations.
    total = (
        FLUX_DEV_TRANSFORMER_PARAMS
        + count_parameters(t5)
        + count_parameters(clip)
        + count_parameters(vae)
    )
    assert total * 2 < 34e9


@pytest.mark.parametrize("name", sorted(ARCHES))
def test_rotary_axes_fit_the_head(name: str) -> None:
    arch = ARCHES[name]
    assert sum(arch.rope_axes) == arch.head_dim
    assert all(axis % 2 == 0 for axis in arch.rope_axes)
    if name == "flux-dev":
        assert arch.rope_axes == (16, 56, 56)


def test_unknown_arch_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="tiny, small, medium, large, flux-dev"):
        get_arch("huge")


def test_materialize_fills_every_parameter_with_finite_values() -> None:
    layer = build_on_meta(
        lambda: torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.LayerNorm(32))
    )
    materialize(layer, "cpu", torch.bfloat16)
    linear, norm = layer[0], layer[1]
    assert linear.weight.dtype == torch.bfloat16 and linear.weight.device.type == "cpu"
    assert 0.08 < float(linear.weight.float().std()) < 0.17  # about 1/sqrt(64)
    assert torch.equal(linear.bias, torch.zeros(32, dtype=torch.bfloat16))
    assert torch.equal(norm.weight, torch.ones(32, dtype=torch.bfloat16))


def test_tiny_pipeline_is_a_real_flux_pipeline_that_runs() -> None:
    from diffusers import FluxPipeline

    pipe = build_flux_pipeline(get_arch("tiny"), "cpu", torch.float32, seed=0)
    assert isinstance(pipe, FluxPipeline)
    assert not any(p.device.type == "meta" for p in pipe.transformer.parameters())
    image = pipe("a cat", height=32, width=32, num_inference_steps=2, output_type="pt").images
    assert image.shape == (1, 3, 32, 32) and torch.isfinite(image).all()
    # Same seed, same weights.
    again = build_flux_pipeline(get_arch("tiny"), "cpu", torch.float32, seed=0)
    assert torch.equal(again.transformer.proj_out.weight, pipe.transformer.proj_out.weight)
