"""The built-in model's parts, in the real architectures that FLUX.1 loads through.

- VAE: diffusers `AutoencoderKL`, four levels (8x downsampling), 16 latent channels, no quant
  convs: the FLUX.1 VAE's layout at a small width.
- Transformer: diffusers `FluxTransformer2DModel` with a guidance embedding, so the folder loads as
  FLUX.1-dev. It is trained with random guidance values and learns to ignore them: there is no
  guidance distillation here, and the prototype showed strong guidance hurting the low-res stage.
- Text: a `CLIPTextModel` (pooled vector) on the engine's byte-level CLIP tokenizer, and a
  `T5EncoderModel` on a word-level unigram vocabulary of the caption grammar, trained jointly with
  the transformer. A random T5 attends almost uniformly and loses which colour belongs to which
  shape, and training alone is slow to find word order (a first CPU run bound colours to shapes
  on almost no prompts after 2,000 steps), so its relative-position attention starts local: each
  word begins by mixing in its neighbours ("red circle on the left"), and training refines that.
- Upscaler: Real-ESRGAN's SRVGGNetCompact (the realesr-animevideov3 architecture) at x2, with
  the parameter names spandrel detects (see upscaler_net.py).
"""

from __future__ import annotations

import string
from typing import Any

import torch

from mrflow_daemon.builtin.config import TrainConfig
from mrflow_daemon.builtin.world import (
    BACKGROUND_COLOURS,
    KINDS,
    POSITION_PHRASES,
    SHAPE_COLOURS,
)

# FLUX.1-dev's published scheduler config: the plan of the built-in model then has the same
# resolution-dependent shift as the real model.
SCHEDULER_CONFIG: dict[str, Any] = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}


def grammar_words() -> list[str]:
    words = {"a", "an", "and", "background"}
    words |= set(SHAPE_COLOURS) | set(BACKGROUND_COLOURS) | set(KINDS)
    for phrase in POSITION_PHRASES.values():
        words |= set(phrase.split())
    return sorted(words)


def make_clip_tokenizer():  # type: ignore[no-untyped-def]
    """The engine's offline byte-level CLIP tokenizer (every byte a token, 77 positions)."""
    from mrflow_daemon.engine.tiny_model import byte_level_clip_tokenizer

    return byte_level_clip_tokenizer()


def make_t5_tokenizer(max_length: int):  # type: ignore[no-untyped-def]
    """A T5 unigram tokenizer: one piece per grammar word, single characters for anything else.

    Built like the engine's tiny T5 tokenizer (an in-memory unigram vocabulary), plus whole-word
    pieces scored above their spelling, so a caption is about 20 tokens instead of 90.
    `model_max_length` is the padded length the model was trained with.
    """
    from transformers import T5TokenizerFast

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + word, -1.0) for word in grammar_words()]
    chars = string.ascii_letters + string.digits + string.punctuation
    pieces += [(c, -2.0) for c in chars]
    known = {piece for piece, _ in pieces}
    pieces += [("▁" + c, -2.0) for c in chars if "▁" + c not in known]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=max_length)


def make_pipeline(config: TrainConfig):  # type: ignore[no-untyped-def]
    """A freshly initialised FluxPipeline with the configured sizes (seed the RNG first)."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    text = config.text
    clip_tokenizer = make_clip_tokenizer()
    t5_tokenizer = make_t5_tokenizer(text.t5_max_length)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(clip_tokenizer),
            hidden_size=text.clip_hidden,
            intermediate_size=text.clip_hidden * 2,
            num_hidden_layers=text.clip_layers,
            num_attention_heads=text.clip_heads,
            projection_dim=text.clip_hidden,
            max_position_embeddings=77,
            bos_token_id=clip_tokenizer.bos_token_id,
            eos_token_id=clip_tokenizer.eos_token_id,
            pad_token_id=clip_tokenizer.pad_token_id,
        )
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tokenizer),
            d_model=text.t5_d_model,
            d_kv=text.t5_d_model // text.t5_heads,
            d_ff=text.t5_d_ff,
            num_layers=text.t5_layers,
            num_heads=text.t5_heads,
            relative_attention_num_buckets=16,
            relative_attention_max_distance=32,
            feed_forward_proj="gated-gelu",
        )
    )
    _local_attention_prior(text_encoder_2)
    vae_config = config.vae
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(vae_config.block_out_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_config.block_out_channels),
        block_out_channels=vae_config.block_out_channels,
        layers_per_block=vae_config.layers_per_block,
        latent_channels=vae_config.latent_channels,
        norm_num_groups=vae_config.norm_num_groups,
        mid_block_add_attention=vae_config.mid_attention,
        sample_size=256,
        use_quant_conv=False,
        use_post_quant_conv=False,
        # Replaced by the latents' measured statistics once the VAE is trained.
        scaling_factor=1.0,
        shift_factor=0.0,
    )
    t = config.transformer
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=vae_config.latent_channels * 4,  # 2x2 latent cells packed per token
        num_layers=t.num_layers,
        num_single_layers=t.num_single_layers,
        attention_head_dim=t.attention_head_dim,
        num_attention_heads=t.num_attention_heads,
        joint_attention_dim=text.t5_d_model,
        pooled_projection_dim=text.clip_hidden,
        guidance_embeds=True,
        axes_dims_rope=t.axes_dims_rope,
    )
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )


# Word offsets each T5 head starts out attending to (negative: earlier words), cycled over heads:
# look back over a phrase, look ahead over it, the word itself, and both sides.
LOCAL_WINDOWS: tuple[range, ...] = (range(-4, 0), range(1, 5), range(0, 1), range(-2, 3))
LOCAL_BIAS = 3.0  # added to the attention logits inside a head's window: ~20x the weight


def _local_attention_prior(t5: Any) -> None:
    """Start the T5's relative-position attention bias local (see the module docstring).

    T5 shares the first layer's bias table (buckets x heads) with every layer; each head gets
    `LOCAL_BIAS` on the buckets of its window's offsets, on top of the usual small random init.
    """
    from transformers.models.t5.modeling_t5 import T5Attention

    attention = t5.encoder.block[0].layer[0].SelfAttention
    table = attention.relative_attention_bias.weight  # [buckets, heads]
    with torch.no_grad():
        for head in range(table.shape[1]):
            offsets = torch.tensor(list(LOCAL_WINDOWS[head % len(LOCAL_WINDOWS)]))
            buckets = T5Attention._relative_position_bucket(
                offsets,
                bidirectional=True,
                num_buckets=attention.relative_attention_num_buckets,
                max_distance=attention.relative_attention_max_distance,
            )
            table[buckets.unique(), head] += LOCAL_BIAS


def make_upscaler(config: TrainConfig) -> torch.nn.Module:
    from mrflow_daemon.builtin.upscaler_net import CompactUpscaler

    up = config.upscaler
    return CompactUpscaler(num_feat=up.num_feat, num_conv=up.num_conv, scale=2)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
