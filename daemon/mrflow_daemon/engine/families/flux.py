"""FLUX.1 (dev and schnell): CLIP + T5 prompts, embedded guidance, 2-D VAE latents.

dev is guidance-distilled: the guidance scale is an input of the transformer
(`guidance_embeds` in its config), one transformer call per step. schnell is
also timestep-distilled and has no guidance input at all. A FLUX model trained
with caption dropout (the built-in model, when its card says so) is sampled
with true classifier-free guidance instead, as FluxPipeline's `true_cfg_scale`
does: two calls a step, `uncond + scale * (cond - uncond)`, with the embedded
guidance input held at FLUX.1-dev's default.
"""

from __future__ import annotations

from typing import Any

import torch

from mrflow_daemon.engine.families.base import FamilyAdapter, PromptEmbeds
from mrflow_daemon.engine.plan import Plan

MAX_SEQUENCE_LENGTH = 512  # T5 tokens, the FLUX pipeline's default
EMBEDDED_GUIDANCE = 3.5  # FLUX.1-dev's default; the embedded input's value under true CFG


class FluxAdapter(FamilyAdapter):
    def encode_prompt(self, prompt: str, negative_prompt: str, plan: Plan) -> PromptEmbeds:
        negative = self._encode_one(negative_prompt) if plan.true_cfg else None
        return PromptEmbeds(self._encode_one(prompt), negative)

    def _encode_one(self, text: str) -> dict[str, torch.Tensor]:
        embeds, pooled, text_ids = self.pipe.encode_prompt(
            prompt=text,
            prompt_2=None,
            device=self.device,
            num_images_per_prompt=1,
            max_sequence_length=self._t5_length(),
        )
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled, "txt_ids": text_ids}

    def _t5_length(self) -> int:
        """FLUX does not mask T5 padding, so a model trained with shorter padding (the built-in
        model pads to 32 tokens) must be prompted at its own length: its tokenizer says which."""
        tokenizer_limit = getattr(self.pipe.tokenizer_2, "model_max_length", MAX_SEQUENCE_LENGTH)
        return min(MAX_SEQUENCE_LENGTH, int(tokenizer_limit))

    def _image_ids(self, width: int, height: int) -> torch.Tensor:
        """(row, column) position of each packed token, for the transformer's RoPE."""
        h, w = self.latent_size(width, height)
        rows, cols = h // 2, w // 2
        ids = torch.zeros(rows, cols, 3)
        ids[..., 1] = torch.arange(rows)[:, None]
        ids[..., 2] = torch.arange(cols)[None, :]
        return ids.reshape(rows * cols, 3).to(device=self.device, dtype=self.dtype)

    def velocity(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        prompts: PromptEmbeds,
        plan: Plan,
        width: int,
        height: int,
    ) -> torch.Tensor:
        batch = latents.shape[0]
        guidance = None
        if self.pipe.transformer.config.guidance_embeds:
            if self.info.true_cfg:
                value = EMBEDDED_GUIDANCE
            else:
                value = plan.guidance if plan.guidance is not None else self.info.default_guidance
            guidance = torch.full([batch], value, device=self.device, dtype=torch.float32)
        t = timestep.expand(batch).to(latents.dtype)
        image_ids = self._image_ids(width, height)

        def call(embeds: dict[str, Any]) -> torch.Tensor:
            return self.pipe.transformer(
                hidden_states=latents,
                timestep=t / 1000,
                guidance=guidance,
                img_ids=image_ids,
                return_dict=False,
                **embeds,
            )[0]

        cond, guided = self.guided(call, prompts, plan)
        return cond if guided is None else guided

    def _vae_encode(self, pixels: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        latents = vae.encode(pixels).latent_dist.mode()
        return (latents - vae.config.shift_factor) * vae.config.scaling_factor

    def _vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        latents = latents / vae.config.scaling_factor + vae.config.shift_factor
        return vae.decode(latents, return_dict=False)[0]
