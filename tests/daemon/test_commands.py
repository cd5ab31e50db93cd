"""`mrflow serve` as a real process (signals, token, log), `mrflow demo` and `mrflow bench load`."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mrflow_daemon.cli import main
from PIL import Image


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_listening(process: subprocess.Popen[str], port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("mrflow serve did not start listening")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_creates_a_private_token_logs_and_exits_0_on_a_signal(
    tmp_path: Path, daemon_model_dir: Path, signum: int
) -> None:
    from mrflow_daemon.client import connect

    home = tmp_path / "home"
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mrflow_daemon.cli",
            "serve",
            "--port",
            str(port),
            "--model",
            str(daemon_model_dir),
        ],
        env={**os.environ, "MRFLOW_HOME": str(home), "MRFLOW_LOG_LEVEL": "info"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_listening(process, port)
        token_file = home / "config" / "token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        with connect(f"ws://127.0.0.1:{port}", token_file=token_file) as client:
            assert client.welcome.device == "cpu" or client.welcome.device.startswith("cuda:0 ")
        process.send_signal(signum)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = (home / "logs" / "daemon.log").read_text()
    assert "listening on ws://127.0.0.1" in log and "shutting down" in log and "stopped" in log


def test_a_second_stop_signal_while_stopping_exits_at_once() -> None:
    from mrflow_daemon.server.app import stop_signal_handler

    class Stub:
        stopping = False
        requests = 0

        def request_shutdown(self) -> None:
            self.requests += 1
            self.stopping = True

    daemon, exits = Stub(), []
    handle = stop_signal_handler(daemon, exit_now=exits.append)  # type: ignore[arg-type]
    handle()
    assert (daemon.requests, exits) == (1, [])  # the first starts the clean stop
    handle()
    assert (daemon.requests, exits) == (1, [130])  # the second does not wait for it


def test_serve_exits_1_with_a_clear_message_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        finished = subprocess.run(
            [sys.executable, "-m", "mrflow_daemon.cli", "serve", "--port", str(port)],
            env={**os.environ, "MRFLOW_HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert finished.returncode == 1
    assert "is another daemon running? choose --port" in finished.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_serve_exits_1_naming_the_device_when_cuda_is_configured_but_missing(
    tmp_path: Path,
) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "mrflow_daemon.cli", "serve", "--port", "0", "--device", "cuda"],
        env={**os.environ, "MRFLOW_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 1
    assert "cannot start: device: CUDA is not available on this machine" in finished.stderr


def test_a_daemon_that_cannot_listen_leaves_no_worker_thread(
    tmp_path: Path, daemon_model_dir: Path
) -> None:
    import threading

    from mrflow_daemon.server.app import DaemonThread
    from mrflow_daemon.server.config import load_config

    before = set(threading.enumerate())  # other tests' daemons may be running
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = load_config(
            tmp_path / "none.toml",
            environ={},
            overrides={
                "port": taken.getsockname()[1],
                "model": str(daemon_model_dir),
                "token_file": str(tmp_path / "token"),
                "preload": True,
            },
        )
        with pytest.raises(OSError):
            DaemonThread(config).__enter__()

    def new_workers() -> list[threading.Thread]:
        return [t for t in set(threading.enumerate()) - before if t.name == "mrflow-gpu-worker"]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and new_workers():
        time.sleep(0.05)
    assert new_workers() == []


def test_serve_refuses_a_network_address_without_allow_remote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_writes_every_preview_both_stage_images_and_the_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mrflow_daemon import paths

    # The demo's daemon is private: the user's daemon.toml (here one `mrflow serve` would refuse)
    # does not apply to it.
    paths.config_file().parent.mkdir(parents=True, exist_ok=True)
    paths.config_file().write_text('host = "0.0.0.0"\nport = "not a port"\n', encoding="utf-8")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--width", "64", "--height", "64", "--steps", "3"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "lowres.png",
        "preview_01.jpg",
        "preview_02.jpg",
        "preview_03.jpg",
        "result.png",
        "upscaled.png",
    ]
    assert Image.open(out / "result.png").size == (64, 64)
    assert Image.open(out / "lowres.png").size == (32, 32)
    printed = capsys.readouterr().out
    assert "GAN upscale" in printed and "first preview (client)" in printed


def test_demo_says_which_caption_checks_pass_and_which_fail() -> None:
    import io
    import random

    from mrflow_daemon.builtin.world import parse_caption, render_image, sample_placements
    from mrflow_daemon.commands.demo import _check_caption

    def png(image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()

    caption = "a red circle on the left, grey background"
    scene = parse_caption(caption)
    drawn = render_image(scene, sample_placements(scene, random.Random(0)))
    assert _check_caption(png(drawn), caption).startswith("all checks pass")
    blank = _check_caption(png(Image.new("RGB", (256, 256), (128, 128, 128))), caption)
    assert blank.startswith("background pass; count, colour, kind, position fail")
    assert "not checked" in _check_caption(png(drawn), "a castle at dawn")


@pytest.mark.slow
def test_bench_load_runs_clients_without_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["bench", "load", "--clients", "2", "--seconds", "2", "--size", "64", "--steps", "2"]
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, report
    assert report["errors"] == 0 and report["jobs_completed"] >= 2
    assert report["daemon_exit_code"] == 0 and report["rss_after_run_mib"] > 0
