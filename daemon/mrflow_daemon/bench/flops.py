"""The analytic cost of native against MrFlow generation, in FLOPs.

Transformer: both FLUX.1 and Qwen-Image are MMDiTs whose every block (FLUX's
double- and single-stream blocks alike, Qwen-Image's dual-stream blocks) costs,
per call, with L = image tokens + text tokens and hidden size d,

    12 d^2 L   multiply-adds in the linear layers (QKV 3d^2, output d^2, MLP 8d^2 per token)
    2 L^2 d    multiply-adds in attention (Q K^T and the weighted sum of V)

and a FLOP is half a multiply-add. For FLUX.1-dev (57 blocks, d = 3072, 512
T5 tokens) that gives 21.5 / 74.4 / 418 TFLOP per step at 512 / 1024 / 2048 px.
Embedders, modulation and norms are below 0.1 % and left out.

Text encoders: 2 * (per-token multiply-adds of their layers) * tokens plus
attention, from the published configurations. VAE and super-resolution
networks: counted exactly by running them on PyTorch's meta device under
`torch.utils.flop_counter` (no weights, no memory, no time), when diffusers
and spandrel are importable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TERA = 1e12


@dataclass(frozen=True)
class MMDiTShape:
    """What a transformer step costs depends on only these numbers."""

    name: str
    blocks: int  # all blocks, double- and single-stream
    hidden: int
    text_tokens: int  # text tokens the transformer attends to
    calls_per_step: int = 1  # 2 for true classifier-free guidance
    patch_pixels: int = 16  # one image token covers 16 x 16 pixels (VAE 8x, 2x2 patches)

    def image_tokens(self, width: int, height: int) -> int:
        return (width // self.patch_pixels) * (height // self.patch_pixels)

    def step_flops(self, width: int, height: int) -> float:
        """FLOPs of one sampling step (all transformer calls) at width x height."""
        length = self.image_tokens(width, height) + self.text_tokens
        macs_per_block = 12 * self.hidden**2 * length + 2 * length**2 * self.hidden
        return 2.0 * macs_per_block * self.blocks * self.calls_per_step


@dataclass(frozen=True)
class TextEncoderShape:
    """A transformer text encoder, costed per prompt."""

    name: str
    layers: int
    hidden: int
    attention_width: int  # heads x head dim of the queries
    kv_width: int  # heads x head dim of keys and values (smaller with grouped-query attention)
    ffn: int
    ffn_matrices: int  # 2 for a plain MLP, 3 for gated (GEGLU / SwiGLU)
    tokens: int

    def flops(self) -> float:
        per_token = (
            2 * self.hidden * self.attention_width  # Q and output projections
            + 2 * self.hidden * self.kv_width  # K and V projections
            + self.ffn_matrices * self.hidden * self.ffn
        )
        attention = 2 * self.tokens**2 * self.attention_width
        return 2.0 * self.layers * (per_token * self.tokens + attention)


# The published configurations.
FLUX_DEV = MMDiTShape("FLUX.1-dev", blocks=19 + 38, hidden=24 * 128, text_tokens=512)
# Qwen-Image: 60 dual-stream blocks, true CFG (a conditional and a negative call per step).
# Its prompts are not padded; 94 text tokens is a typical prompt after the 34-token template is dropped.
QWEN_IMAGE = MMDiTShape("Qwen-Image", blocks=60, hidden=24 * 128, text_tokens=94, calls_per_step=2)

CLIP_L = TextEncoderShape("CLIP-L", 12, 768, 768, 768, 3072, 2, 77)
T5_XXL = TextEncoderShape("T5-XXL", 24, 4096, 4096, 4096, 10240, 3, 512)
# Qwen2.5-VL-7B's language model: 28 heads of 128 for queries, 4 for keys/values, SwiGLU 18944.
QWEN25_VL_7B = TextEncoderShape("Qwen2.5-VL-7B", 28, 3584, 3584, 512, 18944, 3, 128)


@dataclass(frozen=True)
class Recipe:
    """Native: `steps` at full size. Staged: `steps` at size/scale, then `refine_steps` at full size."""

    label: str
    staged: bool
    steps: int
    refine_steps: int = 0
    scale: int = 1


@dataclass(frozen=True)
class ModelCost:
    """Everything one generation runs, for one model family."""

    transformer: MMDiTShape
    text_flops: float  # per generation (all prompts, positive and negative)
    vae_encode: Callable[[int, int], float | None]  # (width, height) -> FLOPs, None if unknown
    vae_decode: Callable[[int, int], float | None]
    upscale: Callable[[int, int, int], float | None]  # (low width, low height, factor) -> FLOPs


@dataclass(frozen=True)
class CostBreakdown:
    transformer: float
    other: float | None  # text encoders + VAE + super-resolution; None when not countable

    @property
    def total(self) -> float | None:
        return None if self.other is None else self.transformer + self.other


def recipe_cost(model: ModelCost, recipe: Recipe, width: int, height: int) -> CostBreakdown:
    shape = model.transformer
    if not recipe.staged:
        decode = model.vae_decode(width, height)
        other = None if decode is None else model.text_flops + decode
        return CostBreakdown(recipe.steps * shape.step_flops(width, height), other)
    low_w, low_h = width // recipe.scale, height // recipe.scale
    transformer = recipe.steps * shape.step_flops(
        low_w, low_h
    ) + recipe.refine_steps * shape.step_flops(width, height)
    parts = [
        model.vae_decode(low_w, low_h),
        model.upscale(low_w, low_h, recipe.scale),
        model.vae_encode(width, height),
        model.vae_decode(width, height),
    ]
    if any(part is None for part in parts):
        return CostBreakdown(transformer, None)
    return CostBreakdown(transformer, model.text_flops + sum(p for p in parts if p is not None))


# Counting real networks on the meta device ------------------------------------------------


def count_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of the matmuls, convolutions and attention `fn` runs (on meta tensors: instant)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


_CACHE: dict[tuple[Any, ...], float | None] = {}


def _cached(key: tuple[Any, ...], compute: Callable[[], float]) -> float | None:
    if key not in _CACHE:
        try:
            _CACHE[key] = compute()
        except Exception:  # an optional library missing or unable to run on meta: report "n/a"
            _CACHE[key] = None
    return _CACHE[key]


def _flux_vae() -> Any:
    import torch
    from diffusers import AutoencoderKL

    from mrflow_daemon.bench.arch import FLUX_DEV_VAE

    with torch.device("meta"):
        return AutoencoderKL(**FLUX_DEV_VAE)


def _qwen_vae() -> Any:
    import torch
    from diffusers import AutoencoderKLQwenImage

    with torch.device("meta"):
        return AutoencoderKLQwenImage(
            base_dim=96,
            z_dim=16,
            dim_mult=[1, 2, 4, 4],
            num_res_blocks=2,
            attn_scales=[],
            temperal_downsample=[False, True, True],
        )


def flux_vae_flops(kind: str, width: int, height: int) -> float | None:
    def compute() -> float:
        import torch

        vae = _flux_vae()
        if kind == "encode":
            x = torch.empty(1, 3, height, width, device="meta")
            return count_flops(lambda: vae.encode(x))
        z = torch.empty(1, 16, height // 8, width // 8, device="meta")
        return count_flops(lambda: vae.decode(z))

    return _cached(("flux-vae", kind, width, height), compute)


def qwen_vae_flops(kind: str, width: int, height: int) -> float | None:
    def compute() -> float:
        import torch

        vae = _qwen_vae()
        if kind == "encode":
            x = torch.empty(1, 3, 1, height, width, device="meta")
            return count_flops(lambda: vae.encode(x))
        z = torch.empty(1, 16, 1, height // 8, width // 8, device="meta")
        return count_flops(lambda: vae.decode(z))

    return _cached(("qwen-vae", kind, width, height), compute)


def realesrgan_flops(width: int, height: int, factor: int) -> float | None:
    """RealESRGAN_x4plus (the default upscaler) on a width x height input; x2 is x4 then a resample."""

    def compute() -> float:
        import torch
        from spandrel.architectures.ESRGAN import ESRGAN

        with torch.device("meta"):
            net = ESRGAN(num_filters=64, num_blocks=23, scale=4)
            x = torch.empty(1, 3, height, width)
            return count_flops(lambda: net(x))

    return _cached(("x4plus", width, height), compute)


FLUX_DEV_COST = ModelCost(
    FLUX_DEV,
    text_flops=CLIP_L.flops() + T5_XXL.flops(),
    vae_encode=lambda w, h: flux_vae_flops("encode", w, h),
    vae_decode=lambda w, h: flux_vae_flops("decode", w, h),
    upscale=realesrgan_flops,
)
QWEN_IMAGE_COST = ModelCost(
    QWEN_IMAGE,
    text_flops=2 * QWEN25_VL_7B.flops(),  # the prompt and the negative prompt
    vae_encode=lambda w, h: qwen_vae_flops("encode", w, h),
    vae_decode=lambda w, h: qwen_vae_flops("decode", w, h),
    upscale=realesrgan_flops,
)

# (target side, baseline, MrFlow recipe) rows of the report.
COMPARISONS: tuple[tuple[int, Recipe, Recipe], ...] = (
    (1024, Recipe("native 50", False, 50), Recipe("12+1 (x2)", True, 12, 1, 2)),
    (2048, Recipe("native 50", False, 50), Recipe("12+1 (x2)", True, 12, 1, 2)),
    (2048, Recipe("native 50", False, 50), Recipe("12+1 (512 -> x4)", True, 12, 1, 4)),
)


@dataclass(frozen=True)
class FlopRow:
    model: str
    size: int
    baseline: str
    recipe: str
    baseline_cost: CostBreakdown
    recipe_cost: CostBreakdown

    @property
    def transformer_ratio(self) -> float:
        return self.baseline_cost.transformer / self.recipe_cost.transformer

    @property
    def end_to_end_ratio(self) -> float | None:
        base, mine = self.baseline_cost.total, self.recipe_cost.total
        return None if base is None or mine is None else base / mine

    def as_dict(self) -> dict[str, Any]:
        def tera(value: float | None) -> float | None:
            return None if value is None else round(value / TERA, 2)

        ratio = self.end_to_end_ratio
        return {
            "model": self.model,
            "size": self.size,
            "baseline": self.baseline,
            "recipe": self.recipe,
            "baseline_transformer_tflop": tera(self.baseline_cost.transformer),
            "recipe_transformer_tflop": tera(self.recipe_cost.transformer),
            "baseline_total_tflop": tera(self.baseline_cost.total),
            "recipe_total_tflop": tera(self.recipe_cost.total),
            "transformer_ratio": round(self.transformer_ratio, 2),
            "end_to_end_ratio": None if ratio is None else round(ratio, 2),
        }


def flop_table() -> list[FlopRow]:
    rows = []
    for model in (FLUX_DEV_COST, QWEN_IMAGE_COST):
        for size, baseline, recipe in COMPARISONS:
            rows.append(
                FlopRow(
                    model.transformer.name,
                    size,
                    baseline.label,
                    recipe.label,
                    recipe_cost(model, baseline, size, size),
                    recipe_cost(model, recipe, size, size),
                )
            )
    return rows


def format_flop_table(rows: list[FlopRow]) -> str:
    def tera(value: float | None) -> str:
        return "n/a" if value is None else f"{value / TERA:,.0f}"

    lines = [
        "Analytic cost per image (TFLOP): transformer only, and end to end (text encoders, VAE and",
        "Real-ESRGAN x4plus included). Per-step transformer cost of FLUX.1-dev: "
        + " / ".join(f"{FLUX_DEV.step_flops(s, s) / TERA:.1f}" for s in (512, 1024, 2048))
        + " TFLOP at 512 / 1024 / 2048 px.",
        "",
        f"{'model':<11} {'size':>5}  {'recipe':<17} {'native':>8} {'MrFlow':>7} {'ratio':>6}"
        f"   {'native e2e':>10} {'MrFlow e2e':>10} {'ratio':>6}",
    ]
    for row in rows:
        ratio = row.end_to_end_ratio
        lines.append(
            f"{row.model:<11} {row.size:>5}  {row.recipe:<17} {tera(row.baseline_cost.transformer):>8}"
            f" {tera(row.recipe_cost.transformer):>7} {row.transformer_ratio:>5.1f}x"
            f"   {tera(row.baseline_cost.total):>10} {tera(row.recipe_cost.total):>10}"
            f" {'n/a' if ratio is None else f'{ratio:.1f}x':>6}"
        )
    return "\n".join(lines)
