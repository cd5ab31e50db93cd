"""The built-in model's procedural world: coloured shapes at named places on a plain background.

A *scene* is what a caption says (background colour; one or two shapes, each with a colour, a
kind and a named position). A *layout* is how one picture realises it (exact centres and sizes,
jittered a little from seeded randomness), so one caption has many pictures, as a real prompt does.

Pictures are rendered from signed distance functions with a one-pixel anti-aliasing ramp, in torch
and batched, so training can draw fresh pictures on the GPU as fast as the model eats them, at any
size and aspect ratio; `render_image` wraps it for one PIL picture.

Colours are chosen far apart: every shape colour is more than 100 (Euclidean, 0-255 RGB) from every
background colour and every other shape colour (backgrounds are more than 80 apart), so the checker
can tell them apart after a VAE.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

SHAPE_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 80, 215),
    "yellow": (240, 205, 40),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 128),
    "beige": (200, 180, 150),
    "brown": (120, 85, 60),
}
KINDS: tuple[str, ...] = ("circle", "square", "triangle")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")

# Where each named position puts a shape's centre, as fractions of width and height.
ANCHORS: dict[str, tuple[float, float]] = {
    "left": (0.2, 0.5),
    "right": (0.8, 0.5),
    "top": (0.5, 0.2),
    "bottom": (0.5, 0.8),
    "center": (0.5, 0.5),
}
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
# Shape extent as a fraction of the image's short side, and the centre's jitter as a fraction of
# each dimension: chosen so that two shapes at neighbouring positions never overlap and no shape
# leaves the picture. The worst case is two of the widest triangles (1.15 x the extent across)
# side by side, both jittered inwards: 0.7% of the short side apart (1.8 px at 256 px, so their
# anti-aliased edges may meet; they differ in colour, so the checker still tells them apart).
# Circles and squares keep at least 4% apart.
SIZE_RANGE = (0.18, 0.22)
JITTER = 0.02
TWO_SHAPE_PROBABILITY = 0.6


@dataclass(frozen=True)
class Shape:
    colour: str
    kind: str
    position: str

    def phrase(self) -> str:
        return f"a {self.colour} {self.kind} {POSITION_PHRASES[self.position]}"


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]
    background: str

    def caption(self) -> str:
        return " and ".join(s.phrase() for s in self.shapes) + f", {self.background} background"


@dataclass(frozen=True)
class Placement:
    """One shape's exact centre (fractions of width, height) and extent (fraction of short side)."""

    cx: float
    cy: float
    size: float


class CaptionError(ValueError):
    """A caption outside the built-in model's grammar."""


def _validate(scene: Scene) -> None:
    if scene.background not in BACKGROUND_COLOURS:
        raise CaptionError(
            f"unknown background {scene.background!r}; allowed: {', '.join(BACKGROUND_COLOURS)}"
        )
    if not 1 <= len(scene.shapes) <= 2:
        raise CaptionError(f"a scene has one or two shapes, not {len(scene.shapes)}")
    for shape in scene.shapes:
        if shape.colour not in SHAPE_COLOURS:
            raise CaptionError(
                f"unknown colour {shape.colour!r}; allowed: {', '.join(SHAPE_COLOURS)}"
            )
        if shape.kind not in KINDS:
            raise CaptionError(f"unknown shape {shape.kind!r}; allowed: {', '.join(KINDS)}")
        if shape.position not in POSITIONS:
            raise CaptionError(
                f"unknown position {shape.position!r}; allowed: {', '.join(POSITIONS)}"
            )
    if len(scene.shapes) == 2:
        a, b = scene.shapes
        if a.colour == b.colour:
            raise CaptionError("the two shapes of a scene must have different colours")
        if a.position == b.position:
            raise CaptionError("the two shapes of a scene must be at different positions")


def make_scene(shapes: Sequence[Shape], background: str) -> Scene:
    scene = Scene(tuple(shapes), background)
    _validate(scene)
    return scene


_PHRASE_TO_POSITION = {phrase: pos for pos, phrase in POSITION_PHRASES.items()}


def parse_caption(caption: str) -> Scene:
    """The scene a caption describes; raises CaptionError naming what is outside the grammar.

    Grammar (documented in docs/builtin-model.md):
        caption  := shape [" and " shape] ", " BACKGROUND " background"
        shape    := "a " COLOUR " " KIND " " PLACE
        PLACE    := "on the left" | "on the right" | "at the top" | "at the bottom" | "in the center"
    """
    text = " ".join(caption.strip().lower().split())
    head, sep, tail = text.rpartition(", ")
    if not sep or not tail.endswith(" background"):
        raise CaptionError(
            f"caption must end with ', <colour> background' (e.g. ', grey background'): {caption!r}"
        )
    background = tail.removesuffix(" background")
    shapes = []
    for phrase in head.split(" and "):
        words = phrase.split(" ", 3)
        if len(words) != 4 or words[0] not in ("a", "an"):
            raise CaptionError(
                f"shape phrase must read 'a <colour> <shape> <place>', got {phrase!r}"
            )
        _, colour, kind, place = words
        if place not in _PHRASE_TO_POSITION:
            allowed = ", ".join(repr(p) for p in POSITION_PHRASES.values())
            raise CaptionError(f"unknown place {place!r}; allowed: {allowed}")
        shapes.append(Shape(colour, kind, _PHRASE_TO_POSITION[place]))
    return make_scene(shapes, background)


# ---------------------------------------------------------------------------------------------
# The held-out split, by scene: a scene is held out when every phrasing of it (either shape
# first) is a held-out caption. Training never draws a held-out scene in any wording, and
# evaluation draws only held-out scenes. Weights trained under the earlier split by caption text
# (which left out every held-out caption, including the twins of trained ones) never saw these
# scenes either, so one evaluation set serves both.


def is_eval_caption(caption: str) -> bool:
    """True for captions in the held-out eighth (a stable hash, independent of Python's seed)."""
    digest = 0
    for byte in caption.encode():
        digest = (digest * 131 + byte) % 1_000_003
    return digest % 8 == 0


def is_held_out(scene: Scene) -> bool:
    """True for scenes reserved for evaluation: every phrasing of it is a held-out caption.

    160 of the world's 8,370 scenes (`all_scenes`): 33 of the 270 one-shape scenes (about an
    eighth) and 127 of the 8,100 two-shape scenes (about one in 64: both phrasings held out)."""
    phrasings = {scene.shapes, tuple(reversed(scene.shapes))}
    return all(is_eval_caption(Scene(order, scene.background).caption()) for order in phrasings)


def _scene_with(rng: random.Random, count: int) -> Scene:
    colours = rng.sample(list(SHAPE_COLOURS), count)
    positions = rng.sample(list(POSITIONS), count)
    shapes = [Shape(c, rng.choice(KINDS), p) for c, p in zip(colours, positions, strict=True)]
    return Scene(tuple(shapes), rng.choice(list(BACKGROUND_COLOURS)))


def _shape_count(rng: random.Random) -> int:
    return 2 if rng.random() < TWO_SHAPE_PROBABILITY else 1


def sample_scene(rng: random.Random) -> Scene:
    return _scene_with(rng, _shape_count(rng))


def sample_train_scene(rng: random.Random) -> Scene:
    while True:
        scene = sample_scene(rng)
        if not is_held_out(scene):
            return scene


def sample_eval_scene(rng: random.Random) -> Scene:
    """A held-out scene, with one or two shapes as often as in training (60% two)."""
    count = _shape_count(rng)
    while True:
        scene = _scene_with(rng, count)
        if is_held_out(scene):
            return scene


def all_scenes() -> list[Scene]:
    """Every scene of the world, each once (a two-shape scene in one of its two phrasings)."""
    singles = [
        Scene((Shape(c, k, p),), b)
        for b in BACKGROUND_COLOURS
        for c in SHAPE_COLOURS
        for k in KINDS
        for p in POSITIONS
    ]
    pairs = [
        Scene((a.shapes[0], b.shapes[0]), a.background)
        for i, a in enumerate(singles)
        for b in singles[i + 1 :]
        if a.background == b.background
        and a.shapes[0].colour != b.shapes[0].colour
        and a.shapes[0].position != b.shapes[0].position
    ]
    return singles + pairs


def sample_placements(scene: Scene, rng: random.Random) -> tuple[Placement, ...]:
    placements = []
    for shape in scene.shapes:
        ax, ay = ANCHORS[shape.position]
        placements.append(
            Placement(
                ax + rng.uniform(-JITTER, JITTER),
                ay + rng.uniform(-JITTER, JITTER),
                rng.uniform(*SIZE_RANGE),
            )
        )
    return tuple(placements)


@dataclass(frozen=True)
class EvalCase:
    """One held-out prompt/seed pair; `seed` drives both the generation and the reference layout."""

    caption: str
    seed: int

    @property
    def scene(self) -> Scene:
        return parse_caption(self.caption)

    def placements(self) -> tuple[Placement, ...]:
        return sample_placements(self.scene, random.Random(self.seed))


def eval_cases(n: int, *, seed: int = 2026) -> list[EvalCase]:
    """The first `n` held-out prompt/seed pairs: a fixed, reproducible list.

    There are few held-out scenes (`is_held_out`), so a long list repeats scenes, each time with
    another seed and so another layout and noise, as GenEval samples several seeds per prompt."""
    rng = random.Random(seed)
    return [EvalCase(sample_eval_scene(rng).caption(), rng.randrange(2**31)) for _ in range(n)]


# ---------------------------------------------------------------------------------------------
# Rendering


def _sdf_circle(px: torch.Tensor, py: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(px * px + py * py) - radius


def _sdf_square(px: torch.Tensor, py: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    dx = px.abs() - half
    dy = py.abs() - half
    outside = torch.sqrt(dx.clamp(min=0) ** 2 + dy.clamp(min=0) ** 2)
    return outside + torch.maximum(dx, dy).clamp(max=0)


def _sdf_triangle(px: torch.Tensor, py: torch.Tensor, half_side: torch.Tensor) -> torch.Tensor:
    """Equilateral triangle pointing up, centred on its centroid (image y grows downwards)."""
    k = math.sqrt(3.0)
    x = px.abs() - half_side
    y = -py + half_side / k
    fold = (x + k * y) > 0
    x, y = torch.where(fold, (x - k * y) / 2, x), torch.where(fold, (-k * x - y) / 2, y)
    x = x - torch.minimum(torch.maximum(x, -2 * half_side), torch.zeros_like(x))
    return -torch.sqrt(x * x + y * y) * torch.sign(y)


# Each kind's distance function and the share of a shape's extent its size parameter takes.
_SHAPE_SDFS = {
    "circle": (_sdf_circle, 0.5),
    "square": (_sdf_square, 0.45),
    "triangle": (_sdf_triangle, 0.575),
}


def shape_distance(
    kind: str, px: torch.Tensor, py: torch.Tensor, extent: torch.Tensor | float
) -> torch.Tensor:
    """Signed distance in pixels from points (px, py), relative to a shape's centre, to the
    edge of a shape of `kind` and `extent` pixels: negative inside, as the renderer draws it."""
    sdf, share = _SHAPE_SDFS[kind]
    return sdf(px, py, share * torch.as_tensor(extent, dtype=px.dtype, device=px.device))


def shape_slots(
    scenes: Sequence[Scene],
    placements: Sequence[Sequence[Placement]],
    width: int,
    height: int,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's shapes as tensors, one slot per shape position: kind index [B, S], centre x,
    centre y and extent in pixels [B, S, 3], and 1.0 where a slot holds a shape [B, S]."""
    count, slots = len(scenes), max(len(s.shapes) for s in scenes)
    short = float(min(width, height))
    kind = torch.zeros(count, slots, dtype=torch.long)
    params = torch.zeros(count, slots, 3)
    present = torch.zeros(count, slots)
    for i, (scene, places) in enumerate(zip(scenes, placements, strict=True)):
        for j, (shape, place) in enumerate(zip(scene.shapes, places, strict=True)):
            kind[i, j] = KINDS.index(shape.kind)
            params[i, j] = torch.tensor([place.cx * width, place.cy * height, place.size * short])
            present[i, j] = 1.0
    return kind.to(device), params.to(device), present.to(device)


def slot_distance(
    kind: torch.Tensor, params: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor
) -> torch.Tensor:
    """Signed distance [B, H, W] from the points (gx, gy) [H, W] to one slot's shape in each
    picture (`kind` [B], `params` [B, 3]): every kind's distance is computed and the right one
    selected, so a whole batch takes a few kernel launches."""
    count = kind.shape[0]
    px = gx - params[:, 0].view(count, 1, 1)
    py = gy - params[:, 1].view(count, 1, 1)
    extent = params[:, 2].view(count, 1, 1)
    sdf = torch.stack([shape_distance(name, px, py, extent) for name in KINDS])
    return sdf.gather(0, kind.view(1, count, 1, 1).expand(1, count, *px.shape[1:]))[0]


def render_batch(
    scenes: Sequence[Scene],
    placements: Sequence[Sequence[Placement]],
    width: int,
    height: int,
    *,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Pictures of `scenes` as a float tensor [B, 3, height, width] in [0, 1], vectorised over
    the batch (one pass per shape slot), so a training batch of hundreds renders quickly."""
    count = len(scenes)
    kind, params, present = shape_slots(scenes, placements, width, height, device)
    colours = torch.zeros(count, kind.shape[1], 3)
    for i, scene in enumerate(scenes):
        for j, shape in enumerate(scene.shapes):
            colours[i, j] = torch.tensor(SHAPE_COLOURS[shape.colour], dtype=torch.float32)
    backgrounds = torch.tensor(
        [BACKGROUND_COLOURS[s.background] for s in scenes], dtype=torch.float32
    )
    colours, backgrounds = colours.to(device) / 255.0, backgrounds.to(device) / 255.0
    gy, gx = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32) + 0.5,
        torch.arange(width, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    images = backgrounds.view(count, 3, 1, 1).expand(count, 3, height, width)
    for j in range(kind.shape[1]):
        sdf = slot_distance(kind[:, j], params[:, j], gx, gy)
        coverage = ((0.5 - sdf).clamp(0, 1) * present[:, j].view(count, 1, 1)).unsqueeze(1)
        images = images * (1 - coverage) + colours[:, j].view(count, 3, 1, 1) * coverage
    return images.contiguous()


def render_image(
    scene: Scene, placements: Sequence[Placement], width: int = 256, height: int = 256
):  # -> PIL.Image.Image
    from PIL import Image

    array = render_batch([scene], [placements], width, height)[0]
    pixels = (array.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")
