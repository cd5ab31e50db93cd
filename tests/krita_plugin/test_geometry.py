"""Sizes and regions: what a job reads from the canvas and what it asks the daemon for."""

from __future__ import annotations

import pytest
from mrflow_krita.geometry import (
    Rect,
    context_rect,
    feather_radius,
    generation_size,
    round_to_multiple,
)


def test_round_to_multiple_never_gives_zero() -> None:
    assert round_to_multiple(100, 16) == 96
    assert round_to_multiple(104, 16) == 112
    assert round_to_multiple(3, 16) == 16
    with pytest.raises(ValueError, match="positive"):
        round_to_multiple(10, 0)


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ((1024, 768), (1024, 768)),  # already fine
        ((4000, 3000), (1024, 768)),  # too large: scaled down, aspect kept
        ((100, 50), (256, 128)),  # too small: scaled up
        ((1030, 10), (1024, 16)),  # a sliver stays at least one multiple tall
    ],
)
def test_generation_size(region: tuple[int, int], expected: tuple[int, int]) -> None:
    width, height = generation_size(*region, multiple=16, max_side=1024)
    assert (width, height) == expected
    assert width % 16 == 0 and height % 16 == 0 and max(width, height) <= 1024


def test_generation_size_refuses_empty_regions() -> None:
    with pytest.raises(ValueError, match="empty"):
        generation_size(0, 10, 16)


def test_context_grows_the_selection_and_stays_on_the_canvas() -> None:
    canvas = Rect(0, 0, 400, 300)
    assert context_rect(Rect(100, 100, 200, 100), canvas) == Rect(50, 50, 300, 200)
    assert context_rect(Rect(0, 0, 40, 40), canvas) == Rect(0, 0, 72, 72)  # at least 32 px


def test_feather_radius_scales_with_the_selection_within_bounds() -> None:
    assert feather_radius(Rect(0, 0, 10, 10)) == 2
    assert feather_radius(Rect(0, 0, 500, 200)) == 20
    assert feather_radius(Rect(0, 0, 5000, 10)) == 48
