"""Plan arithmetic: sizes, step counts, sigma lists, seeds and validation (no model needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from hypothesis import given, settings
from hypothesis import strategies as st
from mrflow_daemon.engine.errors import InvalidRequestError
from mrflow_daemon.engine.families import flux_dev_info, flux_schnell_info, qwen_image_info
from mrflow_daemon.engine.plan import (
    Plan,
    derive_refine_seed,
    refine_scheduler,
    resolve_plan,
    round_to_multiple,
    structure_scheduler,
)
from mrflow_daemon.engine.request import GenerationRequest, Mode
from mrflow_daemon.engine.sampler import add_noise
from mrflow_daemon.engine.tiny_model import (
    FLUX_DEV_SCHEDULER,
    FLUX_SCHNELL_SCHEDULER,
    QWEN_IMAGE_SCHEDULER,
)
from PIL import Image

# The real models' scheduler configs (the tiny models carry the same ones).
FLUX_DEV = flux_dev_info(FLUX_DEV_SCHEDULER)
FLUX_SCHNELL = flux_schnell_info(FLUX_SCHNELL_SCHEDULER)
QWEN_IMAGE = qwen_image_info(QWEN_IMAGE_SCHEDULER)


def plan_for(family=FLUX_DEV, max_side: int = 2048, **fields) -> Plan:
    fields.setdefault("seed", 7)
    return resolve_plan(GenerationRequest("a prompt", **fields), family, max_side)


def test_reference_setting_1024():
    plan = plan_for(width=1024, height=1024)
    assert (plan.width, plan.height) == (1024, 1024)
    assert (plan.lowres_width, plan.lowres_height) == (512, 512)
    assert plan.staged and plan.scale == 2
    assert plan.structure_steps == 12 and len(plan.sigmas) == 13
    assert plan.refine_sigmas == (0.12, 0.0)
    assert plan.transformer_calls == {"lowres": 12, "full": 1}


@pytest.mark.parametrize(
    ("size", "scale", "target", "lowres"),
    [
        ((1000, 600), 2, (1008, 608), (512, 304)),
        ((1366, 768), 2, (1360, 768), (688, 384)),
        ((768, 1344), 2, (768, 1344), (384, 672)),
        ((2048, 1152), 4, (2048, 1152), (512, 288)),
        ((17, 9), 2, (16, 16), (16, 16)),
        ((100, 2000), 4, (96, 2000 // 16 * 16), (32, 496)),
    ],
)
def test_sizes_round_to_the_multiple(size, scale, target, lowres):
    plan = plan_for(width=size[0], height=size[1], scale=scale)
    assert (plan.width, plan.height) == target
    assert (plan.lowres_width, plan.lowres_height) == lowres
    assert (plan.output_width, plan.output_height) == size


@given(
    width=st.integers(1, 2048),
    height=st.integers(1, 2048),
    scale=st.sampled_from([2, 4]),
)
@settings(max_examples=200, deadline=None)
def test_size_rounding_properties(width, height, scale):
    plan = plan_for(width=width, height=height, scale=scale, steps=2)
    for value, asked in ((plan.width, width), (plan.height, height)):
        assert value % 16 == 0 and 16 <= value <= 2048
        assert abs(value - asked) <= 8 or asked < 16
    for low, full in ((plan.lowres_width, plan.width), (plan.lowres_height, plan.height)):
        assert low % 16 == 0
        assert abs(low - full / scale) <= 8 or full / scale < 16


def test_max_side_is_allowed_and_beyond_is_named():
    assert plan_for(width=2048, height=2048).width == 2048
    with pytest.raises(InvalidRequestError) as info:
        plan_for(width=2049, height=512)
    assert info.value.field == "width" and "2048" in info.value.message
    with pytest.raises(InvalidRequestError) as info:
        plan_for(width=512, height=4000, max_side=1024)
    assert info.value.field == "height"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"width": 0}, "width"),
        ({"height": -5}, "height"),
        ({"width": 512.5}, "width"),
        ({"preset": "fastest"}, "preset"),
        ({"steps": 0}, "steps"),
        ({"refine_steps": 0}, "refine_steps"),
        ({"refine_sigma": 0.0}, "refine_sigma"),
        ({"refine_sigma": 1.5}, "refine_sigma"),
        ({"scale": 3}, "scale"),
        ({"seed": -1}, "seed"),
        ({"guidance": -1.0}, "guidance"),
    ],
)
def test_bad_fields_are_named(fields, field):
    with pytest.raises(InvalidRequestError) as info:
        plan_for(**fields)
    assert info.value.field == field
    assert info.value.code == "invalid_request"


def test_unknown_preset_lists_the_allowed_ones():
    with pytest.raises(InvalidRequestError) as info:
        plan_for(preset="fastest")
    assert "paper" in info.value.message and "native" in info.value.message


def test_mask_of_another_size_is_refused():
    image = Image.new("RGB", (128, 128))
    with pytest.raises(InvalidRequestError) as info:
        plan_for(width=128, height=128, image=image, mask=Image.new("L", (64, 128)))
    assert info.value.field == "mask" and "64x128" in info.value.message
    with pytest.raises(InvalidRequestError) as info:
        plan_for(mask=Image.new("L", (64, 64)))
    assert info.value.field == "mask"


def test_strength_must_be_positive_and_always_leaves_a_step():
    image = Image.new("RGB", (128, 128))
    with pytest.raises(InvalidRequestError) as info:
        plan_for(image=image, strength=0.0)
    assert info.value.field == "strength"
    # diffusers' rule floors the start index, so any positive strength runs at least one step.
    tiny = plan_for(image=image, strength=0.05, steps=4)
    assert tiny.structure_steps == 1 and tiny.start_index == 3


def test_stage1_sigmas_are_the_pipelines_schedule_at_lowres():
    plan = plan_for(width=1024, height=1024)
    tokens = (512 // 16) * (512 // 16)
    mu = calculate_shift(tokens, 256, 4096, 0.5, 1.15)
    assert plan.mu == pytest.approx(mu)
    # The FLUX pipeline's own call at 512x512.
    reference = FlowMatchEulerDiscreteScheduler(**FLUX_DEV.scheduler_config)
    reference.set_timesteps(sigmas=np.linspace(1.0, 1 / 12, 12), mu=mu)
    assert plan.sigmas == tuple(reference.sigmas.tolist())
    # Spot check against the closed form: exp(mu) / (exp(mu) + 1/s - 1).
    s = 1 - 1 / 12
    assert plan.sigmas[1] == pytest.approx(math.exp(mu) / (math.exp(mu) + 1 / s - 1), rel=1e-6)
    assert plan.sigmas[0] == 1.0 and plan.sigmas[-1] == 0.0
    assert all(a > b for a, b in zip(plan.sigmas, plan.sigmas[1:], strict=False))


def test_mu_uses_the_lowres_token_count_not_the_target():
    staged = plan_for(width=1024, height=1024)
    native = plan_for(width=1024, height=1024, preset="native")
    assert native.mu == pytest.approx(calculate_shift(64 * 64, 256, 4096, 0.5, 1.15))
    assert staged.mu < native.mu


def test_qwen_schedule_has_its_terminal_stretch():
    plan = plan_for(QWEN_IMAGE, width=1024, height=1024)
    assert plan.sigmas[-2] == pytest.approx(0.02, abs=1e-6)  # shift_terminal
    assert plan.true_cfg and plan.guidance == 4.0
    assert plan.transformer_calls == {"lowres": 24, "full": 2}


def test_native_uses_the_family_default_steps_at_full_size():
    dev = plan_for(width=1024, height=768, preset="native")
    assert not dev.staged and dev.structure_steps == 50
    assert (dev.lowres_width, dev.lowres_height) == (1024, 768) and dev.refine_sigmas == ()
    assert dev.transformer_calls == {"lowres": 0, "full": 50}
    schnell = plan_for(FLUX_SCHNELL, preset="native")
    assert schnell.structure_steps == 4 and schnell.guidance is None
    turbo = plan_for(FLUX_SCHNELL, preset="turbo")
    assert turbo.structure_steps == 4 and turbo.refine_sigmas == (0.25, 0.0)


def test_overrides_win_over_the_preset():
    plan = plan_for(preset="text", steps=7, refine_steps=2, refine_sigma=0.2, scale=4, guidance=5.0)
    assert plan.structure_steps == 7 and plan.refine_sigmas == (0.2, 0.1, 0.0)
    assert plan.scale == 4 and plan.guidance == 5.0


def test_a_model_cards_refine_sigma_replaces_every_presets_own():
    from dataclasses import replace

    carded = replace(FLUX_DEV, refine_sigma=0.5)
    for preset in ("paper", "quality", "text"):
        plan = plan_for(carded, preset=preset)
        assert plan.refine_sigma == 0.5 and plan.refine_sigmas == (0.5, 0.0)
        assert any("sigma 0.5 (its model card)" in note for note in plan.notes)
    assert plan_for(carded, refine_sigma=0.2).refine_sigmas == (0.2, 0.0)  # the request wins
    assert not plan_for(carded, refine_sigma=0.2).notes
    assert plan_for(carded, preset="native").refine_sigmas == ()
    assert plan_for(FLUX_DEV).refine_sigmas == (0.12, 0.0)  # no card: the paper's


def test_a_touch_up_is_never_refined_from_more_noise_than_its_strength_starts_at():
    from dataclasses import replace

    image = Image.new("RGB", (256, 256))
    carded = replace(FLUX_DEV, refine_sigma=0.4)
    touch = plan_for(carded, width=256, height=256, image=image, strength=0.2)
    assert touch.sigmas[0] < 0.4
    assert touch.refine_sigmas == (touch.sigmas[0], 0.0)  # lowered to stage 1's start
    assert any("the refine step starts there too, not at 0.4" in note for note in touch.notes)
    assert not any("(its model card)" in note for note in touch.notes)  # one note, not two
    strong = plan_for(carded, width=256, height=256, image=image, strength=0.9)
    assert strong.sigmas[0] > 0.4 and strong.refine_sigmas == (0.4, 0.0)
    asked = plan_for(carded, width=256, height=256, image=image, strength=0.2, refine_sigma=0.4)
    assert asked.refine_sigmas == (0.4, 0.0)  # a sigma the request names is kept
    tiny = plan_for(width=512, height=512, image=image.resize((512, 512)), strength=0.04, steps=30)
    assert tiny.refine_sigma == tiny.sigmas[0] < 0.12  # the preset's own too


def test_img2img_truncates_the_schedule_by_strength():
    image = Image.new("RGB", (512, 512))
    full = plan_for(width=512, height=512)
    half = plan_for(width=512, height=512, image=image, strength=0.5)
    assert half.mode is Mode.IMG2IMG
    assert half.start_index == 6 and half.structure_steps == 6
    assert half.sigmas == full.sigmas[6:]
    inpaint = plan_for(
        width=512, height=512, image=image, mask=Image.new("L", (512, 512)), strength=1.0
    )
    assert inpaint.mode is Mode.INPAINT and inpaint.sigmas == full.sigmas


@pytest.mark.parametrize("family", [FLUX_DEV, QWEN_IMAGE, FLUX_SCHNELL])
@pytest.mark.parametrize(("sigma", "steps"), [(0.12, 1), (0.18, 1), (0.25, 3)])
def test_refine_schedule_starts_exactly_at_sigma_and_ends_at_zero(family, sigma, steps):
    plan = plan_for(family, refine_sigma=sigma, refine_steps=steps)
    assert plan.refine_sigmas[0] == sigma and plan.refine_sigmas[-1] == 0.0
    assert len(plan.refine_sigmas) == steps + 1
    assert np.allclose(np.diff(plan.refine_sigmas), -sigma / steps)  # linear: no shift
    # The scheduler the sampler runs has exactly these sigmas, although the model's
    # config asks for dynamic shifting (FLUX dev) or a terminal stretch (Qwen-Image).
    scheduler = refine_scheduler(family.scheduler_config, plan.refine_sigmas)
    assert torch.equal(scheduler.sigmas, torch.tensor(plan.refine_sigmas, dtype=torch.float32))


def test_sampler_scheduler_reproduces_the_plan():
    image = Image.new("RGB", (256, 256))
    plan = plan_for(QWEN_IMAGE, width=256, height=256, image=image, strength=0.7)
    scheduler = structure_scheduler(
        QWEN_IMAGE.scheduler_config, plan.base_sigmas, plan.mu, plan.start_index
    )
    assert tuple(scheduler.sigmas[plan.start_index :].tolist()) == plan.sigmas


def test_noise_formula_at_sigma_start():
    generator = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(2, 1, 16, 64, generator=generator)
    plan = plan_for(refine_sigma=0.12)
    s = plan.refine_sigmas[0]
    noised = add_noise(clean, noise, s)
    assert torch.allclose(noised, (1 - 0.12) * clean + 0.12 * noise, atol=1e-6)
    # Agrees with diffusers' own forward process at the first refine timestep.
    scheduler = refine_scheduler(FLUX_DEV.scheduler_config, plan.refine_sigmas)
    expected = scheduler.scale_noise(clean, scheduler.timesteps[:1], noise)
    assert torch.allclose(noised, expected, atol=1e-6)


def test_seeds_are_reproducible_and_refine_noise_is_separate():
    a, b = plan_for(seed=42), plan_for(seed=42)
    assert a.seed == b.seed == 42 and a.refine_seed == b.refine_seed == derive_refine_seed(42)
    assert a.refine_seed != a.seed and plan_for(seed=43).refine_seed != a.refine_seed
    random_plan = resolve_plan(GenerationRequest("x"), FLUX_DEV)
    assert 0 <= random_plan.seed < 2**63


def test_guidance_styles():
    assert plan_for().guidance == 3.5 and not plan_for().true_cfg
    schnell = plan_for(FLUX_SCHNELL, guidance=2.0)
    assert schnell.guidance is None and any("no guidance" in n for n in schnell.notes)
    assert not plan_for(QWEN_IMAGE, guidance=1.0).true_cfg  # CFG 1 is the plain conditional


def test_describe_prints_the_numbers():
    text = plan_for(width=1000, height=600).describe()
    assert "1008x608" in text and "512x304" in text and "0.1200" in text and "1000x600" in text
    assert "transformer calls: 12 low-res, 1 full-res" in text


def test_round_to_multiple():
    assert [round_to_multiple(v, 16) for v in (1, 8, 23, 24, 1000)] == [16, 16, 16, 32, 1008]


def test_native_says_which_staged_overrides_it_ignores():
    native = plan_for(preset="native", scale=4, refine_sigma=0.2)
    assert native.scale == 1 and native.refine_sigmas == ()
    assert any("scale, refine_sigma ignored" in note for note in native.notes)
    assert not plan_for(preset="native").notes
