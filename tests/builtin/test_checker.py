"""The shape checker: passes ground truth, fails wrong pictures, measures sharpness."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from mrflow_daemon.builtin.checker import check_image, components, edge_width
from mrflow_daemon.builtin.evaluate import (
    paired_difference_interval,
    scene_bootstrap_interval,
    wilson_interval,
)
from mrflow_daemon.builtin.world import (
    Shape,
    eval_cases,
    make_scene,
    parse_caption,
    render_image,
    sample_placements,
    sample_scene,
)
from PIL import ImageFilter


def test_ground_truth_passes_at_every_trained_aspect() -> None:
    rng = random.Random(3)
    sizes = [(256, 256), (320, 192), (192, 320), (288, 224), (224, 288)]
    failures = []
    for index in range(60):
        scene = sample_scene(rng)
        width, height = sizes[index % len(sizes)]
        image = render_image(scene, sample_placements(scene, rng), width, height)
        if not check_image(image, scene).passed:
            failures.append(scene.caption())
    assert failures == []


SCENE = make_scene([Shape("red", "circle", "left"), Shape("blue", "square", "top")], "grey")


def _picture(scene):  # type: ignore[no-untyped-def]
    return render_image(scene, sample_placements(scene, random.Random(5)), 256, 256)


def test_the_right_picture_passes() -> None:
    result = check_image(_picture(SCENE), SCENE)
    assert result.passed
    assert result.detected_count == 2


@pytest.mark.parametrize(
    ("wrong", "failing"),
    [
        ("a green circle on the left and a blue square at the top, grey background", "colour"),
        ("a red circle on the right and a blue square at the top, grey background", "position"),
        ("a red triangle on the left and a blue square at the top, grey background", "kind"),
        ("a red circle on the left, grey background", "count"),
        ("a red circle on the left and a blue square at the top, beige background", "background"),
        (
            "a red circle on the left and a blue square at the top and a white square on the right, grey background",
            "count",
        ),
    ],
)
def test_wrong_pictures_fail_the_right_check(wrong: str, failing: str) -> None:
    if wrong.count(" and ") == 2:  # three shapes are outside the grammar: build the picture by hand
        scene = make_scene([Shape("white", "square", "right")], "grey")
        image = np.asarray(_picture(SCENE)).copy()
        extra = np.asarray(_picture(scene))
        inside = np.abs(extra.astype(int) - np.array([128, 128, 128])).sum(axis=-1) > 30
        image[inside] = extra[inside]
        picture = image
    else:
        picture = _picture(parse_caption(wrong))
    result = check_image(picture, SCENE)
    assert not result.passed
    assert result.checks()[failing] is False


@pytest.mark.parametrize(
    ("colour", "strays"),
    [
        ((200, 180, 150), 1),  # beige on grey: nearer the background than any shape colour
        ((120, 85, 60), 1),  # brown: another background colour
        ((220, 40, 220), 1),  # magenta: far from every palette colour
        ((140, 140, 140), 0),  # 12 from the grey background: background, not a shape
    ],
)
def test_an_extra_shape_in_no_shape_colour_fails_count(
    colour: tuple[int, int, int], strays: int
) -> None:
    pixels = np.array(_picture(SCENE))
    pixels[110:160, 180:230] = colour  # a 50 px square on the right
    result = check_image(pixels, SCENE)
    assert (result.strays, result.detected_count) == (strays, 2 + strays)
    assert result.checks()["count"] is (strays == 0)
    assert result.checks()["colour"] and result.checks()["position"]


def test_edge_rings_of_blurred_shapes_are_not_strays() -> None:
    rng = random.Random(8)
    for _ in range(20):
        scene = sample_scene(rng)
        image = render_image(scene, sample_placements(scene, rng), 256, 256)
        for blurred in (image.filter(ImageFilter.GaussianBlur(r)) for r in (1, 2)):
            assert check_image(blurred, scene).strays == 0, scene.caption()


def test_missing_shape_fails_colour_and_count() -> None:
    only_red = make_scene([Shape("red", "circle", "left")], "grey")
    result = check_image(_picture(only_red), SCENE)
    assert not result.checks()["colour"]
    assert not result.checks()["count"]


def test_blank_picture_fails() -> None:
    blank = np.full((256, 256, 3), 128, dtype=np.uint8)
    assert not check_image(blank, SCENE).passed


def test_components_separates_blobs() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:6, 2:6] = True
    mask[10:18, 10:12] = True
    mask[10:12, 10:18] = True  # an L: one blob
    found = components(mask)
    assert [int(m.sum()) for m in found] == [28, 16]


def test_edge_width_tells_blur_from_detail() -> None:
    case = eval_cases(1)[0]
    sharp = render_image(case.scene, case.placements(), 256, 256)
    blurred = sharp.filter(ImageFilter.GaussianBlur(2))
    noisy = np.asarray(sharp).astype(int) + np.random.default_rng(0).integers(
        -12, 13, (256, 256, 3)
    )
    noisy_image = np.clip(noisy, 0, 255).astype(np.uint8)
    w_sharp = edge_width(sharp, case.scene)
    w_blur = edge_width(blurred, case.scene)
    w_noisy = edge_width(noisy_image, case.scene)
    assert w_sharp is not None and w_blur is not None and w_noisy is not None
    assert w_sharp < 2.0
    assert w_blur > 2 * w_sharp
    assert w_noisy < 1.5 * w_sharp  # noise is not mistaken for blur or for extra sharpness
    # A Gaussian blur's 10-90% rise is 2.563 sigma; widths add in quadrature. Measured between
    # samples (interpolated), not rounded up to the 0.125 px grid.
    assert abs(w_blur - math.hypot(2.563 * 2, w_sharp)) < 0.25


def test_resampling_scenes_widens_the_interval_when_a_scenes_repeats_fail_together() -> None:
    native = [True] * 100
    scenes = [index // 10 for index in range(100)]  # 10 scenes, 10 seeds each
    preset = [scene not in (2, 5, 7) for scene in scenes]  # fails every repeat of 3 scenes
    low, high = paired_difference_interval(70, 30, 0, 0)
    by_scene = scene_bootstrap_interval(native, preset, scenes)
    assert by_scene[0] <= -0.3 <= by_scene[1]
    assert by_scene[1] - by_scene[0] > 1.5 * (high - low)  # the pairs are not independent
    alone = scene_bootstrap_interval(native, preset, list(range(100)))  # every pair its own scene
    assert abs((alone[1] - alone[0]) - (high - low)) < 0.06  # close to the paired interval
    assert scene_bootstrap_interval(native, native, scenes) == (0.0, 0.0)


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(80, 100)
    assert low == pytest.approx(0.7112, abs=1e-3)
    assert high == pytest.approx(0.8666, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_paired_difference_interval() -> None:
    # Many cases, many disagreements: close to the Wald interval of the paired difference,
    # (c - b) / n +- 1.96 sqrt(b + c - (b - c)^2 / n) / n = -2.0 pp +- 3.8 pp.
    low, high = paired_difference_interval(70, 52, 42, 336)
    assert low == pytest.approx(-0.058, abs=1e-3)
    assert high == pytest.approx(0.018, abs=1e-3)
    # Swapping which side passes alone mirrors the interval.
    assert paired_difference_interval(70, 42, 52, 336) == pytest.approx((-high, -low))
    # No disagreements: a difference of 0, with an honest width rather than [0, 0].
    low, high = paired_difference_interval(42, 0, 0, 458)
    assert low < 0 < high and high == pytest.approx(-low) and high < 0.01
    # A clear win stays clear of 0; the bounds never leave [-1, 1].
    low, high = paired_difference_interval(2, 4, 39, 455)
    assert 0.04 < low < 0.07 < high < 0.10
    assert paired_difference_interval(0, 10, 0, 0)[0] >= -1.0


def _draw(shape: str) -> np.ndarray:
    """A grey picture with one red blob on the left, drawn by hand."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (256, 256), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    red = (230, 30, 30)
    if shape == "triangle":
        draw.polygon([(64, 95), (94, 147), (34, 147)], fill=red)
    elif shape == "diamond":  # a triangle's fill ratio, but no triangle
        draw.polygon([(64, 94), (94, 128), (64, 162), (34, 128)], fill=red)
    elif shape == "downward":
        draw.polygon([(34, 109), (94, 109), (64, 161)], fill=red)
    elif shape == "crescent":
        draw.ellipse((34, 98, 94, 158), fill=red)
        draw.ellipse((50, 92, 110, 152), fill=(128, 128, 128))
    elif shape == "bar":  # a square's fill ratio, three times as wide as tall
        draw.rectangle((20, 115, 110, 145), fill=red)
    return np.asarray(image)


@pytest.mark.parametrize(
    ("drawn", "named", "passes"),
    [
        ("triangle", "triangle", True),
        ("diamond", "triangle", False),
        ("downward", "triangle", False),
        ("crescent", "triangle", False),
        ("crescent", "circle", False),
        ("bar", "square", False),
    ],
)
def test_kind_needs_the_shape_not_only_its_fill_ratio(drawn: str, named: str, passes: bool) -> None:
    scene = parse_caption(f"a red {named} on the left, grey background")
    assert check_image(_draw(drawn), scene).checks()["kind"] is passes


def test_edge_crossings_are_interpolated_between_samples() -> None:
    from mrflow_daemon.builtin.checker import _crossing

    offsets = np.arange(-1.0, 1.0 + 1e-9, 0.125)
    u = np.clip(0.5 - offsets / 1.25, 0.0, 1.0)  # a straight ramp, 1.25 px from 100% to 0%
    high = int(np.nonzero(u >= 0.9)[0][-1])
    low = int(np.nonzero(u <= 0.1)[0][0])
    width = _crossing(offsets, u, low - 1, 0.1) - _crossing(offsets, u, high, 0.9)
    assert width == pytest.approx(0.8 * 1.25)  # exactly, not a multiple of the 0.125 grid
