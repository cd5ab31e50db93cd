"""Tiny random pipelines in diffusers format, built fully offline.

They have the real architectures (FLUX.1 or Qwen-Image transformer, VAE,
text encoders, tokenizers, scheduler) at toy widths, are written with
`save_pretrained`, and load back through exactly the same
`MrFlowEngine.from_pretrained` code as a downloaded model. Their images are
noise-like (the weights are random); they exist so that every code path of
the engine, the daemon and the plugin can run on a laptop CPU in seconds.

Tokenizers are built from in-memory vocabularies, so nothing is downloaded:
a byte-level CLIP BPE vocabulary with no merges (every byte is a token),
a T5 unigram vocabulary of single characters, and a byte-level Qwen2 BPE
vocabulary with the chat-template special tokens.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Literal

TinyFamily = Literal["flux", "flux-schnell", "qwen"]
TINY_FAMILIES: tuple[str, ...] = ("flux", "flux-schnell", "qwen")

# The scheduler configs of the real models (their published scheduler_config.json values),
# so the plan of a tiny model has the same sigma schedule as the real one.
FLUX_DEV_SCHEDULER = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}
FLUX_SCHNELL_SCHEDULER = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": False,
}
QWEN_IMAGE_SCHEDULER = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 8192,
    "max_shift": 0.9,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": 0.02,
    "time_shift_type": "exponential",
    "use_dynamic_shifting": True,
}


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for the bytes 0..255 (GPT-2's table)."""
    visible = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = visible[:]
    extra = 0
    for byte in range(256):
        if byte not in visible:
            visible.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def byte_level_clip_tokenizer():  # type: ignore[no-untyped-def]
    """A CLIP tokenizer whose vocabulary is the 256 bytes (no merges): every byte is a token."""
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    alphabet = _byte_alphabet()
    # CLIP's BPE appends "</w>" to the last symbol of each word, so both forms are needed.
    pieces = specials + alphabet + [a + "</w>" for a in alphabet]
    vocab = {piece: index for index, piece in enumerate(pieces)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def character_t5_tokenizer():  # type: ignore[no-untyped-def]
    """A T5 unigram tokenizer over single ASCII characters (and their word-start forms)."""
    from transformers import T5TokenizerFast

    pieces = ["<pad>", "</s>", "<unk>", "▁"]
    chars = string.ascii_letters + string.digits + string.punctuation
    pieces += [c for c in chars] + ["▁" + c for c in chars]
    vocab = [
        (piece, 0.0 if index < 3 else -float(len(piece))) for index, piece in enumerate(pieces)
    ]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=512)


QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def byte_level_qwen_tokenizer():  # type: ignore[no-untyped-def]
    """A Qwen2 tokenizer over the 256 bytes plus the chat-template special tokens."""
    from tokenizers import AddedToken
    from transformers import Qwen2TokenizerFast

    vocab = {piece: index for index, piece in enumerate(_byte_alphabet())}
    tokenizer = Qwen2TokenizerFast(vocab=vocab, merges=[], model_max_length=2048)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True) for t in QWEN_SPECIAL_TOKENS]}
    )
    return tokenizer


def _flux_pipeline(schnell: bool):  # type: ignore[no-untyped-def]
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip_tokenizer = byte_level_clip_tokenizer()
    t5_tokenizer = character_t5_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(clip_tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            projection_dim=32,
            max_position_embeddings=77,
            bos_token_id=clip_tokenizer.bos_token_id,
            eos_token_id=clip_tokenizer.eos_token_id,
            pad_token_id=clip_tokenizer.pad_token_id,
        )
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    )
    latent_channels = 4
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=latent_channels * 4,  # 2x2 patches of latents, packed into channels
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=not schnell,
        axes_dims_rope=(4, 6, 6),
    )
    # Four resolution levels: an 8x spatial factor like the real FLUX VAE.
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=64,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=0.3611,
        shift_factor=0.1159,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        **(FLUX_SCHNELL_SCHEDULER if schnell else FLUX_DEV_SCHEDULER)
    )
    return FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )


def _qwen_pipeline():  # type: ignore[no-untyped-def]
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = byte_level_qwen_tokenizer()
    special = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    hidden = 32
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "rope_scaling": {"type": "default", "rope_type": "default", "mrope_section": [2, 2, 4]},
            "rope_theta": 1000000.0,
            "bos_token_id": special["<|endoftext|>"],
            "eos_token_id": special["<|im_end|>"],
            "pad_token_id": special["<|endoftext|>"],
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": hidden,
        },
        image_token_id=special["<|image_pad|>"],
        video_token_id=special["<|video_pad|>"],
        vision_start_token_id=special["<|vision_start|>"],
        vision_end_token_id=special["<|vision_end|>"],
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config)
    z_dim = 4
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=z_dim * 4,
        out_channels=z_dim,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=hidden,
        axes_dims_rope=(4, 6, 6),
    )
    # Three temporal-downsample entries: an 8x spatial factor like the real Qwen-Image VAE.
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=z_dim,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.1, -0.2, 0.05, 0.0],
        latents_std=[1.5, 0.8, 1.2, 1.0],
    )
    scheduler = FlowMatchEulerDiscreteScheduler(**QWEN_IMAGE_SCHEDULER)
    return QwenImagePipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


def make_tiny_model(path: str | Path, family: str = "flux", seed: int = 0) -> Path:
    """Write a tiny random pipeline of `family` ("flux", "flux-schnell" or "qwen") to `path`.

    Deterministic for a given seed. Returns the folder, which `from_pretrained` loads.
    """
    import torch

    if family not in TINY_FAMILIES:
        raise ValueError(
            f"unknown tiny model family {family!r}; allowed: {', '.join(TINY_FAMILIES)}"
        )
    target = Path(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = _qwen_pipeline() if family == "qwen" else _flux_pipeline(family == "flux-schnell")
    target.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(target)
    return target
