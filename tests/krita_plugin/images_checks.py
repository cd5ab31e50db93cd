"""Checks of mrflow_krita.images, runnable under any Qt binding (imported by test_images.py,
and run as a script by Debian's python3 with PyQt5, the binding Krita 5 uses)."""

from __future__ import annotations

from mrflow_krita import images


def check_round_trip() -> None:
    pixels = (
        bytes([10, 20, 30, 255, 40, 50, 60, 128]) * 6
    )  # 4x3 BGRA, half of them half-transparent
    assert images.decode_to_bgra(images.bgra_to_png(pixels, 4, 3), 4, 3) == pixels


def check_scaling() -> None:
    pixels = bytes([0, 0, 255, 255]) * (8 * 4)
    png = images.bgra_to_png(pixels, 8, 4, (16, 8))
    assert images.image_size(png) == (16, 8)
    assert images.decode_to_bgra(png, 4, 2) == bytes([0, 0, 255, 255]) * 8


def check_mask() -> None:
    mask = bytes([0, 255, 128, 7]) * 2  # width 4: a row stride Qt would otherwise pad
    png = images.mask_to_png(mask, 4, 2)
    gray = images.decode_to_bgra(png, 4, 2)
    assert bytes(gray[0::4]) == mask  # B = G = R = the mask value, opaque


def check_multiply_alpha() -> None:
    pixels = bytes([10, 20, 30, 255]) * 3
    shaped = images.multiply_alpha(pixels, bytes([0, 255, 128]), 3, 1)
    assert shaped[3::4] == bytes([0, 255, 128])
    assert shaped[4:7] == bytes([10, 20, 30])  # colours kept where it is opaque


def check_bad_bytes() -> None:
    try:
        images.decode_to_bgra(b"not an image", 4, 4)
    except images.ImageDecodeError as error:
        assert "cannot decode" in str(error)
    else:
        raise AssertionError("decoding garbage must fail clearly")


CHECKS = [check_round_trip, check_scaling, check_mask, check_multiply_alpha, check_bad_bytes]

if __name__ == "__main__":
    from mrflow_krita.qt import QT_API

    for check in CHECKS:
        check()
    print(f"ok {QT_API} {len(CHECKS)}")
