"""How much a built-in-world model listens to each kind of word in its caption.

The checker's pass rate stays at zero until a model gets everything right at once; this measure
moves from the first steps. For pairs of captions that differ in one word (the position, the
shape's colour, its kind, the background), it feeds the transformer the same pure noise at
sigma 1, where the picture can only come from the caption, and compares the two velocity
predictions: ``|v_a - v_b| / |v_a|``. Beside each number is the same ratio for a perfect model,
computed from the two captions' rendered pictures. A model that ignores a kind of word scores
near 0 on it; a trained one approaches the ideal.

    sensitivity = caption_sensitivity(pipe)   # a FluxPipeline of the built-in world
    sensitivity["position"] == {"model": 0.02, "ideal": 0.27}
"""

from __future__ import annotations

import random
from typing import Any

import torch

from mrflow_daemon.builtin.world import Scene, Shape, render_batch, sample_placements

SIGMA = 1.0  # pure noise: whatever differs between two predictions came from the caption
SIZE = 128  # the low-res stage, where MrFlow draws the layout
T5_LENGTH = 32

# (a, b) scene pairs that differ in one kind of word, several per kind.
_RED_TOP = Shape("red", "circle", "top")
PAIRS: dict[str, list[tuple[Scene, Scene]]] = {
    "position": [
        (Scene((_RED_TOP,), "grey"), Scene((Shape("red", "circle", "bottom"),), "grey")),
        (
            Scene((Shape("blue", "square", "left"),), "beige"),
            Scene((Shape("blue", "square", "right"),), "beige"),
        ),
        (
            Scene((Shape("green", "triangle", "center"),), "brown"),
            Scene((Shape("green", "triangle", "top"),), "brown"),
        ),
    ],
    "colour": [
        (Scene((_RED_TOP,), "grey"), Scene((Shape("blue", "circle", "top"),), "grey")),
        (
            Scene((Shape("yellow", "square", "left"),), "brown"),
            Scene((Shape("white", "square", "left"),), "brown"),
        ),
        (
            Scene((Shape("black", "triangle", "bottom"),), "beige"),
            Scene((Shape("green", "triangle", "bottom"),), "beige"),
        ),
    ],
    "kind": [
        (Scene((_RED_TOP,), "grey"), Scene((Shape("red", "square", "top"),), "grey")),
        (
            Scene((Shape("blue", "triangle", "center"),), "beige"),
            Scene((Shape("blue", "circle", "center"),), "beige"),
        ),
    ],
    "background": [
        (Scene((_RED_TOP,), "grey"), Scene((_RED_TOP,), "brown")),
        (
            Scene((Shape("white", "square", "right"),), "beige"),
            Scene((Shape("white", "square", "right"),), "grey"),
        ),
    ],
}


@torch.no_grad()
def caption_sensitivity(pipe: Any, *, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per kind of word: mean relative change of the prediction ("model") and of the truth
    ("ideal") between captions that differ in that word. `pipe` is a FluxPipeline."""
    from diffusers.pipelines.flux.pipeline_flux import FluxPipeline

    device = pipe.transformer.device
    dtype = pipe.transformer.dtype
    scenes = [scene for pairs in PAIRS.values() for pair in pairs for scene in pair]
    count = len(scenes)
    rng = random.Random(seed)
    placements = [sample_placements(scene, rng) for scene in scenes]
    images = render_batch(scenes, placements, SIZE, SIZE, device=device)
    vae = pipe.vae
    latents = vae.encode((images * 2 - 1).to(vae.dtype)).latent_dist.mode().float()
    latents = (latents - vae.config.shift_factor) * vae.config.scaling_factor
    _, channels, height, width = latents.shape
    x0 = FluxPipeline._pack_latents(latents, count, channels, height, width)
    generator = torch.Generator(device=device).manual_seed(seed)
    noise = torch.randn(x0[:1].shape, generator=generator, device=device).expand_as(x0)
    captions = [scene.caption() for scene in scenes]
    sequence = pipe._get_t5_prompt_embeds(captions, max_sequence_length=T5_LENGTH, device=device)
    pooled = pipe._get_clip_prompt_embeds(captions, device=device)
    velocity = pipe.transformer(
        hidden_states=noise.to(dtype),
        timestep=torch.full((count,), SIGMA, device=device, dtype=dtype),
        guidance=torch.full((count,), 3.5, device=device, dtype=dtype),
        pooled_projections=pooled.to(dtype),
        encoder_hidden_states=sequence.to(dtype),
        txt_ids=torch.zeros(sequence.shape[1], 3, device=device, dtype=dtype),
        img_ids=FluxPipeline._prepare_latent_image_ids(
            count, height // 2, width // 2, device, dtype
        ),
        return_dict=False,
    )[0].float()
    truth = noise - x0

    def change(values: torch.Tensor, a: int) -> float:
        return float((values[a] - values[a + 1]).norm() / values[a].norm())

    result: dict[str, dict[str, float]] = {}
    index = 0
    for kind, pairs in PAIRS.items():
        model, ideal = [], []
        for _ in pairs:
            model.append(change(velocity, index))
            ideal.append(change(truth, index))
            index += 2
        result[kind] = {"model": sum(model) / len(model), "ideal": sum(ideal) / len(ideal)}
    return result
