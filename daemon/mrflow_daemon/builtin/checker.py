"""A GenEval-style checker for the built-in world: does a picture show what its caption says?

Checks, on an RGB picture and the scene its caption describes:

- ``background``: the colour of the picture's border is the named background colour;
- ``count``: the number of shape-sized blobs equals the number of shapes named; a blob in no
  shape colour that is not background either (a beige square on grey, a magenta one) counts too;
- ``colour``: every named shape's colour is present as a shape-sized blob;
- ``kind``: that blob is circle, square or triangle as named: its fill ratio (area / bounding-box
  area: square 1.0, circle 0.79, triangle 0.5) picks the kind, and the blob must also be a
  compact convex shape (bounding box not far from square, area at least 85% of its convex hull)
  and a triangle must point up (its centroid in the lower part of its box, where an upright
  triangle's is; a diamond or a crescent has the fill ratio of a triangle but is none);
- ``position``: that blob's centroid is nearest the named position's anchor.

A picture passes when every check passes. Pixels are segmented by their nearest palette colour
(the shape colours plus the measured background), blobs are 4-connected components.

`edge_width` is the sharpness measure: the 10-90% rise distance across the boundary of the checked
shapes, measured along the boundary normal. Blur widens it, noise or blotches do not narrow it
(mean gradient magnitude would be fooled by both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mrflow_daemon.builtin.world import (
    ANCHORS,
    BACKGROUND_COLOURS,
    KINDS,
    SHAPE_COLOURS,
    SIZE_RANGE,
    Scene,
)

# A pixel farther than this from every palette colour belongs to no class (edges between two
# colours, artefacts); 0-255 RGB Euclidean distance.
MAX_COLOUR_DISTANCE = 100.0
# The smallest named shape (a triangle at the low end of SIZE_RANGE) covers about 0.0186 of the
# short side squared; a blob counts as a shape from 30% of that.
_MIN_SHAPE_AREA = 0.433 * (1.15 * SIZE_RANGE[0]) ** 2
SHAPE_AREA_FRACTION = 0.3 * _MIN_SHAPE_AREA
# Fill-ratio thresholds between triangle (0.5), circle (pi/4) and square (1.0).
TRIANGLE_BELOW = 0.64
SQUARE_ABOVE = 0.88
# Every kind is compact and convex. On 300 held-out ground-truth pictures: box aspect (width /
# height) 0.98-1.02 for circles and squares, 1.12-1.19 for triangles; solidity (area / convex
# hull) at least 0.949. An upright triangle's centroid sits 0.66 of the way down its box (a
# diamond's or a circle's 0.5, a downward triangle's 0.33).
ASPECT_RANGE = (0.67, 1.5)
MIN_SOLIDITY = 0.85
TRIANGLE_MIN_DROP = 0.56
# Stray blobs (in no shape colour): pixels farther than MAX_COLOUR_DISTANCE / 2 from the measured
# background and not of a shape colour, eroded by this many pixels first, so that the thin ring
# of edge pixels between a shape and the background (its anti-aliasing or blur) is not one.
STRAY_EROSION = 2

CHECKS = ("background", "count", "colour", "kind", "position")


@dataclass
class Blob:
    colour: str
    area: int
    cx: float  # centroid, fractions of width and height
    cy: float
    fill: float
    kind: str  # circle, square, triangle, or "irregular" (none of them)
    position: str
    mask: np.ndarray = field(repr=False)
    aspect: float = 1.0  # bounding box width / height
    solidity: float = 1.0  # area / convex hull area


@dataclass
class ShapeCheck:
    colour: bool
    kind: bool
    position: bool
    blob: Blob | None


@dataclass
class CheckResult:
    background: bool
    count: bool
    shapes: list[ShapeCheck]
    detected_background: str | None
    detected_count: int
    strays: int = 0  # of detected_count: blobs in no shape colour

    def checks(self) -> dict[str, bool]:
        return {
            "background": self.background,
            "count": self.count,
            "colour": all(s.colour for s in self.shapes),
            "kind": all(s.kind for s in self.shapes),
            "position": all(s.position for s in self.shapes),
        }

    @property
    def passed(self) -> bool:
        return all(self.checks().values())


def _as_array(image) -> np.ndarray:  # PIL image or HxWx3 uint8 / float array
    array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if array.dtype != np.uint8:
        array = np.clip(np.asarray(array, dtype=np.float64) * 255.0, 0, 255)
    return np.asarray(array, dtype=np.float64)


def _border(pixels: np.ndarray, thickness: int = 2) -> np.ndarray:
    return np.concatenate(
        [
            pixels[:thickness].reshape(-1, 3),
            pixels[-thickness:].reshape(-1, 3),
            pixels[:, :thickness].reshape(-1, 3),
            pixels[:, -thickness:].reshape(-1, 3),
        ]
    )


def _nearest(colour: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> tuple[str, float]:
    names = list(palette)
    distances = np.linalg.norm(np.array([palette[n] for n in names]) - colour, axis=1)
    best = int(distances.argmin())
    return names[best], float(distances[best])


def components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a boolean mask, as boolean masks (largest first).

    Min-label propagation with pointer jumping, in numpy: a few dozen vectorised passes at the
    sizes this world uses.
    """
    height, width = mask.shape
    big = height * width
    labels = np.where(mask, np.arange(big).reshape(height, width), big)
    while True:
        new = labels.copy()
        np.minimum(new[1:], labels[:-1], out=new[1:])
        np.minimum(new[:-1], labels[1:], out=new[:-1])
        np.minimum(new[:, 1:], labels[:, :-1], out=new[:, 1:])
        np.minimum(new[:, :-1], labels[:, 1:], out=new[:, :-1])
        new = np.where(mask, new, big)
        flat = np.append(new.ravel(), big)
        new = np.where(mask, flat[new], big)  # jump to the label's own label
        if np.array_equal(new, labels):
            break
        labels = new
    found = np.unique(labels[mask])
    masks = [labels == value for value in found]
    masks.sort(key=lambda m: -int(m.sum()))
    return masks


def _classify_kind(fill: float, aspect: float, solidity: float, drop: float) -> str:
    """circle, square or triangle; "irregular" for a blob that is none of them."""
    low, high = ASPECT_RANGE
    if not low <= aspect <= high or solidity < MIN_SOLIDITY:
        return "irregular"
    if fill < TRIANGLE_BELOW:
        return "triangle" if drop >= TRIANGLE_MIN_DROP else "irregular"
    return "square" if fill > SQUARE_ABOVE else "circle"


def _hull_area(xs: np.ndarray, ys: np.ndarray) -> float:
    """Area of the convex hull of the pixels (their corners) at columns `xs`, rows `ys`."""
    order = np.lexsort((xs, ys))
    xs, ys = xs[order], ys[order]
    starts = np.flatnonzero(np.r_[True, ys[1:] != ys[:-1]])
    ends = np.r_[starts[1:], len(ys)] - 1
    rows = ys[starts]
    left, right = xs[starts], xs[ends] + 1
    corners = np.concatenate(
        [
            np.stack([left, rows], 1),
            np.stack([right, rows], 1),
            np.stack([left, rows + 1], 1),
            np.stack([right, rows + 1], 1),
        ]
    )
    points = sorted(set(map(tuple, corners.tolist())))

    def half(chain: list[tuple[int, int]]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for x, y in chain:
            while len(out) >= 2:
                (ox, oy), (ax, ay) = out[-2], out[-1]
                if (ax - ox) * (y - oy) - (ay - oy) * (x - ox) > 0:
                    break
                out.pop()
            out.append((x, y))
        return out

    hull = half(points)[:-1] + half(points[::-1])[:-1]
    twice = sum(
        x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(hull, hull[1:] + hull[:1], strict=True)
    )
    return abs(twice) / 2


def _classify_position(cx: float, cy: float) -> str:
    return min(ANCHORS, key=lambda p: (ANCHORS[p][0] - cx) ** 2 + (ANCHORS[p][1] - cy) ** 2)


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels whose whole (2 radius + 1)-square neighbourhood is in `mask`."""
    size = 2 * radius + 1
    padded = np.pad(mask, radius, constant_values=False)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    return windows.all(axis=(-2, -1))


def find_blobs(image) -> tuple[str | None, list[Blob], int]:
    """The background's colour name (None when the border matches none), the shape blobs, and
    the number of stray blobs (shape-sized, in no shape colour, not background either)."""
    pixels = _as_array(image)
    height, width, _ = pixels.shape
    measured_bg = np.median(_border(pixels), axis=0)
    bg_name, bg_distance = _nearest(measured_bg, BACKGROUND_COLOURS)
    palette_names = [*SHAPE_COLOURS, "_background"]
    palette = np.array([*SHAPE_COLOURS.values(), measured_bg], dtype=np.float64)
    distances = np.linalg.norm(pixels[:, :, None, :] - palette[None, None], axis=-1)
    nearest = distances.argmin(axis=-1)
    close = distances.min(axis=-1) <= MAX_COLOUR_DISTANCE
    min_area = SHAPE_AREA_FRACTION * min(width, height) ** 2
    blobs: list[Blob] = []
    for index, name in enumerate(palette_names[:-1]):
        mask = close & (nearest == index)
        if mask.sum() < min_area:
            continue
        for part in components(mask):
            area = int(part.sum())
            if area < min_area:
                break  # sorted largest first
            ys, xs = np.nonzero(part)
            box_w, box_h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
            fill = area / (box_w * box_h)
            aspect = box_w / box_h
            solidity = area / _hull_area(xs, ys)
            drop = (ys.mean() + 0.5 - ys.min()) / box_h  # centroid's depth in its box
            kind = _classify_kind(fill, aspect, solidity, drop)
            cx, cy = (xs.mean() + 0.5) / width, (ys.mean() + 0.5) / height
            position = _classify_position(cx, cy)
            blobs.append(Blob(name, area, cx, cy, fill, kind, position, part, aspect, solidity))
    shape_pixel = close & (nearest < len(SHAPE_COLOURS))
    stray = ~shape_pixel & (distances[:, :, -1] > MAX_COLOUR_DISTANCE / 2)
    strays = 0
    if stray.sum() >= min_area:
        for part in components(_erode(stray, STRAY_EROSION)):
            if part.sum() < min_area:
                break  # sorted largest first
            strays += 1
    return (bg_name if bg_distance <= MAX_COLOUR_DISTANCE / 2 else None), blobs, strays


def check_image(image, scene: Scene) -> CheckResult:
    """Check a picture (PIL image or HxWx3 array) against the scene its caption describes."""
    bg_name, blobs, strays = find_blobs(image)
    shape_checks = []
    for shape in scene.shapes:
        same_colour = [b for b in blobs if b.colour == shape.colour]
        if not same_colour:
            shape_checks.append(ShapeCheck(False, False, False, None))
            continue
        blob = max(same_colour, key=lambda b: b.area)
        shape_checks.append(
            ShapeCheck(True, blob.kind == shape.kind, blob.position == shape.position, blob)
        )
    return CheckResult(
        background=bg_name == scene.background,
        count=len(blobs) + strays == len(scene.shapes),
        shapes=shape_checks,
        detected_background=bg_name,
        detected_count=len(blobs) + strays,
        strays=strays,
    )


# ---------------------------------------------------------------------------------------------
# Sharpness: 10-90% edge rise distance along the boundary normal


def _bilinear(field_: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample a 2-D array at pixel-centre coordinates (x, y); clamps at the border."""
    height, width = field_.shape
    x = np.clip(x - 0.5, 0, width - 1.001)
    y = np.clip(y - 0.5, 0, height - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    top = field_[y0, x0] * (1 - fx) + field_[y0, x0 + 1] * fx
    bottom = field_[y0 + 1, x0] * (1 - fx) + field_[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _edge_widths(pixels: np.ndarray, blob: Blob, background: np.ndarray) -> list[float]:
    height, width, _ = pixels.shape
    colour = np.array(SHAPE_COLOURS[blob.colour], dtype=np.float64)
    axis = colour - background
    # How far each pixel is from the background toward the shape's colour: 0 outside, 1 inside.
    t = np.clip(((pixels - background) @ axis) / (axis @ axis), -0.5, 1.5)
    cx, cy = blob.cx * width, blob.cy * height
    reach = 0.3 * min(width, height)
    radii = np.arange(0.0, reach, 0.25)
    offsets = np.arange(-6.0, 6.0 + 1e-9, 0.125)
    widths = []
    for angle in np.linspace(0, 2 * math.pi, 32, endpoint=False):
        dx, dy = math.cos(angle), math.sin(angle)
        along = _bilinear(t, cx + radii * dx, cy + radii * dy)
        below = np.nonzero(along < 0.5)[0]
        if len(below) == 0 or below[0] == 0:
            continue
        r = radii[below[0]]
        bx, by = cx + r * dx, cy + r * dy
        gx = float(_bilinear(t, np.array([bx + 1]), np.array([by]))[0]) - float(
            _bilinear(t, np.array([bx - 1]), np.array([by]))[0]
        )
        gy = float(_bilinear(t, np.array([bx]), np.array([by + 1]))[0]) - float(
            _bilinear(t, np.array([bx]), np.array([by - 1]))[0]
        )
        norm = math.hypot(gx, gy)
        if norm < 1e-6:
            continue
        nx, ny = -gx / norm, -gy / norm  # outward: t falls
        profile = _bilinear(t, bx + offsets * nx, by + offsets * ny)
        inside = np.median(profile[offsets <= -4])
        outside = np.median(profile[offsets >= 4])
        if inside - outside < 0.5:
            continue  # no clear edge here (a neighbouring shape or a corner)
        u = (profile - outside) / (inside - outside)
        centre = len(offsets) // 2
        high = np.nonzero(u[: centre + 1] >= 0.9)[0]
        low = np.nonzero(u[centre:] <= 0.1)[0]
        if len(high) == 0 or len(low) == 0:
            continue
        i, j = high[-1], centre + low[0]  # last sample at or above 90%, first at or below 10%
        widths.append(_crossing(offsets, u, j - 1, 0.1) - _crossing(offsets, u, i, 0.9))
    return widths


def _crossing(offsets: np.ndarray, u: np.ndarray, index: int, level: float) -> float:
    """Where `u` crosses `level` between samples `index` and `index + 1` (linear), so the edge
    width is not rounded to the 0.125 px sampling grid."""
    a, b = float(u[index]), float(u[index + 1])
    step = float(offsets[index + 1] - offsets[index])
    fraction = (a - level) / (a - b) if a != b else 0.0
    return float(offsets[index]) + min(max(fraction, 0.0), 1.0) * step


def edge_width(image, scene: Scene, result: CheckResult | None = None) -> float | None:
    """Median 10-90% edge width in pixels over the matched shapes; None when no shape matched."""
    pixels = _as_array(image)
    result = result or check_image(image, scene)
    background = np.median(_border(pixels), axis=0)
    widths: list[float] = []
    for shape_check in result.shapes:
        if shape_check.blob is not None:
            widths += _edge_widths(pixels, shape_check.blob, background)
    return float(np.median(widths)) if widths else None


__all__ = [
    "CHECKS",
    "KINDS",
    "Blob",
    "CheckResult",
    "ShapeCheck",
    "check_image",
    "components",
    "edge_width",
    "find_blobs",
]
