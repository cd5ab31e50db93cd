"""A loaded super-resolution network, ready to enlarge images to an exact size.

MrFlow enlarges the decoded low-resolution image in pixel space in one shot:
the GAN runs once at its native factor (x2 or x4), tiled when the image is
large, and an exact resample then brings the result to the requested size
(downscaling an x4 result to x2 is antialiased, so no aliasing is added).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mrflow_daemon.upscale.tiling import run_tiled

if TYPE_CHECKING:
    from spandrel import ImageModelDescriptor

# Input pixels per tile side when the caller does not choose. 512 keeps an x4
# RRDBNet's largest activation (64 channels at 2048x2048) near 1 GiB in fp32,
# and images up to this size (MrFlow's usual stage-1 size) run in one piece.
AUTO_TILE_SIZE = 512
DEFAULT_TILE_OVERLAP = 32


class Upscaler:
    """A spandrel image model plus the tiling and resampling MrFlow needs.

    `tile_size` (input pixels per tile side; None = AUTO_TILE_SIZE, 0 = never
    tile) and `tile_overlap` (input pixels shared by neighbouring tiles) trade
    memory for a little repeated work.
    """

    def __init__(
        self,
        descriptor: ImageModelDescriptor,
        name: str,
        *,
        tile_size: int | None = None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
    ) -> None:
        self._descriptor = descriptor
        self.name = name
        self.tile_size = AUTO_TILE_SIZE if tile_size is None else tile_size
        self.tile_overlap = tile_overlap

    @property
    def scale(self) -> int:
        """The network's own enlargement factor."""
        return int(self._descriptor.scale)

    @property
    def architecture(self) -> str:
        """spandrel's id of the network's architecture ("ESRGAN", "Compact", ...)."""
        return str(self._descriptor.architecture.id)

    @property
    def device(self) -> torch.device:
        return self._descriptor.device

    @property
    def dtype(self) -> torch.dtype:
        return self._descriptor.dtype

    def to(
        self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Upscaler:
        """Move the network (in place) and return self. A dtype the architecture cannot run in falls back to float32."""
        if dtype == torch.float16 and not self._descriptor.supports_half:
            dtype = torch.float32
        if dtype == torch.bfloat16 and not self._descriptor.supports_bfloat16:
            dtype = torch.float32
        self._descriptor.to(device=device, dtype=dtype)
        return self

    def __repr__(self) -> str:
        return f"Upscaler({self.name!r}, {self.architecture} x{self.scale}, {self.device}, {self.dtype})"

    @torch.inference_mode()
    def upscale_tensor(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Enlarge a batch x [B,3,H,W] in [0,1] to `size` = (width, height).

        The network runs on its own device and dtype; the result comes back
        on x's device and dtype, clamped to [0,1].
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an image batch of shape [B,3,H,W], got {tuple(x.shape)}")
        width, height = size
        if width < 1 or height < 1:
            raise ValueError(f"target size must be positive, got {width}x{height}")

        outputs = [self._run_network(image[None]) for image in x]
        enlarged = torch.cat(outputs)
        if enlarged.shape[-2:] != (height, width):
            enlarged = resample(enlarged, (width, height))
        return enlarged.clamp_(0, 1).to(device=x.device, dtype=x.dtype)

    def upscale(self, image: Image.Image, size: tuple[int, int]) -> Image.Image:
        """Enlarge a PIL image to `size` = (width, height); the result is RGB."""
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array).permute(2, 0, 1)[None]
        result = self.upscale_tensor(tensor, size)[0]
        pixels = (result.permute(1, 2, 0) * 255.0).round().to(torch.uint8).cpu().numpy()
        return Image.fromarray(pixels, mode="RGB")

    def _run_network(self, image: torch.Tensor) -> torch.Tensor:
        """One image [1,3,H,W] through the network at its factor; float32 on the model's device."""
        image = image.to(device=self.device, dtype=self.dtype)
        _, _, height, width = image.shape
        tile = self.tile_size
        if tile <= 0 or (height <= tile and width <= tile):
            return self._descriptor(image).float()
        return run_tiled(self._descriptor, image, self.scale, tile, self.tile_overlap)


def resample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize [B,C,H,W] to (width, height) with antialiased bicubic (exact sizes, no half-pixel shift)."""
    width, height = size
    return F.interpolate(
        x.float(), size=(height, width), mode="bicubic", align_corners=False, antialias=True
    )
