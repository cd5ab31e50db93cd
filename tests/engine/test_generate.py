"""The full MrFlow path on tiny FLUX and Qwen-Image pipelines loaded from disk,
with the real Real-ESRGAN upscaler: events, previews, determinism, cancellation,
img2img, inpaint, explore + refine, and the native baseline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline, QwenImagePipeline
from mrflow_daemon.engine.events import (
    CancelToken,
    Finished,
    GenerationCancelled,
    Stage,
    StageFinished,
    StageImage,
    StageStarted,
    StepPreview,
    StepProgress,
)
from mrflow_daemon.engine.request import GenerationRequest
from mrflow_daemon.engine.sampler import FEATHER_GROW
from PIL import Image, ImageDraw

STAGED_ORDER = [
    ("start", Stage.TEXT_ENCODE),
    ("end", Stage.TEXT_ENCODE),
    ("start", Stage.STRUCTURE),
    *[("preview", i) for i in (1, 2, 3)],
    ("end", Stage.STRUCTURE),
    ("start", Stage.DECODE_LOWRES),
    ("end", Stage.DECODE_LOWRES),
    ("image", "lowres"),
    ("start", Stage.UPSCALE),
    ("end", Stage.UPSCALE),
    ("image", "upscaled"),
    ("start", Stage.ENCODE),
    ("end", Stage.ENCODE),
    ("start", Stage.REFINE),
    ("progress", 1),
    ("end", Stage.REFINE),
    ("start", Stage.DECODE),
    ("end", Stage.DECODE),
    ("finished", None),
]


def summarize(event):
    if isinstance(event, StageStarted):
        return ("start", event.stage)
    if isinstance(event, StageFinished):
        return ("end", event.stage)
    if isinstance(event, StepPreview):
        return ("preview", event.step)
    if isinstance(event, StepProgress):
        return ("progress", event.step)
    if isinstance(event, StageImage):
        return ("image", event.kind)
    assert isinstance(event, Finished)
    return ("finished", None)


def request(**fields) -> GenerationRequest:
    defaults = {"prompt": "a red lighthouse", "width": 128, "height": 128, "steps": 3, "seed": 11}
    return GenerationRequest(**{**defaults, **fields})


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def smooth_image(size=(128, 128)) -> Image.Image:
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    rgb = np.stack([x * 255 // size[0], y * 255 // size[1], (x + y) * 127 // sum(size)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


@pytest.fixture(params=["flux_engine", "qwen_engine"])
def engine(request):
    return request.getfixturevalue(request.param)


def test_full_staged_path(engine):
    events = []
    result = engine.generate(request(), events.append)
    assert [summarize(e) for e in events] == STAGED_ORDER
    previews = [e for e in events if isinstance(e, StepPreview)]
    assert [p.total for p in previews] == [3, 3, 3]
    assert all(p.image.size == (8, 8) for p in previews)  # latent resolution of the 64 px stage
    assert result.image.size == (128, 128)
    assert result.lowres is not None and result.lowres.size == (64, 64)
    assert result.upscaled is not None and result.upscaled.size == (128, 128)
    stages = {s.value for s in Stage} - {"load"}
    assert set(result.timings) == stages | {"total"}
    assert (
        result.timings["total"] >= sum(v for k, v in result.timings.items() if k != "total") * 0.99
    )
    assert events[-1].result is result
    assert result.plan.family == engine.family
    assert engine.family in ("flux-dev", "qwen-image") and engine.size_multiple == 16


def test_same_seed_same_image_other_seed_differs(flux_engine):
    first = flux_engine.generate(request(seed=5))
    again = flux_engine.generate(request(seed=5))
    other = flux_engine.generate(request(seed=6))
    assert np.array_equal(pixels(first.image), pixels(again.image))
    assert not np.array_equal(pixels(first.image), pixels(other.image))


def test_refine_noise_has_its_own_seed(flux_engine):
    """Changing only the refine sigma changes the result but not the low-res stage."""
    a = flux_engine.generate(request(refine_sigma=0.12))
    b = flux_engine.generate(request(refine_sigma=0.3))
    assert np.array_equal(pixels(a.lowres), pixels(b.lowres))
    assert not np.array_equal(pixels(a.image), pixels(b.image))


@pytest.mark.parametrize(
    ("family", "pipeline_class"), [("flux", FluxPipeline), ("qwen", QwenImagePipeline)]
)
def test_native_preset_is_the_diffusers_pipeline(
    family, pipeline_class, flux_engine, qwen_engine, tiny_flux_dir, tiny_qwen_dir
):
    """The native baseline reproduces diffusers' own pipeline bit for bit."""
    engine = flux_engine if family == "flux" else qwen_engine
    folder = tiny_flux_dir if family == "flux" else tiny_qwen_dir
    ours = engine.generate(request(preset="native", steps=4, seed=3))
    pipe = pipeline_class.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    extra = {"negative_prompt": " ", "true_cfg_scale": 4.0} if family == "qwen" else {}
    theirs = pipe(
        "a red lighthouse",
        width=128,
        height=128,
        num_inference_steps=4,
        generator=torch.Generator().manual_seed(3),
        **extra,
    ).images[0]
    assert np.array_equal(pixels(ours.image), pixels(theirs))


def test_native_against_mrflow_on_the_same_model(flux_engine):
    events = []
    native = flux_engine.generate(request(preset="native", steps=None), events.append)
    staged = flux_engine.generate(request(preset="paper", steps=None))
    assert native.image.size == staged.image.size == (128, 128)
    assert [e.stage for e in events if isinstance(e, StageStarted)] == [
        Stage.TEXT_ENCODE,
        Stage.STRUCTURE,
        Stage.DECODE,
    ]
    assert sum(isinstance(e, StepPreview) for e in events) == 50
    assert native.plan.transformer_calls == {"lowres": 0, "full": 50}
    assert staged.plan.transformer_calls == {"lowres": 12, "full": 1}
    assert native.lowres is None and staged.lowres is not None


def test_cancel_from_the_listener_mid_structure(flux_engine):
    token = CancelToken()
    seen = []

    def listener(event):
        seen.append(summarize(event))
        if isinstance(event, StepPreview) and event.step == 2:
            token.cancel()

    with pytest.raises(GenerationCancelled):
        flux_engine.generate(request(steps=6), listener, token)
    assert [s for s in seen if s[0] == "preview"] == [("preview", 1), ("preview", 2)]
    assert ("start", Stage.UPSCALE) not in seen
    # The engine is fine afterwards.
    assert flux_engine.generate(request()).image.size == (128, 128)


def test_cancelled_before_start_runs_nothing(flux_engine):
    token = CancelToken()
    token.cancel()
    seen = []
    with pytest.raises(GenerationCancelled):
        flux_engine.generate(request(), seen.append, token)
    assert seen == []


def test_img2img_starts_from_the_input(flux_engine):
    source = smooth_image()
    events = []
    result = flux_engine.generate(request(image=source, strength=0.5, steps=4), events.append)
    assert result.plan.structure_steps == 2
    assert sum(isinstance(e, StepPreview) for e in events) == 2
    txt2img = flux_engine.generate(request(steps=4))
    assert result.image.size == (128, 128)
    assert not np.array_equal(pixels(result.image), pixels(txt2img.image))

    def distance(image: Image.Image) -> float:
        return float(np.abs(pixels(image).astype(float) - pixels(source).astype(float)).mean())

    assert distance(result.image) < distance(txt2img.image)  # it kept part of the input


@pytest.mark.parametrize("preset", ["paper", "native"])
def test_inpaint_keeps_pixels_outside_the_mask(engine, preset):
    source = smooth_image()
    mask = Image.new("L", source.size, 0)
    ImageDraw.Draw(mask).rectangle((40, 48, 87, 95), fill=255)
    result = engine.generate(request(image=source, mask=mask, strength=1.0, preset=preset, steps=3))
    out, original = pixels(result.image), pixels(source)
    inside = np.asarray(mask) > 0
    reach = 2 * FEATHER_GROW
    near = np.zeros_like(inside)
    near[40 - reach : 96 + reach, 32 - reach : 88 + reach] = True  # rows (y), columns (x)
    assert np.array_equal(out[~near], original[~near])  # bit-identical beyond the feather
    assert np.abs(out[inside] - original[inside]).mean() > 5  # and regenerated inside


def test_explore_then_refine_equals_generate(flux_engine):
    events = []
    candidates = flux_engine.explore(request(seed=20), count=2, listener=events.append)
    assert [c.seed for c in candidates] == [20, 21]
    assert all(c.image.size == (64, 64) for c in candidates)
    assert not np.array_equal(pixels(candidates[0].image), pixels(candidates[1].image))
    assert sum(isinstance(e, StageImage) for e in events) == 2
    assert not any(isinstance(e, StageStarted) and e.stage is Stage.UPSCALE for e in events)
    refined = flux_engine.refine(request(seed=20), candidates[1])
    direct = flux_engine.generate(request(seed=21))
    assert refined.seed == 21
    assert np.array_equal(pixels(refined.image), pixels(direct.image))


def test_refine_refuses_a_candidate_of_another_size(flux_engine):
    from mrflow_daemon.engine.errors import InvalidRequestError

    [candidate] = flux_engine.explore(request(), count=1)
    with pytest.raises(InvalidRequestError) as info:
        flux_engine.refine(request(width=256), candidate)
    assert info.value.field == "candidate"


def test_scale_4_and_odd_sizes(flux_engine):
    result = flux_engine.generate(request(width=200, height=136, scale=4, steps=2))
    plan = result.plan
    assert (plan.width, plan.height) == (208, 144) and (plan.lowres_width, plan.lowres_height) == (
        48,
        32,
    )
    assert result.image.size == (200, 136) and result.upscaled.size == (208, 144)


def test_previews_follow_the_predicted_clean_image(flux_engine):
    """The last preview is a projection of (nearly) the final low-res latents: it should
    correlate with the decoded low-res image shrunk to the same size."""
    events = []
    result = flux_engine.generate(request(steps=6), events.append)
    last = [e for e in events if isinstance(e, StepPreview)][-1].image
    shrunk = result.lowres.resize(last.size, Image.Resampling.BOX)
    a, b = pixels(last).ravel().astype(float), pixels(shrunk).ravel().astype(float)
    assert np.corrcoef(a, b)[0, 1] > 0.3


def test_return_stages_false_drops_the_intermediates(qwen_engine):
    result = qwen_engine.generate(request(return_stages=False, steps=2))
    assert result.lowres is None and result.upscaled is None
    assert dataclasses.asdict(result.plan)["family"] == "qwen-image"


def test_thin_mask_strokes_are_regenerated(flux_engine):
    """A one-pixel stroke must not vanish when the mask is shrunk to the low-res stage."""
    source = smooth_image()
    mask = Image.new("L", source.size, 0)
    ImageDraw.Draw(mask).line((64, 0, 64, 127), fill=255, width=1)
    result = flux_engine.generate(request(image=source, mask=mask, strength=1.0, steps=2))
    column = pixels(result.image)[:, 64]
    assert np.abs(column - pixels(source)[:, 64]).mean() > 3
    assert np.array_equal(pixels(result.image)[:, :48], pixels(source)[:, :48])


def test_engine_from_an_in_memory_pipeline(tiny_qwen_dir, real_upscaler):
    from mrflow_daemon.engine.pipeline import MrFlowEngine

    pipe = QwenImagePipeline.from_pretrained(tiny_qwen_dir)
    engine = MrFlowEngine.from_pipeline(pipe, real_upscaler, model_name="in memory")
    assert engine.family == "qwen-image" and engine.model_name == "in memory"
    assert engine.generate(request(steps=2)).image.size == (128, 128)


@pytest.fixture(scope="module")
def true_cfg_flux_dir(tiny_flux_dir, tmp_path_factory):
    """The tiny FLUX.1-dev folder with a built-in-world card asking for true CFG 2.5."""
    import json
    import shutil

    folder = tmp_path_factory.mktemp("cfg") / "flux"
    shutil.copytree(tiny_flux_dir, folder)
    (folder / "builtin.json").write_text(json.dumps({"true_cfg_scale": 2.5}), encoding="utf-8")
    return folder


def test_true_cfg_card_matches_the_pipelines_true_cfg(true_cfg_flux_dir, real_upscaler):
    """A FLUX model whose card asks for true CFG is sampled as FluxPipeline samples it with
    `true_cfg_scale` and an empty negative prompt: two calls a step, bit for bit."""
    from mrflow_daemon.engine.pipeline import MrFlowEngine

    engine = MrFlowEngine.from_pretrained(true_cfg_flux_dir, device="cpu", upscaler=real_upscaler)
    ours = engine.generate(request(preset="native", steps=4, seed=3))
    assert ours.plan.true_cfg and ours.plan.guidance == 2.5
    assert ours.plan.transformer_calls == {"lowres": 0, "full": 8}
    pipe = FluxPipeline.from_pretrained(true_cfg_flux_dir)
    pipe.set_progress_bar_config(disable=True)
    common = {"width": 128, "height": 128, "num_inference_steps": 4, "guidance_scale": 3.5}
    theirs = pipe(
        "a red lighthouse",
        negative_prompt="",
        true_cfg_scale=2.5,
        generator=torch.Generator().manual_seed(3),
        **common,
    ).images[0]
    assert np.array_equal(pixels(ours.image), pixels(theirs))
    without = pipe("a red lighthouse", generator=torch.Generator().manual_seed(3), **common)
    assert not np.array_equal(pixels(ours.image), pixels(without.images[0]))
    # guidance 1 turns it off: one call a step
    plain = engine.generate(request(preset="native", steps=4, seed=3, guidance=1.0))
    assert not plain.plan.true_cfg and plain.plan.transformer_calls["full"] == 4
