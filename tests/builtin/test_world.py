"""The built-in world: caption grammar, held-out split, rendering."""

from __future__ import annotations

import random

import pytest
import torch
from mrflow_daemon.builtin.world import (
    BACKGROUND_COLOURS,
    SHAPE_COLOURS,
    CaptionError,
    Scene,
    Shape,
    all_scenes,
    eval_cases,
    is_eval_caption,
    is_held_out,
    make_scene,
    parse_caption,
    render_batch,
    render_image,
    sample_placements,
    sample_scene,
    sample_train_scene,
)


def test_caption_round_trip_for_many_scenes() -> None:
    rng = random.Random(0)
    for _ in range(500):
        scene = sample_scene(rng)
        assert parse_caption(scene.caption()) == scene


def test_example_caption_reads_as_documented() -> None:
    scene = make_scene([Shape("red", "circle", "left"), Shape("blue", "square", "top")], "grey")
    assert (
        scene.caption() == "a red circle on the left and a blue square at the top, grey background"
    )


def test_parser_tolerates_case_and_spacing() -> None:
    scene = parse_caption("  A Yellow   triangle in the center,  beige background ")
    assert scene.shapes == (Shape("yellow", "triangle", "center"),)
    assert scene.background == "beige"


@pytest.mark.parametrize(
    ("caption", "named"),
    [
        ("a purple circle on the left, grey background", "purple"),
        ("a red hexagon on the left, grey background", "hexagon"),
        ("a red circle somewhere, grey background", "somewhere"),
        ("a red circle on the left, pink background", "pink"),
        ("a red circle on the left", "background"),
        (
            "a red circle on the left and a red square at the top, grey background",
            "different colours",
        ),
        (
            "a red circle on the left and a blue square on the left, grey background",
            "different positions",
        ),
    ],
)
def test_parser_names_what_is_wrong(caption: str, named: str) -> None:
    with pytest.raises(CaptionError, match=named):
        parse_caption(caption)


def _distance(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    return float(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5)


def test_colours_are_far_apart() -> None:
    shapes, backgrounds = list(SHAPE_COLOURS.values()), list(BACKGROUND_COLOURS.values())
    for i, a in enumerate(shapes):
        assert all(_distance(a, b) > 100 for b in shapes[i + 1 :] + backgrounds)
    for i, a in enumerate(backgrounds):
        assert all(_distance(a, b) > 75 for b in backgrounds[i + 1 :])


def test_training_never_draws_a_held_out_scene_in_any_phrasing() -> None:
    rng = random.Random(1)
    for _ in range(3000):
        scene = sample_train_scene(rng)
        assert not is_held_out(scene)
        assert not is_held_out(Scene(tuple(reversed(scene.shapes)), scene.background))
    cases = eval_cases(200)
    assert all(is_held_out(c.scene) for c in cases)
    assert cases == eval_cases(200)  # fixed, reproducible
    assert len({(c.caption, c.seed) for c in cases}) == 200


def test_the_held_out_scenes_are_those_whose_every_phrasing_is_a_held_out_caption() -> None:
    scenes = all_scenes()
    assert len(scenes) == 270 + 8100  # each scene once, whatever its phrasing
    held_out = [scene for scene in scenes if is_held_out(scene)]
    assert (len(held_out), sum(len(s.shapes) == 1 for s in held_out)) == (160, 33)
    for scene in scenes[270:400]:
        twin = Scene(tuple(reversed(scene.shapes)), scene.background)
        both = is_eval_caption(scene.caption()) and is_eval_caption(twin.caption())
        assert is_held_out(scene) == is_held_out(twin) == both
    # A held-out caption whose twin is a training caption is not held out: training draws it.
    leaky = next(
        s
        for s in scenes[270:]
        if is_eval_caption(s.caption())
        and not is_eval_caption(Scene(tuple(reversed(s.shapes)), s.background).caption())
    )
    assert not is_held_out(leaky)


def test_evaluation_keeps_the_training_share_of_two_shape_scenes() -> None:
    cases = eval_cases(500)
    two = sum(len(c.scene.shapes) == 2 for c in cases)
    assert 0.5 < two / 500 < 0.7  # TWO_SHAPE_PROBABILITY is 0.6


def test_rendering_is_deterministic_and_sized() -> None:
    case = eval_cases(1)[0]
    a = render_image(case.scene, case.placements(), 320, 192)
    b = render_image(case.scene, case.placements(), 320, 192)
    assert a.size == (320, 192)
    assert a.tobytes() == b.tobytes()


def test_rendered_pixels_show_the_named_colours() -> None:
    scene = parse_caption("a blue square in the center, brown background")
    image = render_batch([scene], [sample_placements(scene, random.Random(0))], 128, 128)[0]
    centre = (image[:, 64, 64] * 255).round()
    corner = (image[:, 2, 2] * 255).round()
    assert torch.equal(centre, torch.tensor(SHAPE_COLOURS["blue"], dtype=torch.float32))
    assert torch.equal(corner, torch.tensor(BACKGROUND_COLOURS["brown"], dtype=torch.float32))
