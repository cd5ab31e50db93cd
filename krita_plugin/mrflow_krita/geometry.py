"""Rectangles and sizes: what part of the canvas a job reads, and at what size it generates.

Pure arithmetic, no Qt and no Krita, so every rule here is unit-tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rect:
    """An axis-aligned pixel rectangle in document coordinates (x, y of the top-left corner)."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    @property
    def is_empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersect(self, other: Rect) -> Rect:
        x, y = max(self.x, other.x), max(self.y, other.y)
        right, bottom = min(self.right, other.right), min(self.bottom, other.bottom)
        return Rect(x, y, max(0, right - x), max(0, bottom - y))

    def grow(self, margin: int) -> Rect:
        return Rect(
            self.x - margin, self.y - margin, self.width + 2 * margin, self.height + 2 * margin
        )

    def translated(self, dx: int, dy: int) -> Rect:
        return Rect(self.x + dx, self.y + dy, self.width, self.height)


def round_to_multiple(value: int, multiple: int) -> int:
    """Nearest multiple of `multiple`, never below one multiple (the model needs at least that)."""
    if multiple <= 0:
        raise ValueError(f"size multiple must be positive, got {multiple}")
    return max(multiple, int(value / multiple + 0.5) * multiple)  # halves round up


def generation_size(
    width: int, height: int, multiple: int, max_side: int = 2048, min_side: int = 256
) -> tuple[int, int]:
    """The size to generate for a `width` x `height` region of the canvas.

    The aspect ratio is kept; the longer side is brought into [min_side, max_side] (a tiny
    selection is generated larger and scaled down, which looks far better than generating
    at 40 px), then both sides are rounded to the model's multiple.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"region must not be empty, got {width}x{height}")
    longest = max(width, height)
    min_side = min(min_side, max_side)  # a cap below the minimum wins
    factor = 1.0
    if longest > max_side:
        factor = max_side / longest
    elif longest < min_side:
        factor = min_side / longest
    cap = max(multiple, (max_side // multiple) * multiple)  # rounding must not step over the cap
    w = min(cap, round_to_multiple(round(width * factor), multiple))
    h = min(cap, round_to_multiple(round(height * factor), multiple))
    return w, h


def context_rect(selection: Rect, canvas: Rect, fraction: float = 0.25, minimum: int = 32) -> Rect:
    """The selection's bounds grown by some surrounding canvas, so an inpaint sees its context.

    The margin is `fraction` of the larger side (at least `minimum` px), clipped to the canvas.
    """
    margin = max(minimum, round(max(selection.width, selection.height) * fraction))
    return selection.grow(margin).intersect(canvas)


def feather_radius(
    selection: Rect, fraction: float = 0.04, minimum: int = 2, maximum: int = 48
) -> int:
    """How soft the edges of a filled selection are: a small share of its size."""
    return max(minimum, min(maximum, round(max(selection.width, selection.height) * fraction)))
