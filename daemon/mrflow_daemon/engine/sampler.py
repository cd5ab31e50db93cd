"""The MrFlow staged sampler, written once against a family adapter.

    1 structure  the model's own schedule at low resolution (previews every step)
    2 decode     VAE decode to pixels
    3 upscale    one-shot GAN super-resolution in pixel space to the target size
    4 encode     VAE encode at the target size, then x = (1 - s) * x0 + s * eps
                 with s = sigma_start and eps from its own seeded generator
    5 refine     N2 Euler steps from s to 0, no shift
    6 decode     VAE decode; inpaint composites the original back outside the mask

The native path is stage 1 at full resolution followed by the final decode.
img2img noises the (downscaled) input image to the first stage-1 sigma;
inpaint also keeps, after every step, the correctly-noised original outside
the mask, in stage 1 and in the refine stage, and finally pastes the original
pixels back outside a small feather so they come back bit-identical.

Every step is a plain Euler step of diffusers' FlowMatchEulerDiscreteScheduler
set to the plan's sigma list (see `plan.py`); nothing in diffusers is patched.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from PIL import Image, ImageFilter

from mrflow_daemon.engine.events import (
    CancelToken,
    Finished,
    Listener,
    Stage,
    StageFinished,
    StageImage,
    StageStarted,
    StepPreview,
    StepProgress,
)
from mrflow_daemon.engine.families.base import (
    FamilyAdapter,
    PromptEmbeds,
    pil_to_tensor,
    tensor_to_pil,
)
from mrflow_daemon.engine.plan import Plan, refine_scheduler, structure_scheduler
from mrflow_daemon.engine.request import GenerationRequest, Mode
from mrflow_daemon.engine.result import GenerationResult, LowResCandidate

FEATHER_GROW = 4
"""Pixels the inpaint mask grows before its edge is softened by as many again:
pixels farther than 2 * FEATHER_GROW from the mask come back bit-identical."""


class UpscalerLike(Protocol):
    """The part of `mrflow_daemon.upscale.Upscaler` the sampler uses."""

    def upscale_tensor(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor: ...


def add_noise(clean: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Rectified-flow forward process: x = (1 - sigma) * x0 + sigma * eps (in float32)."""
    mixed = (1.0 - sigma) * clean.float() + sigma * noise.float()
    return mixed.to(clean.dtype)


def feathered_mask(mask: Image.Image, grow: int = FEATHER_GROW) -> Image.Image:
    """Grow the mask by `grow` px and soften its edge by `grow` px more. Inside the original
    mask it stays 255; beyond 2 * grow px it is exactly 0 (a box blur has finite reach)."""
    grown = (
        mask.convert("L")
        .point(lambda v: 255 if v > 0 else 0)
        .filter(ImageFilter.MaxFilter(2 * grow + 1))
    )
    return grown.filter(ImageFilter.BoxBlur(grow))


@dataclass
class _Inputs:
    """Input image (and mask) for img2img / inpaint, prepared for one size."""

    latents: torch.Tensor  # packed model latents of the input image
    token_mask: torch.Tensor | None  # [1, tokens, 1]: 1 = regenerate


class StagedSampler:
    """Runs one plan on one adapter, reporting events and honouring a cancel token."""

    def __init__(
        self,
        adapter: FamilyAdapter,
        upscaler: UpscalerLike | None,
        listener: Listener,
        cancel: CancelToken | None,
    ) -> None:
        self.adapter = adapter
        self.upscaler = upscaler
        self.listener = listener
        self.cancel = cancel or CancelToken()
        self.timings: dict[str, float] = {}

    # Bookkeeping -------------------------------------------------------------------------
    @contextmanager
    def _stage(self, stage: Stage) -> Iterator[None]:
        self.cancel.raise_if_cancelled()
        self.listener(StageStarted(stage))
        start = time.perf_counter()
        yield
        self._sync()
        seconds = time.perf_counter() - start
        self.timings[stage.value] = self.timings.get(stage.value, 0.0) + seconds
        self.listener(StageFinished(stage, seconds))

    def _sync(self) -> None:
        """Wait for queued GPU work, so stage timings are honest."""
        device = self.adapter.device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif device.type == "mps":
            torch.mps.synchronize()

    # Building blocks ---------------------------------------------------------------------
    def encode_prompts(self, request: GenerationRequest, plan: Plan) -> PromptEmbeds:
        with self._stage(Stage.TEXT_ENCODE), torch.no_grad():
            return self.adapter.encode_prompt(request.prompt, request.negative_prompt, plan)

    def _inputs(self, request: GenerationRequest, width: int, height: int) -> _Inputs | None:
        """The input image (and mask) at width x height, for img2img and inpaint."""
        if request.image is None:
            return None
        image = request.image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
        latents = self.adapter.encode(pil_to_tensor(image))
        token_mask = None
        if request.mask is not None:
            # Area resampling keeps any partly covered pixel non-zero, so thin strokes survive.
            mask = request.mask.convert("L").resize((width, height), Image.Resampling.BOX)
            token_mask = self.adapter.token_mask(mask)
        return _Inputs(latents, token_mask)

    def _keep_outside(
        self, latents: torch.Tensor, inputs: _Inputs | None, noise: torch.Tensor, sigma: float
    ) -> torch.Tensor:
        """Inpaint: outside the mask, put back the original noised to `sigma`."""
        if inputs is None or inputs.token_mask is None:
            return latents
        original = add_noise(inputs.latents, noise, sigma)
        return inputs.token_mask * latents + (1 - inputs.token_mask) * original

    def structure(
        self, request: GenerationRequest, plan: Plan, prompts: PromptEmbeds
    ) -> torch.Tensor:
        """Stage 1 (or the whole native run): the model's own schedule, one preview per step."""
        width, height = plan.lowres_width, plan.lowres_height
        with self._stage(Stage.STRUCTURE), torch.no_grad():
            adapter = self.adapter
            generator = torch.Generator("cpu").manual_seed(plan.seed)
            noise = adapter.noise(width, height, generator)
            inputs = self._inputs(request, width, height)
            config = adapter.info.scheduler_config
            scheduler = structure_scheduler(
                config, plan.base_sigmas, plan.mu, plan.start_index, device=adapter.device
            )
            timesteps = scheduler.timesteps[plan.start_index :]
            sigmas = plan.sigmas
            latents = noise if inputs is None else add_noise(inputs.latents, noise, sigmas[0])
            total = len(timesteps)
            for index, timestep in enumerate(timesteps):
                self.cancel.raise_if_cancelled()
                step_start = time.perf_counter()
                velocity = adapter.velocity(latents, timestep, prompts, plan, width, height)
                predicted_clean = latents.float() - sigmas[index] * velocity.float()
                latents = scheduler.step(velocity, timestep, latents, return_dict=False)[0]
                latents = self._keep_outside(latents, inputs, noise, sigmas[index + 1])
                preview = adapter.preview(predicted_clean, width, height)
                self._sync()
                seconds = time.perf_counter() - step_start
                self.listener(StepPreview(Stage.STRUCTURE, index + 1, total, preview, seconds))
        return latents

    def decode(self, latents: torch.Tensor, width: int, height: int, stage: Stage) -> torch.Tensor:
        with self._stage(stage), torch.no_grad():
            return self.adapter.decode(latents, width, height)

    def upscale(self, pixels: torch.Tensor, plan: Plan) -> torch.Tensor:
        if self.upscaler is None:
            raise RuntimeError("the staged path needs an upscaler; none was loaded")
        with self._stage(Stage.UPSCALE), torch.no_grad():
            up = self.upscaler.upscale_tensor(pixels, (plan.width, plan.height))
            return up.float().clamp(0.0, 1.0)

    def encode_and_noise(
        self, request: GenerationRequest, plan: Plan, upscaled: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, _Inputs | None]:
        """Stage 4: VAE encode at the target size and noise to sigma_start."""
        with self._stage(Stage.ENCODE), torch.no_grad():
            clean = self.adapter.encode(upscaled)
            generator = torch.Generator("cpu").manual_seed(plan.refine_seed)
            noise = self.adapter.noise(plan.width, plan.height, generator)
            latents = add_noise(clean, noise, plan.refine_sigmas[0])
            inputs = None
            if plan.mode is Mode.INPAINT:
                inputs = self._inputs(request, plan.width, plan.height)
                latents = self._keep_outside(latents, inputs, noise, plan.refine_sigmas[0])
            return latents, noise, inputs

    def refine(
        self,
        plan: Plan,
        prompts: PromptEmbeds,
        latents: torch.Tensor,
        noise: torch.Tensor,
        inputs: _Inputs | None,
    ) -> torch.Tensor:
        """Stage 5: Euler steps from sigma_start to 0 at full size, no shift."""
        with self._stage(Stage.REFINE), torch.no_grad():
            scheduler = refine_scheduler(
                self.adapter.info.scheduler_config, plan.refine_sigmas, device=self.adapter.device
            )
            total = len(scheduler.timesteps)
            for index, timestep in enumerate(scheduler.timesteps):
                self.cancel.raise_if_cancelled()
                step_start = time.perf_counter()
                velocity = self.adapter.velocity(
                    latents, timestep, prompts, plan, plan.width, plan.height
                )
                latents = scheduler.step(velocity, timestep, latents, return_dict=False)[0]
                latents = self._keep_outside(latents, inputs, noise, plan.refine_sigmas[index + 1])
                self._sync()
                seconds = time.perf_counter() - step_start
                self.listener(StepProgress(Stage.REFINE, index + 1, total, seconds))
        return latents

    def finish(self, request: GenerationRequest, plan: Plan, pixels: torch.Tensor) -> Image.Image:
        """Output size, and for inpaint the original pixels back outside the feathered mask."""
        image = tensor_to_pil(pixels)
        size = (plan.output_width, plan.output_height)
        if image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        if plan.mode is Mode.INPAINT and request.image is not None and request.mask is not None:
            original = request.image.convert("RGB")
            mask = request.mask.convert("L")
            if original.size != size:
                original = original.resize(size, Image.Resampling.LANCZOS)
                mask = mask.resize(size, Image.Resampling.NEAREST)
            image = Image.composite(image, original, feathered_mask(mask))
        return image

    # Whole runs --------------------------------------------------------------------------
    def run_native(self, request: GenerationRequest, plan: Plan) -> GenerationResult:
        start = time.perf_counter()
        prompts = self.encode_prompts(request, plan)
        latents = self.structure(request, plan, prompts)
        pixels = self.decode(latents, plan.width, plan.height, Stage.DECODE)
        return self._result(request, plan, pixels, start, None, None)

    def run_staged(self, request: GenerationRequest, plan: Plan) -> GenerationResult:
        start = time.perf_counter()
        prompts = self.encode_prompts(request, plan)
        latents = self.structure(request, plan, prompts)
        return self.run_from_lowres(request, plan, prompts, latents, start)

    def run_from_lowres(
        self,
        request: GenerationRequest,
        plan: Plan,
        prompts: PromptEmbeds,
        lowres_latents: torch.Tensor,
        start: float,
    ) -> GenerationResult:
        """Stages 2-6 from stage-1 latents."""
        lowres = self.decode(
            lowres_latents, plan.lowres_width, plan.lowres_height, Stage.DECODE_LOWRES
        )
        lowres_image = tensor_to_pil(lowres)
        self.listener(StageImage("lowres", lowres_image))
        upscaled = self.upscale(lowres, plan)
        upscaled_image = tensor_to_pil(upscaled)
        self.listener(StageImage("upscaled", upscaled_image))
        latents, noise, inputs = self.encode_and_noise(request, plan, upscaled)
        latents = self.refine(plan, prompts, latents, noise, inputs)
        pixels = self.decode(latents, plan.width, plan.height, Stage.DECODE)
        return self._result(request, plan, pixels, start, lowres_image, upscaled_image)

    def explore_one(
        self, request: GenerationRequest, plan: Plan, prompts: PromptEmbeds
    ) -> LowResCandidate:
        start = time.perf_counter()
        latents = self.structure(request, plan, prompts)
        lowres = self.decode(latents, plan.lowres_width, plan.lowres_height, Stage.DECODE_LOWRES)
        image = tensor_to_pil(lowres)
        self.listener(StageImage("lowres", image))
        return LowResCandidate(image, latents, plan.seed, plan, time.perf_counter() - start)

    def _result(
        self,
        request: GenerationRequest,
        plan: Plan,
        pixels: torch.Tensor,
        start: float,
        lowres: Image.Image | None,
        upscaled: Image.Image | None,
    ) -> GenerationResult:
        self.cancel.raise_if_cancelled()
        image = self.finish(request, plan, pixels)
        self.timings["total"] = time.perf_counter() - start
        keep = request.return_stages
        result = GenerationResult(
            image=image,
            seed=plan.seed,
            plan=plan,
            timings=dict(self.timings),
            lowres=lowres if keep else None,
            upscaled=upscaled if keep else None,
        )
        self.listener(Finished(result))
        return result
