"""Qwen-Image: a Qwen2.5-VL prompt encoder, true classifier-free guidance with a
negative prompt (two transformer calls per step, with the pipeline's norm
rescale), and a video-style VAE with 5-D latents `[B, C, T=1, h, w]`
normalised per channel by `latents_mean` / `latents_std`.
"""

from __future__ import annotations

import torch

from mrflow_daemon.engine.families.base import FamilyAdapter, PromptEmbeds
from mrflow_daemon.engine.plan import Plan

MAX_SEQUENCE_LENGTH = 512
EMPTY_NEGATIVE_PROMPT = " "  # what Qwen-Image's own examples pass when there is none


class QwenImageAdapter(FamilyAdapter):
    def _encode_one(self, text: str) -> dict[str, torch.Tensor | None]:
        embeds, mask = self.pipe.encode_prompt(
            prompt=text,
            device=self.device,
            num_images_per_prompt=1,
            max_sequence_length=MAX_SEQUENCE_LENGTH,
        )
        return {"encoder_hidden_states": embeds, "encoder_hidden_states_mask": mask}

    def encode_prompt(self, prompt: str, negative_prompt: str, plan: Plan) -> PromptEmbeds:
        positive = self._encode_one(prompt)
        negative = (
            self._encode_one(negative_prompt or EMPTY_NEGATIVE_PROMPT) if plan.true_cfg else None
        )
        return PromptEmbeds(positive, negative)

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
        h, w = self.latent_size(width, height)
        img_shapes = [[(1, h // 2, w // 2)]] * batch
        t = timestep.expand(batch).to(latents.dtype) / 1000

        def call(embeds: dict[str, torch.Tensor | None]) -> torch.Tensor:
            return self.pipe.transformer(
                hidden_states=latents,
                timestep=t,
                img_shapes=img_shapes,
                return_dict=False,
                **embeds,
            )[0]

        cond, combined = self.guided(call, prompts, plan)
        if combined is None:
            return cond
        # Qwen-Image keeps the per-token norm of the conditional prediction (its pipeline does).
        scale = torch.norm(cond, dim=-1, keepdim=True) / torch.norm(combined, dim=-1, keepdim=True)
        return combined * scale

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and 1/std, in the form the Qwen-Image pipelines compute them
        (so decoding matches theirs bit for bit)."""
        config = self.pipe.vae.config
        shape = (1, config.z_dim, 1, 1, 1)
        mean = torch.tensor(config.latents_mean).view(shape).to(like.device, like.dtype)
        inv_std = 1.0 / torch.tensor(config.latents_std).view(shape).to(like.device, like.dtype)
        return mean, inv_std

    def _vae_encode(self, pixels: torch.Tensor) -> torch.Tensor:
        latents = self.pipe.vae.encode(pixels[:, :, None]).latent_dist.mode()
        mean, inv_std = self._stats(latents)
        return ((latents - mean) * inv_std)[:, :, 0]

    def _vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents[:, :, None]
        mean, inv_std = self._stats(latents)
        return self.pipe.vae.decode(latents / inv_std + mean, return_dict=False)[0][:, :, 0]
