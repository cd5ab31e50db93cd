"""Image bytes on the wire: format sniffing from magic bytes, PNG header size.

The protocol never decodes pixels (that needs Pillow or Qt, which the peers
have); it checks that bytes which claim to be an image start like one, and
reads a PNG's stated size from its header so oversized inputs are refused
before anything decompresses them.
"""

from __future__ import annotations

import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"

IMAGE_FORMATS: tuple[str, ...] = ("png", "jpeg", "webp")


def sniff_format(data: bytes) -> str | None:
    """The format the bytes start as ("png", "jpeg", "webp"), or None."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(JPEG_SIGNATURE):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None when the header is not there."""
    # Signature (8) + chunk length (4) + b"IHDR" (4) + width (4) + height (4).
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height
