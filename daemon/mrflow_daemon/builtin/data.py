"""Training batches: fresh pictures of the world, drawn from a seeded generator per step.

Each step's randomness comes from (seed, part, step) alone, so a resumed run draws exactly the
batches an uninterrupted run would have, without saving generator state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from mrflow_daemon.builtin.config import HIGH_BUCKETS, LOW_BUCKETS
from mrflow_daemon.builtin.world import (
    BACKGROUND_COLOURS,
    Placement,
    Scene,
    render_batch,
    sample_placements,
    sample_train_scene,
    shape_slots,
    slot_distance,
)


@dataclass
class Batch:
    images: torch.Tensor  # [B, 3, H, W] in [0, 1]
    captions: list[str]
    scenes: list[Scene]
    placements: list[tuple[Placement, ...]] | None = None


def step_rng(seed: int, part: str, step: int) -> random.Random:
    return random.Random(f"{seed}/{part}/{step}")


def step_generator(seed: int, part: str, step: int, device: torch.device | str) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(step_rng(seed, part, step).randrange(2**63))
    return generator


def pick_size(
    rng: random.Random, low_fraction: float, square_only: bool = False
) -> tuple[int, int]:
    buckets = LOW_BUCKETS if rng.random() < low_fraction else HIGH_BUCKETS
    # The square bucket is the working size; give it as much weight as all other aspects together.
    if square_only or rng.random() < 0.5:
        return buckets[0]
    return rng.choice(buckets[1:])


def training_batch(
    rng: random.Random, size: tuple[int, int], batch_size: int, device: torch.device | str
) -> Batch:
    scenes = [sample_train_scene(rng) for _ in range(batch_size)]
    placements = [sample_placements(scene, rng) for scene in scenes]
    images = render_batch(scenes, placements, size[0], size[1], device=device)
    return Batch(images, [s.caption() for s in scenes], scenes, placements)


def crop_batch(
    rng: random.Random, batch: Batch, crop: int, near_shape: float = 0.5
) -> torch.Tensor:
    """Square `crop`-pixel patches of the batch's pictures, one per picture.

    A random patch of this world is mostly plain background; `near_shape` of them are centred
    near one of the picture's shapes instead, so edges and shape colours get their share.
    """
    _, _, height, width = batch.images.shape
    crop = min(crop, height, width)
    patches = []
    for index, image in enumerate(batch.images):
        shapes = batch.placements[index] if batch.placements else ()
        if shapes and rng.random() < near_shape:
            shape = rng.choice(shapes)
            cx = shape.cx * width + rng.uniform(-crop / 2, crop / 2)
            cy = shape.cy * height + rng.uniform(-crop / 2, crop / 2)
            left, top = round(cx - crop / 2), round(cy - crop / 2)
        else:
            left, top = rng.randrange(width - crop + 1), rng.randrange(height - crop + 1)
        left = min(max(left, 0), width - crop)
        top = min(max(top, 0), height - crop)
        patches.append(image[:, top : top + crop, left : left + crop])
    return torch.stack(patches)


def shape_tokens(batch: Batch, token: int = 16, dilate: int = 1) -> torch.Tensor:
    """[B, tokens] 1.0 where a FLUX token (`token` pixels square) shows a shape, grown by
    `dilate` tokens so the shape's surroundings count too; 0.0 for plain background."""
    images = batch.images
    background = torch.tensor(
        [BACKGROUND_COLOURS[scene.background] for scene in batch.scenes],
        dtype=images.dtype,
        device=images.device,
    ).view(-1, 3, 1, 1)
    shape = ((images - background / 255).abs().amax(dim=1, keepdim=True) > 0.1).to(images.dtype)
    grid = torch.nn.functional.max_pool2d(shape, token)
    if dilate:
        grid = torch.nn.functional.max_pool2d(grid, 2 * dilate + 1, stride=1, padding=dilate)
    return grid.flatten(1)  # row-major, as FluxPipeline packs tokens


def kind_labels(batch: Batch, token: int = 16) -> torch.Tensor:
    """[B, tokens] uint8: 1 + the kind index of the shape a token touches (its centre within
    half a token of the shape's edge, by the renderer's own distance function), 0 for
    background; a later shape wins where two touch one token. Row-major like the tokens."""
    if batch.placements is None:
        raise ValueError("kind_labels needs the batch's placements")
    _, _, height, width = batch.images.shape
    device = batch.images.device
    kind, params, present = shape_slots(batch.scenes, batch.placements, width, height, device)
    ys = torch.arange(height // token, device=device, dtype=torch.float32) * token + token / 2
    xs = torch.arange(width // token, device=device, dtype=torch.float32) * token + token / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    labels = torch.zeros(len(batch.scenes), *gy.shape, dtype=torch.uint8, device=device)
    for j in range(kind.shape[1]):
        touched = slot_distance(kind[:, j], params[:, j], gx, gy) <= token / 2
        touched &= present[:, j].view(-1, 1, 1) > 0
        labels = torch.where(touched, (kind[:, j] + 1).to(torch.uint8).view(-1, 1, 1), labels)
    return labels.flatten(1)
