"""One real daemon (tiny FLUX model, free loopback port) shared by all client tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mrflow_daemon.server.app import DaemonThread
from mrflow_daemon.server.config import load_config


@dataclass(frozen=True)
class LiveDaemon:
    url: str
    token: str
    token_file: Path


@pytest.fixture(scope="session")
def live_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDaemon]:
    from mrflow_daemon.engine.tiny_model import make_tiny_model

    home = tmp_path_factory.mktemp("client_daemon")
    # Session fixtures start before the per-test MRFLOW_HOME: give the start its own home.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MRFLOW_HOME", str(home / "mrflow_home"))
        model = make_tiny_model(home / "tiny-flux")
        config = load_config(
            home / "no-config.toml",
            environ={},
            overrides={
                "port": 0,
                "model": str(model),
                "token_file": str(home / "token"),
                "log_level": "warning",
            },
        )
        thread = DaemonThread(config)
        daemon = thread.__enter__()
    try:
        yield LiveDaemon(daemon.url, daemon.token, home / "token")
    finally:
        thread.stop()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"ws://127.0.0.1:{port}"
