"""`mrflow client ...` against a real daemon: files written, lines printed, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from mrflow_daemon.cli import main
from mrflow_daemon.commands.client import parse_lora
from mrflow_protocol import LoraRef
from PIL import Image, ImageChops, ImageStat

if TYPE_CHECKING:
    from .conftest import LiveDaemon


def client_args(daemon: LiveDaemon, *rest: str) -> list[str]:
    return ["client", "--url", daemon.url, "--token-file", str(daemon.token_file), *rest]


def test_generate_writes_every_preview_stage_image_and_the_result(
    live_daemon: LiveDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        client_args(
            live_daemon,
            "generate",
            "--prompt", "a red fox in the snow",
            "--width", "64", "--height", "48",
            "--steps", "3", "--seed", "11", "--refine-sigma", "0.18",
            "--out", str(out),
        )
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    previews = sorted(p.name for p in out.glob("preview-*"))
    assert [name.split(".")[0] for name in previews] == [
        "preview-001",
        "preview-002",
        "preview-003",
    ]
    for name in ("lowres.png", "upscaled.png", "result.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG"
    with Image.open(out / "result.png") as image:
        assert image.size == (64, 48)
    summary = json.loads((out / "result.json").read_text())
    assert summary["seed"] == 11 and summary["timings"]["total"] > 0
    assert "structure  1/3" in printed and "done:" in printed


def test_img2img_from_a_file(live_daemon: LiveDaemon, tmp_path: Path) -> None:
    source = tmp_path / "source.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(source)
    out = tmp_path / "out"
    args = ["generate", "--prompt", "x", "--width", "64", "--height", "64", "--steps", "2"]
    args += ["--seed", "1", "--no-previews"]
    assert main(client_args(live_daemon, *args, "--out", str(tmp_path / "txt2img"))) == 0
    img2img = ["--image", str(source), "--strength", "0.5", "--out", str(out)]
    assert main(client_args(live_daemon, *args, *img2img)) == 0
    assert not list(out.glob("preview-*"))

    def distance(folder: Path) -> float:
        result = Image.open(folder / "result.png").convert("RGB")
        difference = ImageChops.difference(result, Image.open(source).convert("RGB"))
        return sum(ImageStat.Stat(difference).mean)

    assert distance(out) < distance(tmp_path / "txt2img")  # --image reached the daemon


def test_status_models_and_cancel(
    live_daemon: LiveDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(client_args(live_daemon, "status")) == 0
    assert "queue" in capsys.readouterr().out
    assert main(client_args(live_daemon, "models")) == 0
    listing = capsys.readouterr().out
    assert "presets:" in listing and "paper" in listing
    builtin = next(line for line in listing.splitlines() if line.strip().startswith("builtin"))
    assert "refines from sigma 0.4 in the staged presets" in builtin  # the shipped card's
    assert main(client_args(live_daemon, "cancel", "--all")) == 0


def test_a_refused_request_exits_1_and_names_the_field(
    live_daemon: LiveDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["generate", "--prompt", "x", "--width", "100000", "--out", str(tmp_path)]
    assert main(client_args(live_daemon, *args)) == 1
    assert "width" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--image", "--mask"])
def test_an_unreadable_input_image_exits_1_and_names_it(
    live_daemon: LiveDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("not a picture")
    good = tmp_path / "in.png"
    Image.new("RGB", (64, 64)).save(good)
    inputs = ["--image", str(good), flag, str(not_an_image)] if flag == "--mask" else []
    inputs = inputs or ["--image", str(tmp_path / "missing.png")]
    args = ["generate", "--prompt", "x", *inputs, "--out", str(tmp_path / "out")]
    assert main(client_args(live_daemon, *args)) == 1
    err = capsys.readouterr().err
    assert f"({flag[2:]})" in err and "cannot read" in err


def test_an_out_that_is_a_file_exits_1_with_a_message(
    live_daemon: LiveDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file, not a folder")
    args = ["generate", "--prompt", "x", "--out", str(blocker)]
    assert main(client_args(live_daemon, *args)) == 1
    assert f"cannot use --out {blocker}" in capsys.readouterr().err


def test_no_daemon_exits_3_with_advice(
    closed_port_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_text("t\n")
    code = main(["client", "--url", closed_port_url, "--token-file", str(token), "status"])
    assert code == 3
    assert "start it with `mrflow serve`" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "lora"),
    [
        ("impasto", LoraRef(name="impasto")),
        ("impasto:0.8", LoraRef(name="impasto", weight=0.8)),
        ("./style.safetensors", LoraRef(path="./style.safetensors")),
        ("/loras/a.safetensors:-0.5", LoraRef(path="/loras/a.safetensors", weight=-0.5)),
        (r"C:\loras\b.safetensors", LoraRef(path=r"C:\loras\b.safetensors")),
    ],
)
def test_lora_option(text: str, lora: LoraRef) -> None:
    assert parse_lora(text) == lora
