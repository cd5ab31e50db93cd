"""Training configurations of the built-in model: architecture sizes and how long each part trains.

`cpu` is the shipped model's architecture and recipe (2 CPU cores, with `--time-budget`); `default`
is a larger GPU-sized one: on a GPU, `--time-budget` sets the length and the batch sizes grow. `tiny` is the same code at toy sizes, for tests (seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# Pixel sizes (width, height) trained on: the 256-class targets and their 128-class low-res
# stages, square first. All multiples of 16, the FLUX size multiple.
HIGH_BUCKETS: tuple[tuple[int, int], ...] = (
    (256, 256),
    (320, 192),
    (192, 320),
    (288, 224),
    (224, 288),
)
LOW_BUCKETS: tuple[tuple[int, int], ...] = tuple((w // 2, h // 2) for w, h in HIGH_BUCKETS)


@dataclass(frozen=True)
class VaeConfig:
    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)
    layers_per_block: int = 1
    norm_num_groups: int = 16
    latent_channels: int = 16  # FLUX.1's latent width
    steps: int = 3000
    batch_size: int = 8
    lr: float = 4e-4
    # On the KL's mean per latent element, like the pixel losses' means: 1e-4 keeps latents
    # smooth at ~1% of the loss (LDM's 1e-6 is against sums, where it would dominate here).
    kl_weight: float = 1e-4
    colour_weight: float = 1.0  # loss on 8x8-averaged colours: keeps blue from drifting to purple
    # Train on square patches of this many pixels (0: whole pictures). The VAE is convolutional:
    # patches teach the same edges and flat colours at a fraction of the cost per step.
    crop: int = 0
    # With `crop`: the last share of the VAE's steps (or time) trains on whole pictures, this
    # many per batch. GroupNorm normalises over the whole picture, so a VAE trained on patches
    # alone reconstructs patches well (35 dB) but whole pictures badly (26 dB, white turned yellow).
    whole_fraction: float = 0.0
    whole_batch_size: int = 4
    # The attention layer in the VAE's middle block (FLUX.1 has one). Off when training on
    # patches: attention over a patch's few latents would not carry to a whole picture's many.
    mid_attention: bool = True


@dataclass(frozen=True)
class FinishPhase:
    """The last `share` of the transformer's steps or time: square pictures only, fresh each step.

    The quality targets are square (256 x 256 native, 128 x 128 low-res stage), and a 2-core run
    cannot afford to spread its last minutes over ten picture sizes. The shipped weights' last
    45 minutes trained this way (see docs/builtin-model.md for what it changed).
    """

    share: float = 0.0
    low_fraction: float = 0.5  # share of batches at 128 x 128 (the rest 256 x 256)
    high_noise_fraction: float = 0.5


@dataclass(frozen=True)
class TransformerConfig:
    num_layers: int = 2  # double-stream blocks
    num_single_layers: int = 6
    num_attention_heads: int = 4
    attention_head_dim: int = 56  # hidden width 224: 8.6M parameters
    axes_dims_rope: tuple[int, int, int] = (8, 24, 24)
    steps: int = 12000
    batch_size: int = 16
    lr: float = 3e-4
    warmup: int = 300
    ema_decay: float = 0.999
    low_fraction: float = 0.5  # share of batches at the 128-class low-res sizes
    refine_fraction: float = 0.25
    """Share of 256-class samples drawn at small sigma (the refine step), before the high-noise
    draw overrides some of them: about 0.25 x (1 - high-noise share) end up there."""
    # Share of samples drawn uniformly in [high_noise_floor, 1]: the noise levels where the
    # picture is still almost pure noise and the layout must come from the caption alone. The
    # logit-normal draw alone puts only ~10% of samples above sigma 0.8, and a first CPU run
    # there predicted shapes of the wrong colour in the wrong place after 2,000 steps.
    high_noise_fraction: float = 0.35
    high_noise_floor: float = 0.7
    # Loss weight of the tokens a shape covers (and their neighbours), against 1 for the rest.
    # A shape is 3-4% of the picture (two tokens wide at 128 px): unweighted, the background's
    # tokens dominate the loss, and a run 2,900 steps in changed its prediction by only 1.5%
    # between "at the top" and "at the bottom" (a right answer differs by ~25%).
    shape_loss_weight: float = 4.0
    guidance_range: tuple[float, float] = (1.0, 5.0)
    # Share of samples trained on the empty caption, so that true classifier-free guidance
    # (an empty negative prompt) has an unconditional prediction to push away from.
    caption_dropout: float = 0.0
    # Weight of the auxiliary kind loss (kind_loss.py): a linear head on mid-depth image tokens
    # predicts which kind of shape covers each token. 0: off.
    kind_loss_weight: float = 0.0
    # With caption dropout, the true CFG scale the model is sampled at: written to its card
    # (`builtin.json`), which the engine reads, and used by the trainer's quick check.
    true_cfg_scale: float = 2.0
    # The refine sigma of every staged preset on this model, written to its card (None: each
    # preset's own, the paper's 0.12 for `paper`). Measured with `mrflow eval --refine-sigma`.
    refine_sigma: float | None = None
    # 0: fresh pictures every step. N > 0: step k trains on the pictures of step k mod N, whose
    # latents are encoded once and kept in memory (the VAE encode is ~40% of a CPU step at 256 px);
    # noise and timesteps stay fresh per step.
    data_pool: int = 0
    finish: FinishPhase = field(default_factory=FinishPhase)


@dataclass(frozen=True)
class TextConfig:
    clip_hidden: int = 64
    clip_layers: int = 2
    clip_heads: int = 2
    t5_d_model: int = 128
    t5_layers: int = 3
    t5_heads: int = 4
    t5_d_ff: int = 384
    t5_max_length: int = 32  # tokens; a caption is at most 24 words
    # The reading part (reading.py): supervised caption reading before the transformer trains.
    reading_steps: int = 800
    reading_batch_size: int = 64
    reading_lr: float = 1e-3


@dataclass(frozen=True)
class UpscalerConfig:
    num_feat: int = 32
    num_conv: int = 8
    steps: int = 1500
    batch_size: int = 8
    lr: float = 5e-4
    crop: int = 0  # train on patches of this many target pixels (0: whole pictures)


@dataclass(frozen=True)
class TrainConfig:
    name: str = "default"
    seed: int = 0
    vae: VaeConfig = field(default_factory=VaeConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    text: TextConfig = field(default_factory=TextConfig)
    upscaler: UpscalerConfig = field(default_factory=UpscalerConfig)
    # Shares of --time-budget per part: VAE, upscaler, text reading, transformer (the rest is
    # export and the summary's quick check).
    time_shares: tuple[float, float, float, float] = (0.25, 0.08, 0.02, 0.60)
    cpu_time_cap: float = 10_200.0  # seconds; the whole default run on 2 CPU cores stays < 3 h
    checkpoint_every: float = 300.0  # seconds between mid-part checkpoints
    metric_images: int = 64  # held-out pictures for the VAE and upscaler numbers in the summary


def tiny_config() -> TrainConfig:
    return TrainConfig(
        name="tiny",
        vae=VaeConfig(block_out_channels=(8, 8, 16, 16), norm_num_groups=4, steps=3, batch_size=2),
        transformer=TransformerConfig(
            num_layers=1,
            num_single_layers=1,
            num_attention_heads=2,
            attention_head_dim=16,
            axes_dims_rope=(4, 6, 6),
            steps=3,
            batch_size=2,
            warmup=1,
        ),
        text=TextConfig(
            clip_hidden=16,
            clip_layers=1,
            t5_d_model=16,
            t5_layers=1,
            t5_heads=2,
            t5_d_ff=32,
            reading_steps=3,
            reading_batch_size=4,
        ),
        upscaler=UpscalerConfig(num_feat=8, num_conv=2, steps=3, batch_size=2),
        checkpoint_every=0.0,
        metric_images=4,
    )


def cpu_config() -> TrainConfig:
    """Sized for 2 CPU cores and a --time-budget of an hour or a few: a 1M-parameter VAE trained
    on 64 px patches at a high learning rate, a 5.2M-parameter transformer (hidden 192, 2 double +
    4 single blocks) whose encoded training pictures are reused, trained with 10% caption dropout
    (for true CFG) and the kind loss, and a small upscaler on patches.
    """
    return TrainConfig(
        name="cpu",
        vae=VaeConfig(
            block_out_channels=(16, 32, 64, 64),
            norm_num_groups=8,
            steps=100_000,  # the time budget ends each part
            batch_size=8,
            lr=1e-3,
            crop=64,
            whole_fraction=0.4,
            whole_batch_size=4,
            mid_attention=False,
        ),
        transformer=TransformerConfig(
            num_layers=2,
            num_single_layers=4,
            num_attention_heads=4,
            attention_head_dim=48,  # hidden width 192: 5.2M parameters
            axes_dims_rope=(8, 20, 20),
            steps=100_000,
            batch_size=16,
            lr=5e-4,
            warmup=100,
            ema_decay=0.998,  # ~500 steps: 0.999 would average over much of a short run
            data_pool=1500,  # 24,000 pictures, each seen about 3 times in 90 minutes
            # True CFG and the kind loss: what moved the kind of shape drawn (builtin-model.md,
            # "Closing the kind gap"); the shipped weights were continued with both.
            caption_dropout=0.1,
            kind_loss_weight=0.5,
            finish=FinishPhase(share=0.3),
            # 0.12 fixes too little of what a 64-token low-res stage gets wrong: see
            # docs/quality.md, "Refine sigma".
            refine_sigma=0.4,
        ),
        upscaler=UpscalerConfig(num_feat=24, num_conv=4, steps=100_000, batch_size=8, crop=96),
        time_shares=(0.10, 0.03, 0.02, 0.80),
        cpu_time_cap=10_200.0,
        checkpoint_every=300.0,
        metric_images=64,
    )


CONFIGS = {"default": TrainConfig, "cpu": cpu_config, "tiny": tiny_config}


def get_config(name: str) -> TrainConfig:
    try:
        return CONFIGS[name]()
    except KeyError:
        raise ValueError(f"unknown config {name!r}; allowed: {', '.join(CONFIGS)}") from None


def for_gpu(config: TrainConfig) -> TrainConfig:
    """Bigger batches for a CUDA device (under --time-budget the clock, not steps, ends a part).

    The transformer's batch grows 16x with twice the learning rate, on fresh pictures every step
    (encoding is cheap there, so no reused pool). Measured on an H200 for `cpu`: 3.7 steps/s at
    batch 256, host-bound (GPU 40-70% busy); bigger batches did not replace steps for quality
    (docs/builtin-model.md, "Closing the kind gap").
    """
    t = config.transformer
    return replace(
        config,
        vae=replace(config.vae, batch_size=config.vae.batch_size * 4),
        transformer=replace(t, batch_size=t.batch_size * 16, lr=t.lr * 2, data_pool=0),
        upscaler=replace(config.upscaler, batch_size=config.upscaler.batch_size * 4),
    )
