"""The plan of one generation: pure arithmetic, computed before any model runs.

`resolve_plan(request, family, max_side)` turns a request, its preset and the
model family into concrete sizes, step counts, the exact sigma lists and the
seeds. It needs only the scheduler's config (no weights), so it can be printed
(`Plan.describe()`) and tested on its own, and the sampler runs it unchanged.

Schedules
---------
Stage 1 (structure) is the model's own pipeline schedule at low resolution:
the base sigmas `linspace(1, 1/N, N)` shifted by the scheduler with the
resolution-dependent `mu` computed from the LOW-RES token count, exactly as
diffusers' FLUX and Qwen-Image pipelines do at that size. For img2img and
inpaint it is truncated by `strength` the way diffusers' img2img pipelines do.

The refine stage starts exactly at `sigma_start` and ends at 0 with no shift
(the MrFlow paper's rule: the shift exists to spend more steps at high noise,
and the refine stage has none). With N2 = 1 it is `[s, 0]`; with N2 > 1 it is
linear, `linspace(s, 0, N2 + 1)`: at such small sigmas the velocity field is
nearly straight, so equal sigma steps split the remaining error evenly.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mrflow_daemon.engine.errors import InvalidRequestError
from mrflow_daemon.engine.presets import UnknownPresetError, get_preset
from mrflow_daemon.engine.request import GenerationRequest, Mode

if TYPE_CHECKING:
    from diffusers import FlowMatchEulerDiscreteScheduler

MAX_STEPS = 200
MAX_REFINE_STEPS = 50
SUPPORTED_SCALES = (2, 4)
SEED_LIMIT = 2**63


@dataclass(frozen=True)
class FamilyInfo:
    """What the plan needs to know about a model family (no weights involved)."""

    name: str  # "flux-dev" | "flux-schnell" | "qwen-image"
    scheduler_config: dict[str, Any]
    default_steps: int  # the native pipeline's step count (50 dev / Qwen-Image, 4 schnell)
    default_guidance: float  # embedded guidance (FLUX dev) or true-CFG scale (Qwen-Image)
    uses_guidance: bool  # False for FLUX schnell: no guidance input at all
    true_cfg: bool  # two transformer calls per step (conditional and negative)
    size_multiple: int = 16  # VAE factor 8 x 2x2 latent patches
    distilled: bool = False
    refine_sigma: float | None = None
    """The model's own refine sigma for every staged preset (a built-in-world model's card);
    None: each preset's. A request's `refine_sigma` still wins."""


@dataclass(frozen=True)
class Plan:
    family: str
    preset: str
    mode: Mode
    staged: bool
    """False: the native pipeline at full resolution (stage 1 only, then decode)."""
    output_width: int
    output_height: int
    """The size asked for; the final image is resized to it if the rounded target differs."""
    width: int
    height: int
    """Target size, rounded to the family's size multiple."""
    lowres_width: int
    lowres_height: int
    """Stage-1 size (equal to the target for the native path)."""
    scale: int
    steps: int
    """Stage-1 schedule length N1 before img2img truncation."""
    mu: float
    """Resolution-dependent shift parameter from the stage-1 token count."""
    base_sigmas: tuple[float, ...]
    """Unshifted stage-1 sigmas handed to the scheduler with `mu`."""
    start_index: int
    """First stage-1 step run (0 for txt2img; > 0 when strength < 1)."""
    sigmas: tuple[float, ...]
    """Stage-1 sigmas actually run, ending with the scheduler's terminal 0."""
    refine_sigma: float
    refine_sigmas: tuple[float, ...]
    """Refine sigmas: refine_sigma ... 0 (empty for the native path)."""
    guidance: float | None
    true_cfg: bool
    seed: int
    refine_seed: int
    strength: float | None
    notes: tuple[str, ...] = field(default=())

    @property
    def structure_steps(self) -> int:
        """Stage-1 transformer steps actually run."""
        return len(self.sigmas) - 1

    @property
    def refine_steps(self) -> int:
        return max(len(self.refine_sigmas) - 1, 0)

    @property
    def transformer_calls(self) -> dict[str, int]:
        """Transformer forward passes at low and at full resolution (CFG doubles them)."""
        per_step = 2 if self.true_cfg else 1
        if not self.staged:
            return {"lowres": 0, "full": self.structure_steps * per_step}
        return {"lowres": self.structure_steps * per_step, "full": self.refine_steps * per_step}

    def describe(self) -> str:
        sigma_text = ", ".join(f"{s:.4f}" for s in self.sigmas)
        lines = [
            f"family    {self.family}   preset {self.preset}   mode {self.mode.value}",
            f"target    {self.width}x{self.height}"
            + (
                f" (resized to {self.output_width}x{self.output_height})"
                if (self.output_width, self.output_height) != (self.width, self.height)
                else ""
            ),
        ]
        if self.staged:
            lines += [
                f"stage 1   {self.lowres_width}x{self.lowres_height} (1/{self.scale}),"
                f" {self.structure_steps} of {self.steps} steps, mu {self.mu:.4f}",
                f"          sigmas [{sigma_text}]",
                f"upscale   x{self.scale} in pixel space, VAE encode at {self.width}x{self.height}",
                f"refine    {self.refine_steps} Euler step(s), sigmas "
                f"[{', '.join(f'{s:.4f}' for s in self.refine_sigmas)}] (no shift)",
            ]
        else:
            lines += [
                f"native    {self.structure_steps} of {self.steps} steps at full size, mu {self.mu:.4f}",
                f"          sigmas [{sigma_text}]",
            ]
        if self.guidance is not None:
            kind = "true CFG scale" if self.true_cfg else "embedded guidance"
            lines.append(f"guidance  {self.guidance:g} ({kind})")
        if self.strength is not None:
            lines.append(f"strength  {self.strength:g}")
        calls = self.transformer_calls
        lines.append(
            f"seeds     {self.seed} (stage 1), {self.refine_seed} (refine noise);"
            f" transformer calls: {calls['lowres']} low-res, {calls['full']} full-res"
        )
        lines += [f"note      {n}" for n in self.notes]
        return "\n".join(lines)


def calculate_mu(image_seq_len: int, config: dict[str, Any]) -> float:
    """The resolution-dependent shift of FLUX / Qwen-Image: linear in the token count."""
    base_len = config.get("base_image_seq_len", 256)
    max_len = config.get("max_image_seq_len", 4096)
    base_shift = config.get("base_shift", 0.5)
    max_shift = config.get("max_shift", 1.15)
    slope = (max_shift - base_shift) / (max_len - base_len)
    intercept = base_shift - slope * base_len
    return float(
        image_seq_len * slope + intercept
    )  # this order, to match the pipelines bit for bit


def structure_scheduler(
    config: dict[str, Any],
    base_sigmas: tuple[float, ...],
    mu: float,
    start_index: int = 0,
    device: Any = None,
) -> FlowMatchEulerDiscreteScheduler:
    """The stage-1 scheduler: the model's own, set to the plan's sigmas and start step."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    scheduler.set_timesteps(sigmas=list(base_sigmas), mu=mu, device=device)
    scheduler.set_begin_index(start_index)
    return scheduler


def refine_scheduler(
    config: dict[str, Any], refine_sigmas: tuple[float, ...], device: Any = None
) -> FlowMatchEulerDiscreteScheduler:
    """The refine scheduler: the model's scheduler with every shift turned off."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        config,
        use_dynamic_shifting=False,
        shift=1.0,
        shift_terminal=None,
        use_karras_sigmas=False,
        use_exponential_sigmas=False,
        use_beta_sigmas=False,
        invert_sigmas=False,
    )
    # The scheduler appends the terminal 0 itself.
    scheduler.set_timesteps(sigmas=list(refine_sigmas[:-1]), device=device)
    scheduler.set_begin_index(0)
    return scheduler


def refine_sigma_list(sigma_start: float, steps: int) -> tuple[float, ...]:
    """`[s, 0]` for one step; linear from s to 0 for more (see the module docstring)."""
    return (*(sigma_start * (steps - i) / steps for i in range(steps)), 0.0)


def derive_refine_seed(seed: int) -> int:
    """A separate, reproducible seed for the refine noise, so it is independent of stage 1."""
    digest = hashlib.sha256(f"mrflow-refine:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_LIMIT


def round_to_multiple(value: float, multiple: int) -> int:
    """Nearest multiple (halves round up), never below one multiple."""
    return max(multiple, math.floor(value / multiple + 0.5) * multiple)


def _check_int(value: Any, name: str, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{name} must be an integer, got {value!r}", field=name)
    if not low <= value <= high:
        raise InvalidRequestError(f"{name} must be {what}, got {value}", field=name)
    return value


def _check_float(value: Any, name: str, low: float, high: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidRequestError(f"{name} must be a number, got {value!r}", field=name)
    if not low <= value <= high:
        raise InvalidRequestError(f"{name} must be {what}, got {value}", field=name)
    return float(value)


def _check_images(request: GenerationRequest) -> None:
    if request.mask is not None and request.image is None:
        raise InvalidRequestError("a mask needs an input image (image is missing)", field="mask")
    image, mask = request.image, request.mask
    if image is not None and mask is not None and mask.size != image.size:
        raise InvalidRequestError(
            f"mask is {mask.width}x{mask.height} but the image is {image.width}x{image.height};"
            " they must have the same size",
            field="mask",
        )


def resolve_plan(request: GenerationRequest, family: FamilyInfo, max_side: int = 2048) -> Plan:
    """Validate `request` and compute its plan. Raises InvalidRequestError naming the field."""
    try:
        preset = get_preset(request.preset)
    except UnknownPresetError as exc:
        raise InvalidRequestError(str(exc), field="preset") from None
    if not isinstance(request.prompt, str):
        raise InvalidRequestError("prompt must be text", field="prompt")
    _check_images(request)
    mode = request.mode
    multiple = family.size_multiple
    notes: list[str] = []

    for name in ("width", "height"):
        _check_int(getattr(request, name), name, 1, max_side, f"between 1 and {max_side}")
    # Nearest multiple, but never past max_side (a request of exactly max_side must work).
    largest = max_side // multiple * multiple
    width = min(round_to_multiple(request.width, multiple), largest)
    height = min(round_to_multiple(request.height, multiple), largest)

    staged = preset.staged
    sigma_note: str | None = None  # said once the refine sigma is final (strength may lower it)
    if staged:
        scale = request.scale if request.scale is not None else preset.scale
        allowed = " or ".join(map(str, SUPPORTED_SCALES))
        if scale not in SUPPORTED_SCALES:
            raise InvalidRequestError(f"scale must be {allowed}, got {scale!r}", field="scale")
        lowres_width = round_to_multiple(width / scale, multiple)
        lowres_height = round_to_multiple(height / scale, multiple)
    else:
        scale, lowres_width, lowres_height = 1, width, height
        ignored = [
            name
            for name in ("scale", "refine_steps", "refine_sigma")
            if getattr(request, name) is not None
        ]
        if ignored:
            notes.append(
                f"preset {preset.name!r} samples at full size: {', '.join(ignored)} ignored"
            )

    default_steps = preset.steps if preset.steps is not None else family.default_steps
    steps = request.steps if request.steps is not None else default_steps
    _check_int(steps, "steps", 1, MAX_STEPS, f"between 1 and {MAX_STEPS}")

    if staged:
        refine_steps = (
            request.refine_steps if request.refine_steps is not None else preset.refine_steps
        )
        _check_int(
            refine_steps, "refine_steps", 1, MAX_REFINE_STEPS, f"between 1 and {MAX_REFINE_STEPS}"
        )
        refine_sigma = request.refine_sigma
        if refine_sigma is None:
            refine_sigma = preset.refine_sigma
            if family.refine_sigma is not None and family.refine_sigma != preset.refine_sigma:
                refine_sigma = family.refine_sigma
                sigma_note = (
                    f"this model refines from sigma {refine_sigma:g} (its model card), "
                    f"not preset {preset.name!r}'s {preset.refine_sigma:g}"
                )
        refine_sigma = _check_float(refine_sigma, "refine_sigma", 1e-4, 1.0, "between 0.0001 and 1")
        refine_sigmas = refine_sigma_list(refine_sigma, refine_steps)
    else:
        refine_sigma, refine_sigmas = 0.0, ()

    strength: float | None = None
    if mode is not Mode.TXT2IMG:
        strength = _check_float(request.strength, "strength", 0.0, 1.0, "in (0, 1]")
        if strength == 0.0:
            raise InvalidRequestError("strength must be in (0, 1], got 0", field="strength")

    guidance: float | None = None
    if family.uses_guidance:
        value = request.guidance if request.guidance is not None else family.default_guidance
        guidance = _check_float(value, "guidance", 0.0, 100.0, "between 0 and 100")
    elif request.guidance is not None:
        notes.append(f"{family.name} has no guidance input; guidance {request.guidance} ignored")
    true_cfg = family.true_cfg and guidance is not None and guidance > 1.0
    if request.negative_prompt and not family.true_cfg:
        notes.append(f"{family.name} uses embedded guidance; the negative prompt is not used")
    if preset.distilled_only and not family.distilled:
        notes.append(f"preset {preset.name!r} is meant for timestep-distilled models")

    if request.seed is None:
        seed = secrets.randbelow(SEED_LIMIT)
    else:
        seed = _check_int(
            request.seed, "seed", 0, SEED_LIMIT - 1, f"between 0 and {SEED_LIMIT - 1}"
        )

    # Stage-1 schedule, from the scheduler config alone (the same call the pipelines make).
    config = family.scheduler_config
    base_sigmas = tuple(float(s) for s in np.linspace(1.0, 1.0 / steps, steps))
    mu = calculate_mu((lowres_width // multiple) * (lowres_height // multiple), config)
    start_index = 0
    if strength is not None:
        # diffusers' img2img rule: run the last round(steps * strength) steps (floored).
        start_index = int(max(steps - min(steps * strength, steps), 0))
        if start_index >= steps:
            raise InvalidRequestError(
                f"strength {strength} with {steps} steps leaves no step to run; raise strength or steps",
                field="strength",
            )
    scheduler = structure_scheduler(config, base_sigmas, mu, start_index)
    sigmas = tuple(float(s) for s in scheduler.sigmas[start_index:].tolist())
    if (
        staged
        and strength is not None
        and request.refine_sigma is None
        and refine_sigma > sigmas[0]
    ):
        # A touch-up must not be repainted more than its strength asks: a default refine
        # sigma (the preset's or the model card's) above where stage 1 starts is lowered to it.
        sigma_note = (
            f"strength {strength:g} starts at sigma {sigmas[0]:.3f}: the refine step starts "
            f"there too, not at {refine_sigma:g}"
        )
        refine_sigma = sigmas[0]
        refine_sigmas = refine_sigma_list(refine_sigma, refine_steps)
    if sigma_note is not None:
        notes.append(sigma_note)

    return Plan(
        family=family.name,
        preset=preset.name,
        mode=mode,
        staged=staged,
        output_width=request.width,
        output_height=request.height,
        width=width,
        height=height,
        lowres_width=lowres_width,
        lowres_height=lowres_height,
        scale=scale,
        steps=steps,
        mu=mu,
        base_sigmas=base_sigmas,
        start_index=start_index,
        sigmas=sigmas,
        refine_sigma=refine_sigma,
        refine_sigmas=refine_sigmas,
        guidance=guidance,
        true_cfg=true_cfg,
        seed=seed,
        refine_seed=derive_refine_seed(seed),
        strength=strength,
        notes=tuple(notes),
    )
