"""One real daemon (tiny FLUX model, free loopback port) shared by all client tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mrflow_daemon.engine.events import CancelToken, Event, Listener, StepPreview, ignore
from mrflow_daemon.engine.request import GenerationRequest
from mrflow_daemon.engine.result import GenerationResult
from mrflow_daemon.server.app import DaemonThread
from mrflow_daemon.server.config import load_config
from mrflow_daemon.server.models import Engine, EngineOptions, load_mrflow_engine

UNTIL_CANCELLED = "[until cancelled]"
"""A prompt with this marker stops after its first step until the job is cancelled (or 120 s).

A cancel test then cannot be outrun by a fast machine finishing the job first."""


@dataclass(frozen=True)
class LiveDaemon:
    url: str
    token: str
    token_file: Path


class CancellableEngine:
    """The real engine; a prompt marked UNTIL_CANCELLED waits at its first step for a cancel."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def family(self) -> str:
        return self.engine.family

    def unload(self) -> None:
        self.engine.unload()

    def generate(
        self,
        request: GenerationRequest,
        listener: Listener = ignore,
        cancel: CancelToken | None = None,
    ) -> GenerationResult:
        if UNTIL_CANCELLED not in request.prompt or cancel is None:
            return self.engine.generate(request, listener, cancel)
        token = cancel

        def waiting(event: Event) -> None:
            listener(event)
            if isinstance(event, StepPreview) and event.step == 1:
                assert token.wait(120.0), "the test never cancelled the job"

        return self.engine.generate(request, waiting, cancel)


def cancellable_engine(path: Path, options: EngineOptions) -> Engine:
    return CancellableEngine(load_mrflow_engine(path, options))


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
        thread = DaemonThread(config, engine_factory=cancellable_engine)
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
