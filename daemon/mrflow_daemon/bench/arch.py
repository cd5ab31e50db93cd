"""FLUX-architecture pipelines of chosen sizes with random weights, for timing.

Speed does not depend on what the weights are, only on their shapes, so a
benchmark can run the real FLUX.1-dev architecture (or a scaled-down one that
finishes on a CPU) without downloading anything. Every preset is a real
`FluxTransformer2DModel`, `AutoencoderKL`, `CLIPTextModel` and
`T5EncoderModel` assembled into a diffusers `FluxPipeline`, with the
tokenizers the engine's tiny models use (built offline).

Building is cheap at any size: modules are created with their parameters on
the meta device (no memory, no default initialisation), then each parameter
is allocated directly on the target device and dtype and filled with random
normal values in place, scaled by 1/sqrt(fan-in) so activations stay finite
through 57 blocks. Buffers (position ids and the like) are created normally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# The published FLUX.1-dev VAE (vae/config.json).
FLUX_DEV_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 16,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
    "force_upcast": True,
}

FLUX_DEV_TRANSFORMER_PARAMS = 11_901_408_320  # FLUX.1-dev transformer, as published


@dataclass(frozen=True)
class ArchPreset:
    """Shapes of one benchmark pipeline. flux-dev is the real FLUX.1-dev; the rest scale it down."""

    name: str
    description: str
    double_blocks: int
    single_blocks: int
    heads: int
    head_dim: int
    vae_channels: tuple[int, int, int, int]
    vae_layers_per_block: int
    clip: dict[str, int] = field(default_factory=dict)  # CLIPTextConfig sizes
    t5: dict[str, int] = field(default_factory=dict)  # T5Config sizes

    @property
    def hidden(self) -> int:
        return self.heads * self.head_dim

    @property
    def rope_axes(self) -> tuple[int, int, int]:
        """FLUX splits each head's rotary dims 1:3.5:3.5 over (text index, row, column): 16/56/56 of 128."""
        # Each axis needs an even number of dims (rotary pairs).
        first = max(2, self.head_dim // 16 * 2)
        rows = (self.head_dim - first) // 4 * 2
        return (first, rows, self.head_dim - first - rows)

    def summary(self) -> str:
        return (
            f"{self.name}: {self.double_blocks}+{self.single_blocks} blocks, {self.heads} heads x "
            f"{self.head_dim} = {self.hidden} wide; VAE {list(self.vae_channels)}; "
            f"CLIP {self.clip['hidden_size']}x{self.clip['num_hidden_layers']}, "
            f"T5 {self.t5['d_model']}x{self.t5['num_layers']}"
        )


def _small_clip(hidden: int, layers: int) -> dict[str, int]:
    return {
        "vocab_size": 49408,
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": max(1, hidden // 64),
        "projection_dim": hidden,
    }


def _small_t5(d_model: int, layers: int) -> dict[str, int]:
    heads = max(1, d_model // 64)
    return {
        "vocab_size": 32128,
        "d_model": d_model,
        "d_kv": d_model // heads,
        "d_ff": int(2.5 * d_model),
        "num_layers": layers,
        "num_heads": heads,
    }


CLIP_L = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "projection_dim": 768,
}
T5_XXL = {
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
}

ARCHES: dict[str, ArchPreset] = {
    a.name: a
    for a in (
        ArchPreset(
            name="tiny",
            description="for tests: runs in seconds",
            double_blocks=1,
            single_blocks=2,
            heads=2,
            head_dim=16,
            vae_channels=(8, 8, 16, 16),
            vae_layers_per_block=1,
            clip=_small_clip(32, 1),
            t5=_small_t5(32, 1),
        ),
        ArchPreset(
            name="small",
            description="a quick CPU check",
            double_blocks=2,
            single_blocks=4,
            heads=4,
            head_dim=64,
            vae_channels=(16, 16, 32, 32),
            vae_layers_per_block=1,
            clip=_small_clip(64, 2),
            t5=_small_t5(64, 2),
        ),
        # The shape measured on the project's 2-core machines: ~0.9 s/step at 512 px, ~5.8 s at 1024 on 2 cores.
        # VAE widths scale with the hidden size so the VAE costs about what it does next to
        # the real transformer (a 1024 px decode ~ 1/6 of a 1024 px step).
        ArchPreset(
            name="medium",
            description="the CPU benchmark: native 50 steps at 1024 in about 5 minutes on 2 cores",
            double_blocks=4,
            single_blocks=8,
            heads=4,
            head_dim=128,
            vae_channels=(16, 32, 64, 64),
            vae_layers_per_block=2,
            clip=_small_clip(128, 2),
            t5=_small_t5(128, 2),
        ),
        ArchPreset(
            name="large",
            description="a mid-size GPU model (about 1/20 of FLUX.1-dev)",
            double_blocks=8,
            single_blocks=16,
            heads=8,
            head_dim=128,
            vae_channels=(32, 64, 128, 128),
            vae_layers_per_block=2,
            clip=_small_clip(256, 4),
            t5=_small_t5(512, 4),
        ),
        ArchPreset(
            name="flux-dev",
            description="the real FLUX.1-dev shapes: 12B transformer, T5-XXL, CLIP-L, FLUX VAE",
            double_blocks=19,
            single_blocks=38,
            heads=24,
            head_dim=128,
            vae_channels=(128, 256, 512, 512),
            vae_layers_per_block=2,
            clip=CLIP_L,
            t5=T5_XXL,
        ),
    )
}


def get_arch(name: str) -> ArchPreset:
    try:
        return ARCHES[name]
    except KeyError:
        raise ValueError(f"unknown arch {name!r}; allowed: {', '.join(ARCHES)}") from None


# Building ------------------------------------------------------------------------------


def transformer_config(arch: ArchPreset) -> dict[str, Any]:
    return {
        "patch_size": 1,
        "in_channels": 64,  # 16 latent channels x 2x2 packed cells
        "num_layers": arch.double_blocks,
        "num_single_layers": arch.single_blocks,
        "attention_head_dim": arch.head_dim,
        "num_attention_heads": arch.heads,
        "joint_attention_dim": arch.t5["d_model"],
        "pooled_projection_dim": arch.clip["projection_dim"],
        "guidance_embeds": True,
        "axes_dims_rope": arch.rope_axes,
    }


def vae_config(arch: ArchPreset) -> dict[str, Any]:
    if arch.name == "flux-dev":
        return dict(FLUX_DEV_VAE)
    config = dict(FLUX_DEV_VAE)
    config["block_out_channels"] = list(arch.vae_channels)
    config["layers_per_block"] = arch.vae_layers_per_block
    config["norm_num_groups"] = min(32, arch.vae_channels[0])
    return config


def build_on_meta(factory: Any) -> Any:
    """Call `factory()` with parameters created on the meta device (buffers are real)."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return factory()


def count_parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def materialize(module: Any, device: Any, dtype: Any) -> Any:
    """Give every meta parameter real random storage on `device` in `dtype`, in place.

    Matrices and kernels: normal(0, 1/sqrt(fan_in)); 1-D `weight`s (norm
    scales): 1; biases and other vectors: 0. Uses the global torch RNG, so
    seed it first for repeatable weights.
    """
    import torch

    for submodule in module.modules():
        for name, param in list(submodule._parameters.items()):
            if param is None:
                continue
            data = torch.empty(param.shape, device=device, dtype=dtype)
            if data.ndim >= 2:
                fan_in = math.prod(data.shape[1:])
                data.normal_(0.0, 1.0 / math.sqrt(fan_in))
            elif name == "weight":
                data.fill_(1.0)
            else:
                data.zero_()
            submodule._parameters[name] = torch.nn.Parameter(data, requires_grad=False)
        for name, buffer in list(submodule._buffers.items()):
            if buffer is not None:
                # Float buffers follow the model's dtype, as from_pretrained(dtype=...) does.
                target = dtype if buffer.is_floating_point() else buffer.dtype
                submodule._buffers[name] = buffer.to(device=device, dtype=target)
    if callable(getattr(module, "tie_weights", None)):
        # transformers ties shared embeddings (T5's `shared` and `encoder.embed_tokens`) in
        # its normal constructor but not when built with empty weights; tie them as loading does.
        module.tie_weights()
    return module


def build_flux_pipeline(
    arch: ArchPreset, device: str = "cpu", dtype: Any = None, seed: int = 0
) -> Any:
    """A `FluxPipeline` of `arch` shapes with random weights on `device` in `dtype`."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from mrflow_daemon.engine.tiny_model import (
        FLUX_DEV_SCHEDULER,
        byte_level_clip_tokenizer,
        character_t5_tokenizer,
    )

    dtype = dtype or torch.float32
    clip_tokenizer = byte_level_clip_tokenizer()
    t5_tokenizer = character_t5_tokenizer()
    clip_config = CLIPTextConfig(
        **arch.clip,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=clip_tokenizer.bos_token_id,
        eos_token_id=clip_tokenizer.eos_token_id,
        pad_token_id=clip_tokenizer.pad_token_id,
    )
    t5_config = T5Config(
        **arch.t5,
        feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        is_encoder_decoder=False,
        use_cache=False,
    )
    with torch.random.fork_rng(
        devices=[torch.device(device)] if torch.device(device).type == "cuda" else []
    ):
        torch.manual_seed(seed)
        parts = {
            "transformer": lambda: FluxTransformer2DModel(**transformer_config(arch)),
            "text_encoder_2": lambda: T5EncoderModel(t5_config),
            "text_encoder": lambda: CLIPTextModel(clip_config),
            "vae": lambda: AutoencoderKL(**vae_config(arch)),
        }
        # Largest first: on a GPU each part is allocated straight in `dtype`, no fp32 copy.
        built = {
            name: materialize(build_on_meta(factory), device, dtype)
            for name, factory in parts.items()
        }
    for module in built.values():
        module.eval()
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_DEV_SCHEDULER),
        tokenizer=clip_tokenizer,
        tokenizer_2=t5_tokenizer,
        **built,
    )
