"""The tray against a real daemon on loopback, with Qt offscreen.

Its menu actions drive the daemon (pause, resume, unload, restart, quit), its state follows
the daemon's status, and it reconnects when the daemon goes away and comes back.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6")
from mrflow_daemon.client import Client, connect
from mrflow_daemon.server.app import Daemon, DaemonThread
from mrflow_daemon.server.config import load_config
from mrflow_daemon.tray.app import Tray
from mrflow_daemon.tray.controller import DaemonController
from mrflow_daemon.tray.state import TrayState
from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QApplication


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Run the Qt event loop until `predicate()` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        QApplication.processEvents()
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DaemonRunner:
    def __init__(self, model_dir: Path, token_file: Path, tmp_path: Path) -> None:
        self.model_dir, self.token_file, self.tmp_path = model_dir, token_file, tmp_path
        self.threads: list[DaemonThread] = []

    def start(self, port: int = 0) -> Daemon:
        overrides: dict[str, Any] = {
            "port": port,
            "model": str(self.model_dir),
            "token_file": str(self.token_file),
            "log_level": "warning",
        }
        config = load_config(self.tmp_path / "none.toml", environ={}, overrides=overrides)
        thread = DaemonThread(config)
        self.threads.append(thread)
        return thread.__enter__()

    def stop_all(self) -> None:
        for thread in self.threads:
            thread.stop()


@pytest.fixture
def daemons(tiny_flux_dir: Path, tmp_path: Path) -> Iterator[DaemonRunner]:
    runner = DaemonRunner(tiny_flux_dir, tmp_path / "token", tmp_path)
    yield runner
    runner.stop_all()


@pytest.fixture
def make_tray() -> Iterator[Callable[[DaemonController], Tray]]:
    made: list[Tray] = []

    def make(controller: DaemonController) -> Tray:
        tray = Tray(controller, open_url=lambda url: None, quit_app=lambda: None)
        made.append(tray)
        controller.start()
        return tray

    yield make
    for tray in made:
        tray.wait_for_actions()
        tray.controller.stop(stop_daemon=False)


def test_actions_drive_the_daemon_and_the_icon_follows_its_status(
    daemons: DaemonRunner, make_tray: Callable[[DaemonController], Tray]
) -> None:
    daemon = daemons.start()
    tray = make_tray(
        DaemonController(daemon.url, token_file=daemons.token_file, start_daemon=False)
    )
    seen: list[TrayState] = []
    tray.state_changed.connect(seen.append)
    wait_until(lambda: tray.state.icon == "idle", what="the tray to connect")
    assert tray.icon.toolTip().startswith("MrFlow: ready")
    probe: Client = connect(daemon.url, token_file=daemons.token_file)
    try:
        tray.actions["pause"].trigger()
        wait_until(lambda: tray.state.icon == "paused", what="paused")
        assert probe.status().state == "paused"
        assert tray.actions["pause"].text() == "Resume queue"
        tray.actions["pause"].trigger()
        wait_until(lambda: tray.state.icon == "idle", what="resumed")
        assert probe.status().state == "idle"

        # Another client's job: the tray shows it generating, with its percent, then idle.
        job = probe.generate("a red fox in the snow", width=64, height=64, steps=4)
        job.wait(timeout=120)
        # The tray's updates queued up while this thread waited; let Qt deliver them.
        wait_until(
            lambda: (
                bool(seen)
                and seen[-1].icon == "idle"
                and seen[-1].model_line != "Model: none loaded"
            ),
            what="idle after the job",
        )
        generating = [s for s in seen if s.icon == "generating"]
        assert generating, [s.headline for s in seen]
        assert any(s.percent is not None for s in generating)
        assert tray.state.status is not None and tray.state.status.loaded_model
        assert tray.actions["model"].text() == f"Model: {tray.state.status.loaded_model}"

        tray.actions["unload"].trigger()
        tray.wait_for_actions()
        wait_until(
            lambda: tray.state.status is not None and tray.state.status.loaded_model is None,
            what="the model to be unloaded",
        )
        assert probe.status().loaded_model is None
        assert tray.actions["model"].text() == "Model: none loaded"

        # Quit leaves a daemon the tray did not start running.
        tray.actions["quit"].trigger()
        tray.wait_for_quit()
        assert probe.ping() > 0
        assert not daemon.stopping  # it was not asked to shut down
    finally:
        probe.close()


def test_the_tray_reconnects_when_the_daemon_restarts(
    daemons: DaemonRunner, make_tray: Callable[[DaemonController], Tray]
) -> None:
    port = free_port()
    first = daemons.start(port)
    tray = make_tray(DaemonController(first.url, token_file=daemons.token_file, start_daemon=False))
    wait_until(lambda: tray.state.icon == "idle", what="the tray to connect")
    daemons.threads[0].stop()
    wait_until(lambda: tray.state.icon == "stopped", what="the tray to notice")
    assert tray.actions["pause"].isEnabled() is False
    daemons.start(port)
    wait_until(lambda: tray.state.icon == "idle", what="the tray to reconnect")
    assert tray.actions["pause"].isEnabled()


@pytest.mark.slow
def test_the_tray_starts_a_daemon_restarts_it_and_stops_it_on_quit(
    tiny_flux_dir: Path, tmp_path: Path, make_tray: Callable[[DaemonController], Tray]
) -> None:
    port = free_port()
    token_file = tmp_path / "token"
    controller = DaemonController(
        f"ws://127.0.0.1:{port}",
        token_file=token_file,
        start_daemon=True,
        serve_args=[
            "--port",
            str(port),
            "--model",
            str(tiny_flux_dir),
            "--token-file",
            str(token_file),
        ],
    )
    tray = make_tray(controller)
    wait_until(lambda: tray.state.icon == "idle", timeout=120, what="the daemon the tray started")
    first = controller.daemon_process
    assert first is not None and first.poll() is None and tray.state.owns_daemon

    tray.actions["restart"].trigger()
    tray.wait_for_actions()
    assert first.poll() is not None  # the old one has exited
    wait_until(lambda: tray.state.headline == "MrFlow: starting the daemon…", what="restarting")
    wait_until(lambda: tray.state.icon == "idle", timeout=120, what="the restarted daemon")
    second = controller.daemon_process
    assert second is not None and second.pid != first.pid and second.poll() is None

    tray.actions["quit"].trigger()
    assert not tray.icon.isVisible()  # gone at once, while the daemon stops in the background
    tray.wait_for_quit()
    assert second.wait(timeout=30) == 0
    assert controller.daemon_process is None


def test_open_log_folder_and_config_file(daemons: DaemonRunner, tmp_path: Path) -> None:
    opened: list[QUrl] = []
    controller = DaemonController("ws://127.0.0.1:1", start_daemon=False)
    tray = Tray(controller, open_url=opened.append, quit_app=lambda: None)
    tray.actions["logs"].trigger()
    tray.actions["config"].trigger()
    from mrflow_daemon import paths

    assert [Path(url.toLocalFile()) for url in opened] == [paths.log_dir(), paths.config_file()]
    assert paths.log_dir().is_dir()
    assert "mrflow serve --help" in paths.config_file().read_text()


def test_start_at_login_switch_writes_the_login_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mrflow_installer import autostart, platforms

    monkeypatch.setattr(platforms, "current_platform", lambda: "linux")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    tray = Tray(DaemonController("ws://127.0.0.1:1", start_daemon=False), quit_app=lambda: None)
    switch = tray.actions["autostart"]
    assert switch.isCheckable() and not switch.isChecked()
    switch.trigger()
    entry = tmp_path / "config" / "autostart" / "mrflow-daemon.desktop"
    assert switch.isChecked() and entry.is_file()
    assert "mrflow_daemon.cli tray" in entry.read_text()
    assert autostart.is_enabled()
    switch.trigger()
    assert not switch.isChecked() and not entry.exists()


def test_a_daemon_that_fails_to_start_says_where_its_output_went(tmp_path: Path) -> None:
    from mrflow_daemon.tray.controller import stderr_log

    port = free_port()
    controller = DaemonController(
        f"ws://127.0.0.1:{port}",
        token_file=tmp_path / "token",
        serve_args=["--port", str(port), "--preview-quality", "500"],  # refused at start
    )
    controller.start()
    try:
        wait_until(lambda: "exited with code" in (controller.state.error or ""), what="the exit")
    finally:
        controller.stop()
    assert str(stderr_log()) in (controller.state.error or "")
    assert "preview_quality must be 1-100" in stderr_log().read_text()


def test_the_tray_url_decides_where_a_daemon_it_starts_listens() -> None:
    from mrflow_daemon.commands.tray import _serve_args_for

    assert _serve_args_for("ws://127.0.0.1:9999") == ["--host", "127.0.0.1", "--port", "9999"]
    assert _serve_args_for(None) == []
    with pytest.raises(ValueError, match="ws://HOST:PORT"):
        _serve_args_for("http://localhost")


def test_restart_waits_for_a_daemon_it_did_not_start_to_free_the_port() -> None:
    import threading

    from mrflow_daemon.tray.controller import wait_until_port_closed

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    url = f"ws://127.0.0.1:{listener.getsockname()[1]}"
    assert not wait_until_port_closed(url, timeout=0.5)  # still listening
    threading.Timer(0.5, listener.close).start()  # the old daemon exits a moment later
    started = time.monotonic()
    assert wait_until_port_closed(url, timeout=10)
    assert 0.4 < time.monotonic() - started < 5
