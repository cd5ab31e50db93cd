"""Turning what a caller holds (bytes, a file, a PIL image) into PNG bytes for a request."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Union

from mrflow_protocol import sniff_format

from mrflow_daemon.client.errors import RequestError

if TYPE_CHECKING:
    from PIL import Image

ImageInput = Union[bytes, str, Path, "Image.Image"]
PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}


def to_png(image: ImageInput, *, mode: str | None = None, field: str = "image") -> bytes:
    """PNG bytes for `image`. PNG bytes pass through unchanged; anything else goes through Pillow.

    `mode` converts the pixels first ("L" for masks). A file that cannot be read, or is no
    image, raises RequestError naming `field`."""
    from PIL import Image, UnidentifiedImageError  # only needed when converting

    try:
        if isinstance(image, (str, Path)):
            image = Path(image).read_bytes()
        if isinstance(image, bytes) and mode is None and sniff_format(image) == "png":
            return image
        picture = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image
        if mode is None and picture.mode not in PNG_MODES:  # CMYK, YCbCr, ... : PNG has none
            mode = "RGBA" if "A" in picture.getbands() else "RGB"
        if mode is not None and picture.mode != mode:
            picture = picture.convert(mode)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise RequestError("invalid_field", f"cannot read the {field}: {exc}", field) from None
    return buffer.getvalue()
