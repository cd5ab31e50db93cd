"""Loading (families, errors), LoRAs per request, out-of-memory handling, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mrflow_daemon.cli import main
from mrflow_daemon.engine import errors
from mrflow_daemon.engine.families import family_info
from mrflow_daemon.engine.pipeline import MrFlowEngine
from mrflow_daemon.engine.request import GenerationRequest, LoraSpec
from mrflow_daemon.engine.tiny_model import make_tiny_model
from PIL import Image

FAST_UPSCALER = "realesr-animevideov3"


def request(**fields) -> GenerationRequest:
    defaults = {"prompt": "a red lighthouse", "width": 128, "height": 128, "steps": 2, "seed": 4}
    return GenerationRequest(**{**defaults, **fields})


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_family_detection_reads_only_configs(tiny_flux_dir, tiny_qwen_dir, tmp_path):
    assert family_info(tiny_flux_dir).name == "flux-dev"
    assert family_info(tiny_qwen_dir).name == "qwen-image"
    schnell = make_tiny_model(tmp_path / "schnell", family="flux-schnell")
    info = family_info(schnell)
    assert info.name == "flux-schnell" and not info.uses_guidance and info.default_steps == 4


@pytest.mark.parametrize(
    ("card", "true_cfg"),
    [
        ({"true_cfg_scale": 2.0}, True),
        ({"true_cfg_scale": 1.0}, False),
        ({"true_cfg_scale": "2"}, False),
        ({"true_cfg_scale": True}, False),
        ({"true_cfg_scale": 50}, False),
        ({}, False),
    ],
)
def test_a_builtin_card_turns_on_true_cfg_only_with_a_valid_scale(
    tiny_flux_dir, tmp_path, card, true_cfg
):
    import shutil

    folder = tmp_path / "flux"
    shutil.copytree(tiny_flux_dir, folder)
    (folder / "builtin.json").write_text(json.dumps(card), encoding="utf-8")
    info = family_info(folder)
    assert info.name == "flux-dev" and info.true_cfg is true_cfg
    assert info.default_guidance == (card["true_cfg_scale"] if true_cfg else 3.5)


@pytest.mark.parametrize(
    ("card", "sigma"),
    [
        ({"refine_sigma": 0.5}, 0.5),
        ({"refine_sigma": 1}, 1.0),
        ({"refine_sigma": 0}, None),
        ({"refine_sigma": 1.5}, None),
        ({"refine_sigma": "0.5"}, None),
        ({"refine_sigma": True}, None),
        ({}, None),
    ],
)
def test_a_builtin_card_sets_the_refine_sigma_only_when_valid(tiny_flux_dir, tmp_path, card, sigma):
    import shutil

    folder = tmp_path / "flux"
    shutil.copytree(tiny_flux_dir, folder)
    (folder / "builtin.json").write_text(json.dumps(card), encoding="utf-8")
    assert family_info(folder).refine_sigma == sigma
    assert family_info(tiny_flux_dir).refine_sigma is None  # no card: each preset's own


def test_a_card_is_read_only_for_a_flux_dev_architecture(tmp_path):
    """The built-in world's card belongs to a FLUX.1-dev-shaped model; beside a schnell-shaped
    one it changes nothing (no true CFG, no refine sigma of its own)."""
    folder = make_tiny_model(tmp_path / "schnell", family="flux-schnell")
    (folder / "builtin.json").write_text(
        json.dumps({"true_cfg_scale": 2.0, "refine_sigma": 0.5}), encoding="utf-8"
    )
    info = family_info(folder)
    assert info.name == "flux-schnell" and not info.true_cfg and info.refine_sigma is None


def test_schnell_runs_without_guidance(tmp_path, real_upscaler):
    folder = make_tiny_model(tmp_path / "schnell", family="flux-schnell")
    engine = MrFlowEngine.from_pretrained(folder, device="cpu", upscaler=real_upscaler)
    result = engine.generate(request(preset="turbo", steps=None))
    assert engine.family == "flux-schnell"
    assert result.plan.guidance is None and result.plan.refine_sigmas == (0.25, 0.0)
    assert result.plan.structure_steps == 4 and result.image.size == (128, 128)


def test_missing_model_folder(tmp_path):
    with pytest.raises(errors.ModelNotFoundError) as info:
        MrFlowEngine.from_pretrained(tmp_path / "nowhere", upscaler=object())
    assert info.value.field == "model" and "nowhere" in info.value.message


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(errors.ModelNotFoundError) as info:
        MrFlowEngine.from_pretrained("someone/not-a-cached-model", upscaler=object())
    assert "someone/not-a-cached-model" in info.value.message


def test_unsupported_pipeline(tmp_path):
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text("{}")
    (tmp_path / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline"})
    )
    with pytest.raises(errors.UnsupportedModelError) as info:
        MrFlowEngine.from_pretrained(tmp_path, upscaler=object())
    assert "StableDiffusionPipeline" in info.value.message and "FluxPipeline" in info.value.message


def test_bad_requests_name_the_field(flux_engine):
    cases = [
        (request(width=0), "width"),
        (request(preset="nope"), "preset"),
        (request(image=Image.new("RGB", (128, 128)), mask=Image.new("L", (100, 128))), "mask"),
    ]
    for bad, field in cases:
        with pytest.raises(errors.InvalidRequestError) as info:
            flux_engine.generate(bad)
        assert info.value.field == field


def make_tiny_lora(tiny_flux_dir: Path, out: Path) -> Path:
    """A random (non-zero) LoRA on the tiny FLUX transformer's attention, saved like a real one."""
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = FluxTransformer2DModel.from_pretrained(tiny_flux_dir / "transformer")
    torch.manual_seed(0)
    transformer.add_adapter(
        LoraConfig(
            r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False
        )
    )
    FluxPipeline.save_lora_weights(
        out, transformer_lora_layers=get_peft_model_state_dict(transformer)
    )
    return out / "pytorch_lora_weights.safetensors"


def test_lora_is_attached_for_one_request_then_removed(flux_engine, tiny_flux_dir, tmp_path):
    lora = make_tiny_lora(tiny_flux_dir, tmp_path / "lora")
    before = flux_engine.generate(request())
    with_lora = flux_engine.generate(request(loras=[LoraSpec(lora, 1.0)]))
    half = flux_engine.generate(request(loras=[LoraSpec(lora, 0.5)]))
    after = flux_engine.generate(request())
    assert not np.array_equal(pixels(before.image), pixels(with_lora.image))
    assert not np.array_equal(pixels(with_lora.image), pixels(half.image))
    assert np.array_equal(pixels(before.image), pixels(after.image))
    assert not any(flux_engine.adapter.pipe.get_list_adapters().values())


def test_missing_lora_file_is_named(flux_engine, tmp_path):
    with pytest.raises(errors.InvalidRequestError) as info:
        flux_engine.generate(request(loras=[LoraSpec(tmp_path / "missing.safetensors")]))
    assert info.value.field == "loras"


def test_running_out_of_memory_while_loading_a_lora_is_not_blamed_on_the_file(
    flux_engine, tmp_path, monkeypatch
):
    lora = tmp_path / "style.safetensors"
    lora.write_bytes(b"weights")

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(flux_engine.adapter.pipe, "load_lora_weights", exhausted)
    with pytest.raises(torch.OutOfMemoryError):  # the worker frees memory and says so
        flux_engine.generate(request(loras=[LoraSpec(lora)]))


def test_out_of_memory_becomes_a_clear_error(flux_engine, monkeypatch):
    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(flux_engine.adapter, "velocity", exhausted)
    with pytest.raises(errors.OutOfMemoryError) as info:
        flux_engine.generate(request())
    assert "--offload" in info.value.message and "smaller size" in info.value.message
    monkeypatch.undo()
    assert flux_engine.generate(request()).image.size == (128, 128)


def test_out_of_memory_lets_go_of_the_failed_steps_tensors(flux_engine, monkeypatch):
    import weakref

    held = []

    def exhausted(*args, **kwargs):
        activations = torch.ones(1024)  # what a real step holds when the device runs out
        held.append(weakref.ref(activations))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(flux_engine.adapter, "velocity", exhausted)
    with pytest.raises(errors.OutOfMemoryError) as info:
        flux_engine.generate(request())
    assert info.value.__cause__ is not None  # the original error is still chained ...
    assert held and held[0]() is None  # ... but its frames no longer hold the tensors


def test_unload_frees_the_engine(tiny_qwen_dir, real_upscaler):
    engine = MrFlowEngine.from_pretrained(tiny_qwen_dir, device="cpu", upscaler=real_upscaler)
    engine.unload()
    with pytest.raises(RuntimeError, match="unloaded"):
        engine.generate(request())


def test_cli_make_tiny_model_and_presets(tmp_path, capsys):
    assert main(["make-tiny-model", str(tmp_path / "q"), "--family", "qwen"]) == 0
    assert family_info(tmp_path / "q").name == "qwen-image"
    assert main(["presets"]) == 0
    listing = capsys.readouterr().out
    for name in ("paper", "quality", "text", "turbo", "native"):
        assert name in listing
    assert "the built-in model's: 0.4" in listing  # read from the shipped card


def test_cli_generate_writes_stages_and_timings(tiny_flux_dir, tmp_path, capsys):
    out, stages = tmp_path / "out.png", tmp_path / "stages"
    code = main(
        [
            "generate", "--model", str(tiny_flux_dir), "--prompt", "a red lighthouse",
            "--width", "136", "--height", "96", "--steps", "3", "--seed", "9",
            "--upscaler", FAST_UPSCALER, "--out", str(out), "--save-stages", str(stages), "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    assert Image.open(out).size == (136, 96)
    names = sorted(p.name for p in stages.iterdir())
    assert names == [
        "final.png",
        "lowres.png",
        "preview_001.png",
        "preview_002.png",
        "preview_003.png",
        "upscaled.png",
    ]
    report = capsys.readouterr().out
    for stage in ("text_encode", "structure", "upscale", "refine", "total"):
        assert stage in report
    assert "seed 9" in report


def test_cli_generate_reports_bad_input(tiny_flux_dir, tmp_path, capsys):
    code = main(["generate", "--model", str(tiny_flux_dir), "--prompt", "x", "--width", "0",
                 "--upscaler", FAST_UPSCALER, "--out", str(tmp_path / "o.png")])  # fmt: skip
    assert code == 2
    assert "(width)" in capsys.readouterr().err
    missing = tmp_path / "missing"
    code = main(["generate", "--model", str(missing), "--prompt", "x"])
    assert code == 2
    error = capsys.readouterr().err
    assert "(model)" in error and f"no model at {missing}" in error
    code = main(["generate", "--model", "FLUX.1-dev", "--prompt", "x"])
    assert code == 2
    assert "mrflow models pull FLUX.1-dev" in capsys.readouterr().err


def test_cli_generate_refuses_a_bad_out_before_generating(tmp_path, capsys):
    for out, words in ((tmp_path / "result", "extension"), (tmp_path, "is a folder")):
        code = main(["generate", "--model", str(tmp_path / "never-loaded"), "--prompt", "x",
                     "--out", str(out)])  # fmt: skip
        assert code == 2
        assert words in capsys.readouterr().err  # before the model: no "(model)" error


def test_cli_generate_reads_a_transparent_input_as_white(tiny_flux_dir, tmp_path, monkeypatch):
    from mrflow_daemon.engine.pipeline import MrFlowEngine

    seen = []
    real = MrFlowEngine.generate

    def spy(self, request, *args, **kwargs):
        seen.append(request.image.getpixel((0, 0)))
        return real(self, request, *args, **kwargs)

    monkeypatch.setattr(MrFlowEngine, "generate", spy)
    source = tmp_path / "in.png"
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(source)
    code = main(["generate", "--model", str(tiny_flux_dir), "--prompt", "x", "--image",
                 str(source), "--steps", "1", "--upscaler", FAST_UPSCALER, "--quiet",
                 "--out", str(tmp_path / "o.png")])  # fmt: skip
    assert code == 0 and seen == [(255, 255, 255)]


def test_cli_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = capsys.readouterr().out
    for flag in ("--model", "--prompt", "--negative-prompt", "--width", "--height", "--preset", "--steps",
                 "--refine-steps", "--refine-sigma", "--scale", "--seed", "--image", "--mask", "--strength",
                 "--upscaler", "--out", "--save-stages", "--device", "--dtype", "--offload", "--lora"):  # fmt: skip
        assert flag in text


def test_builtin_model_is_made_once_without_trained_weights(monkeypatch, tmp_path):
    import mrflow_daemon.builtin
    from mrflow_daemon.engine.builtin import builtin_model_path

    monkeypatch.setattr(mrflow_daemon.builtin, "trained_weights", lambda: None)
    monkeypatch.setenv("MRFLOW_HOME", str(tmp_path))
    folder = builtin_model_path()
    assert folder.is_relative_to(tmp_path) and family_info(folder).name == "flux-dev"
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert (
        builtin_model_path() == folder and (folder / "model_index.json").stat().st_mtime_ns == stamp
    )


def test_builtin_model_is_the_trained_one_when_shipped(monkeypatch, tmp_path):
    import mrflow_daemon.builtin
    from mrflow_daemon.engine.builtin import builtin_model_path

    shipped = tmp_path / "weights"
    monkeypatch.setattr(mrflow_daemon.builtin, "WEIGHTS_DIR", shipped)
    monkeypatch.setenv("MRFLOW_HOME", str(tmp_path / "home"))
    shipped.mkdir()
    assert builtin_model_path() != shipped  # no model_index.json: not a model folder
    (shipped / "model_index.json").write_text("{}")
    assert builtin_model_path() == shipped


def test_device_and_dtype_choices_are_checked():
    from mrflow_daemon.engine.pipeline import pick_device, pick_dtype

    assert pick_device("cpu").type == "cpu"
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with pytest.raises(errors.InvalidRequestError) as info:
        pick_device("gpu")
    assert info.value.field == "device"
    with pytest.raises(errors.InvalidRequestError) as info:
        pick_dtype(torch.device("cpu"), "int8")
    assert info.value.field == "dtype" and "bf16" in info.value.message


def test_a_default_x4_upscaler_serves_scale_2_without_loading_again(flux_engine, monkeypatch):
    import mrflow_daemon.upscale as upscale
    from mrflow_daemon.engine.pipeline import MrFlowEngine
    from mrflow_daemon.engine.request import GenerationRequest

    class X4:
        scale = 4

    def no_second_load(*args, **kwargs):
        raise AssertionError("the default upscaler was loaded a second time")

    monkeypatch.setattr(upscale, "load_upscaler", no_second_load)
    network = X4()
    engine = MrFlowEngine(
        flux_engine.adapter, network, model_name="m", device=flux_engine.device,
        dtype=flux_engine.dtype, default_upscaler=True,
    )  # fmt: skip
    for scale in (2, 4):
        plan = engine.plan(GenerationRequest("x", 256, 256, preset="paper", scale=scale))
        assert engine._upscaler_for(plan) is network
