"""Real-ESRGAN's compact x2 super-resolution network (SRVGGNetCompact), for training here.

The layout is the published one of realesr-animevideov3: a stack of 3x3 convolutions with
per-channel PReLU at low resolution, a last convolution to 3 * scale^2 channels, a pixel shuffle,
and the nearest-neighbour enlargement of the input added back (the network learns a residual).
Parameter names (`body.N.weight`, `body.N.bias`) are the ones spandrel detects as "RealESRGAN
Compact", so the saved weights load in the engine's upscaler with no conversion.

Written here rather than imported from spandrel so that training needs only torch: spandrel
imports torchvision, which a bare GPU machine may lack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CompactUpscaler(nn.Module):
    def __init__(self, num_feat: int = 32, num_conv: int = 8, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(3, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, 3 * scale * scale, 3, padding=1))
        self.body = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return F.pixel_shuffle(out, self.scale) + F.interpolate(
            x, scale_factor=self.scale, mode="nearest"
        )
