"""Tiled inference matches whole-image inference, and tiles cover the image."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mrflow_daemon.upscale import load_upscaler
from mrflow_daemon.upscale.tiling import tile_starts


def smooth_noise(height: int, width: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return F.avg_pool2d(torch.rand(1, 3, height, width, generator=generator), 5, 1, 2)


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(100, 40, 24), (40, 40, 8), (30, 64, 16), (257, 64, 32)]
)
def test_tiles_cover_every_pixel_and_end_on_the_border(
    length: int, tile: int, overlap: int
) -> None:
    starts = tile_starts(length, tile, overlap)
    covered: set[int] = set()
    for start in starts:
        covered.update(range(start, min(start + tile, length)))
    assert covered == set(range(length))
    assert starts[-1] + min(tile, length) == length
    for before, after in itertools.pairwise(starts):
        assert before + tile - after >= overlap  # neighbours share at least `overlap`


def test_tiled_equals_untiled_for_a_compact_network(ncnn_weights: dict[str, Path]) -> None:
    image = smooth_noise(80, 100)  # not square, not a multiple of the tile
    upscaler = load_upscaler(ncnn_weights["realesr-animevideov3"], tile_size=0)
    whole = upscaler.upscale_tensor(image, (400, 320))
    upscaler.tile_size, upscaler.tile_overlap = 40, 24  # 24 px context > the 18 px receptive field
    tiled = upscaler.upscale_tensor(image, (400, 320))
    assert tiled.shape == whole.shape == (1, 3, 320, 400)
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_tiled_rrdb_differs_only_slightly_at_tile_joins(ncnn_weights: dict[str, Path]) -> None:
    # RRDBNet's receptive field is wider than any practical overlap, so a small
    # residue remains where tiles meet (measured: max 0.018, mean 1e-4 here).
    image = smooth_noise(64, 64)
    upscaler = load_upscaler(ncnn_weights["RealESRGAN_x4plus_anime_6B"], tile_size=0)
    whole = upscaler.upscale_tensor(image, (256, 256))
    upscaler.tile_size, upscaler.tile_overlap = 40, 20
    tiled = upscaler.upscale_tensor(image, (256, 256))
    difference = (tiled - whole).abs()
    assert difference.mean() < 1e-3
    assert difference.max() < 0.05
