"""The QPainter icon: each state looks different, and the percent ring grows."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
from mrflow_daemon.tray import icon
from PySide6.QtGui import QColor, QImage


def pixel(image: QImage, x: float, y: float) -> QColor:
    return image.pixelColor(round(x * image.width()), round(y * image.height()))


def test_each_state_has_its_own_colour() -> None:
    # Sampled on the disc, left of the white marks (bars, "!") in the middle.
    disc = {s: pixel(icon.draw(s).toImage(), 0.2, 0.5) for s in ("idle", "paused", "error")}
    assert disc["idle"].green() > 120 and disc["idle"].red() < 100
    assert disc["error"].red() > 200 and disc["error"].green() < 100
    assert pixel(icon.draw("error").toImage(), 0.5, 0.35) == QColor("white")
    paused = disc["paused"]
    assert paused.red() > 200 and paused.blue() < 100
    stopped = icon.draw("stopped").toImage()
    assert pixel(stopped, 0.5, 0.5).alpha() == 0  # a hollow ring
    assert pixel(stopped, 0.5, 0.12).alpha() == 255  # on the ring, straight above the centre


def test_the_progress_ring_fills_clockwise_with_the_percent() -> None:
    blue = QColor(icon.COLOURS["generating"])
    quarter = icon.draw("generating", 25).toImage()
    # Mid-ring points: half past twelve-to-three (45 degrees) is filled at 25%, nine o'clock not.
    right = pixel(quarter, 0.75, 0.25)
    left = pixel(quarter, 0.145, 0.5)
    assert right == blue
    assert left != blue and left.alpha() > 0
    full = icon.draw("generating", 100).toImage()
    assert pixel(full, 0.145, 0.5) == blue


def test_icons_are_not_blank() -> None:
    for state in icon.COLOURS:
        assert not icon.icon(state, 50).isNull()
