"""What the staged sampler needs from a model family, written once here.

A family adapter wraps one loaded diffusers pipeline and hides everything
family-specific behind a handful of calls on "model latents": the packed
token sequence `[batch, tokens, channels]` the transformer reads, already
normalised the way the family's VAE expects. The sampler never sees VAE
scaling factors, guidance styles or latent layouts.

Both FLUX.1 and Qwen-Image pack 2x2 latent cells into one token (so one token
covers 16x16 pixels); that packing and the latent-to-RGB preview projection
are shared here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from mrflow_daemon.engine.plan import FamilyInfo, Plan

PATCH = 2  # latent cells per token side
PREVIEW_FIT_SIZE = 64  # pixels; small synthetic images used to fit the preview projection
PREVIEW_FIT_IMAGES = 8


@dataclass
class PromptEmbeds:
    """Encoded prompt(s), opaque to the sampler; `negative` is set only for true CFG."""

    positive: dict[str, Any]
    negative: dict[str, Any] | None = None


def tensor_to_pil(pixels: torch.Tensor) -> Image.Image:
    """[1, 3, H, W] in [0, 1] -> RGB image, rounded the way diffusers' postprocess rounds."""
    array = pixels[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray((array * 255).round().astype(np.uint8), "RGB")


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB image -> [1, 3, H, W] float32 in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


class FamilyAdapter(ABC):
    """One loaded pipeline of one family, seen through the calls the sampler makes."""

    vae_scale_factor = 8

    def __init__(self, pipe: Any, info: FamilyInfo) -> None:
        self.pipe = pipe
        self.info = info
        self._preview_weight: torch.Tensor | None = None
        self._preview_bias: torch.Tensor | None = None

    # Where tensors live --------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """The device the models run on (the GPU even when offloading moves weights back)."""
        return torch.device(self.pipe._execution_device)

    @property
    def dtype(self) -> torch.dtype:
        return self.pipe.transformer.dtype

    @property
    def latent_channels(self) -> int:
        """Channels of one unpacked latent cell."""
        return int(self.pipe.transformer.config.in_channels) // (PATCH * PATCH)

    # Latent layout (shared) ---------------------------------------------------------
    def latent_size(self, width: int, height: int) -> tuple[int, int]:
        return height // self.vae_scale_factor, width // self.vae_scale_factor

    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> [B, (h/2)(w/2), 4C] tokens, row-major over 2x2 patches."""
        b, c, h, w = latents.shape
        patches = latents.view(b, c, h // PATCH, PATCH, w // PATCH, PATCH)
        return patches.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // PATCH) * (w // PATCH), c * 4)

    def unpack(self, tokens: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """Inverse of `pack` for an image of width x height pixels."""
        b, _, channels = tokens.shape
        h, w = self.latent_size(width, height)
        patches = tokens.view(b, h // PATCH, w // PATCH, channels // 4, PATCH, PATCH)
        return patches.permute(0, 3, 1, 4, 2, 5).reshape(b, channels // 4, h, w)

    def noise(self, width: int, height: int, generator: torch.Generator) -> torch.Tensor:
        """Gaussian noise in model-latent layout, drawn in the unpacked shape like the pipelines."""
        h, w = self.latent_size(width, height)
        shape = (1, self.latent_channels, h, w)
        eps = randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)
        return self.pack(eps)

    def token_mask(self, mask: Image.Image) -> torch.Tensor:
        """An L mask (255 = regenerate) at image size -> [1, tokens, 1]; a token regenerates
        when any of its 16x16 pixels does, so the regenerated area covers the whole mask."""
        pixels = torch.from_numpy(np.asarray(mask.convert("L"), dtype=np.float32) / 255.0)
        cell = self.vae_scale_factor * PATCH
        pooled = F.max_pool2d(pixels[None, None], kernel_size=cell, stride=cell)
        binary = (pooled > 0).to(self.dtype)
        return binary.flatten(2).transpose(1, 2).to(self.device)

    # Family-specific ----------------------------------------------------------------
    @abstractmethod
    def encode_prompt(self, prompt: str, negative_prompt: str, plan: Plan) -> PromptEmbeds: ...

    @abstractmethod
    def velocity(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        prompts: PromptEmbeds,
        plan: Plan,
        width: int,
        height: int,
    ) -> torch.Tensor:
        """The transformer's flow prediction (guidance applied) for packed `latents`."""

    @staticmethod
    def guided(
        call: Callable[[dict[str, Any]], torch.Tensor], prompts: PromptEmbeds, plan: Plan
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The conditional prediction, and with true CFG also `uncond + scale * (cond - uncond)`
        (None without): `call` runs the transformer on one set of prompt embeddings."""
        cond = call(prompts.positive)
        if prompts.negative is None or plan.guidance is None:
            return cond, None
        uncond = call(prompts.negative)
        return cond, uncond + plan.guidance * (cond - uncond)

    @abstractmethod
    def _vae_encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> normalised unpacked latents [B, C, h, w]."""

    @abstractmethod
    def _vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised unpacked latents [B, C, h, w] -> [B, 3, H, W] in [-1, 1]."""

    # VAE round trip in model-latent layout ---------------------------------------------
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[1, 3, H, W] in [0, 1] -> packed model latents (the posterior mode: no sampling noise)."""
        vae = self.pipe.vae
        pixels = pixels.to(device=self.device, dtype=vae.dtype) * 2.0 - 1.0
        return self.pack(self._vae_encode(pixels).to(self.dtype))

    def decode(self, tokens: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """Packed model latents -> [1, 3, H, W] float32 in [0, 1]."""
        latents = self.unpack(tokens, width, height).to(self.pipe.vae.dtype)
        pixels = self._vae_decode(latents)
        return (pixels.float() / 2.0 + 0.5).clamp(0.0, 1.0)

    # Cheap previews -------------------------------------------------------------------
    def fit_preview(self, seed: int = 0) -> None:
        """Fit the linear latent -> RGB map used for previews, once per loaded model.

        Decodes a few small random latents (model-latent space is normalised to
        about unit variance, so standard normal draws cover it) with the model's
        own VAE and solves least squares from each latent cell to the mean
        colour of the pixels it decodes to. The preview is then the best linear
        guess of what the VAE would show, for any VAE, real or tiny.
        """
        generator = torch.Generator().manual_seed(seed)
        cells = PREVIEW_FIT_SIZE // self.vae_scale_factor
        shape = (PREVIEW_FIT_IMAGES, self.latent_channels, cells, cells)
        latents = torch.randn(shape, generator=generator)
        with torch.no_grad():
            decoded = torch.cat(
                [
                    self.decode(
                        self.pack(one[None].to(self.device, self.dtype)),
                        PREVIEW_FIT_SIZE,
                        PREVIEW_FIT_SIZE,
                    )
                    for one in latents
                ]
            ).cpu()
        cell_colours = F.avg_pool2d(decoded, self.vae_scale_factor)
        x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
        y = cell_colours.permute(0, 2, 3, 1).reshape(-1, 3)
        design = torch.cat([x, torch.ones(x.shape[0], 1)], dim=1)
        solution = torch.linalg.lstsq(design, y).solution
        self._preview_weight, self._preview_bias = solution[:-1], solution[-1]

    def preview(self, tokens: torch.Tensor, width: int, height: int) -> Image.Image:
        """Packed model latents -> RGB image at latent resolution (width/8 x height/8)."""
        if self._preview_weight is None or self._preview_bias is None:
            self.fit_preview()
        assert self._preview_weight is not None and self._preview_bias is not None
        latents = self.unpack(tokens, width, height)[0].float().cpu()
        rgb = torch.einsum("chw,ck->khw", latents, self._preview_weight)
        rgb = rgb + self._preview_bias[:, None, None]
        return tensor_to_pil(rgb[None])
