"""Pixel conversions between Krita's raw buffers and encoded images, done by Qt.

Krita hands out RGBA 8-bit pixels as BGRA bytes (`Node.pixelData`) and selections as one
byte per pixel (`Selection.pixelData`). The daemon speaks PNG (inputs, results) and PNG/JPEG/
WebP (previews). Qt's C++ does the per-pixel work: a Python loop over a megapixel would
freeze Krita for seconds.
"""

from __future__ import annotations

from typing import Any

from mrflow_krita.qt import QtCore, QtGui

QImage = QtGui.QImage
Format = QImage.Format


class ImageDecodeError(ValueError):
    pass


def _raw_bytes(image: Any) -> bytes:
    """The pixel buffer of a QImage whose rows have no padding (32-bit or width % 4 == 0)."""
    bits = image.constBits()
    size = image.sizeInBytes()
    if hasattr(bits, "setsize"):  # PyQt: a sip.voidptr of unknown length
        bits.setsize(size)
        return bytes(bits)
    return bytes(bits)[:size]  # PySide6: a memoryview


def _encode(image: Any, fmt: str = "PNG") -> bytes:
    data = QtCore.QByteArray()
    buffer = QtCore.QBuffer(data)
    buffer.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, fmt):
        raise ValueError(f"Qt could not encode a {image.width()}x{image.height()} image as {fmt}")
    buffer.close()
    return bytes(data)


def _from_bgra(pixels: bytes, width: int, height: int) -> Any:
    if len(pixels) != width * height * 4:
        raise ValueError(
            f"expected {width * height * 4} bytes of BGRA for {width}x{height}, got {len(pixels)}"
        )
    # .copy() detaches the QImage from the Python buffer, which may be freed after this call.
    return QImage(pixels, width, height, width * 4, Format.Format_ARGB32).copy()


def _from_gray(mask: bytes, width: int, height: int, fmt: Any) -> Any:
    if len(mask) != width * height:
        raise ValueError(
            f"expected {width * height} mask bytes for {width}x{height}, got {len(mask)}"
        )
    return QImage(mask, width, height, width, fmt).copy()


def _resized(image: Any, size: tuple[int, int] | None) -> Any:
    if size is None or size == (image.width(), image.height()):
        return image
    return image.scaled(
        size[0],
        size[1],
        QtCore.Qt.AspectRatioMode.IgnoreAspectRatio,
        QtCore.Qt.TransformationMode.SmoothTransformation,
    )


def bgra_to_png(
    pixels: bytes, width: int, height: int, size: tuple[int, int] | None = None
) -> bytes:
    """Krita's BGRA (straight alpha) pixels as an RGBA PNG, scaled smoothly to `size` if given."""
    return _encode(_resized(_from_bgra(pixels, width, height), size))


def mask_to_png(mask: bytes, width: int, height: int, size: tuple[int, int] | None = None) -> bytes:
    """A one-byte-per-pixel selection (255 = selected) as a grayscale PNG, scaled to `size`."""
    return _encode(_resized(_from_gray(mask, width, height, Format.Format_Grayscale8), size))


def decode_to_bgra(encoded: bytes, width: int, height: int) -> bytes:
    """Decode a PNG/JPEG/WebP and scale it smoothly to exactly `width` x `height`, as BGRA."""
    image = QImage.fromData(encoded)
    if image.isNull():
        raise ImageDecodeError(
            f"the daemon sent {len(encoded)} bytes that Qt cannot decode as an image"
        )
    image = _resized(image.convertToFormat(Format.Format_ARGB32), (width, height))
    return _raw_bytes(image.convertToFormat(Format.Format_ARGB32))


def image_size(encoded: bytes) -> tuple[int, int]:
    image = QImage.fromData(encoded)
    if image.isNull():
        raise ImageDecodeError(f"{len(encoded)} bytes are not an image Qt can decode")
    return image.width(), image.height()


def multiply_alpha(pixels: bytes, mask: bytes, width: int, height: int) -> bytes:
    """BGRA pixels whose alpha is multiplied by `mask` (0..255): shapes a layer to a selection."""
    image = _from_bgra(pixels, width, height).convertToFormat(Format.Format_ARGB32_Premultiplied)
    painter = QtGui.QPainter(image)
    painter.setCompositionMode(QtGui.QPainter.CompositionMode.CompositionMode_DestinationIn)
    painter.drawImage(0, 0, _from_gray(mask, width, height, Format.Format_Alpha8))
    painter.end()
    return _raw_bytes(image.convertToFormat(Format.Format_ARGB32))


def thumbnail_png(encoded: bytes, longest_side: int = 96) -> bytes:
    """A small PNG for the history list."""
    image = QImage.fromData(encoded)
    if image.isNull():
        raise ImageDecodeError(f"{len(encoded)} bytes are not an image Qt can decode")
    scaled = image.scaled(
        longest_side,
        longest_side,
        QtCore.Qt.AspectRatioMode.KeepAspectRatio,
        QtCore.Qt.TransformationMode.SmoothTransformation,
    )
    return _encode(scaled)
