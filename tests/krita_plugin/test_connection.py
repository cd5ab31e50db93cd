"""The plugin's connection thread against a real websocket server on loopback.

The server speaks the real protocol (mrflow_protocol's ServerSession) but answers jobs
itself, so these tests are about connecting, refusing, losing and regaining the daemon.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from mrflow_krita.connection import Connection, ConnectionEvent, MessageEvent, NotSent
from mrflow_protocol import (
    Cancel,
    Error,
    Generate,
    Progress,
    ProtocolError,
    ServerSession,
    Welcome,
    encode,
)
from mrflow_protocol.session import error_reply
from websockets.sync.server import ServerConnection, serve

TOKEN = "secret-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FakeDaemon:
    """A loopback websocket server: handshake by the protocol's rules, one progress per job."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[object] = []
        self._open: set[ServerConnection] = set()
        self._server = serve(self._handle, "127.0.0.1", port)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, websocket: ServerConnection) -> None:
        self._open.add(websocket)
        session = ServerSession(token=TOKEN)
        for frame in websocket:
            try:
                message = session.receive(frame)
            except ProtocolError as error:
                websocket.send(encode(error_reply(error)))
                if error.fatal:
                    websocket.close(1008, error.code)
                    return
                continue
            self.received.append(message)
            if message.type == "hello":
                websocket.send(encode(Welcome(daemon_version="fake 1")))
            elif isinstance(message, Generate) and message.prompt == "fail":
                error = Error(code="out_of_memory", message="out of memory", job_id=message.job_id)
                websocket.send(encode(error))
            elif isinstance(message, Generate):
                websocket.send(
                    encode(Progress(job_id=message.job_id, stage="structure", step=1, total=4))
                )

    def stop(self) -> None:
        """Stop like a daemon that exits: every open connection closes, not only the listener
        (websockets' sync `shutdown()` leaves open connections alone before version 17)."""
        self._server.shutdown()
        for websocket in list(self._open):
            websocket.close(1001, "daemon stopped")
        self._thread.join(5)


class Events:
    def __init__(self) -> None:
        self.queue: queue.Queue[object] = queue.Queue()

    def wait_for(self, predicate, timeout: float = 10.0) -> object:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if predicate(event):
                return event
        raise AssertionError("the expected event did not come")


def state(name: str):  # type: ignore[no-untyped-def]
    return lambda event: isinstance(event, ConnectionEvent) and event.state == name


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def connection(port: int, events: Events) -> Iterator[Connection]:
    link = Connection(f"ws://127.0.0.1:{port}", lambda: TOKEN, "pytest", events.queue.put)
    yield link
    link.stop()


def test_connects_and_forwards_messages_both_ways(
    connection: Connection, events: Events, port: int
) -> None:
    daemon = FakeDaemon(port)
    try:
        connection.start()
        connected = events.wait_for(state("connected"))
        assert isinstance(connected, ConnectionEvent) and connected.welcome is not None
        assert connected.welcome.daemon_version == "fake 1"
        connection.send(Generate(job_id="job-1", prompt="hills"))
        progress = events.wait_for(lambda e: isinstance(e, MessageEvent))
        assert isinstance(progress, MessageEvent) and progress.message.job_id == "job-1"
        assert [type(m).__name__ for m in daemon.received] == ["Hello", "Generate"]
    finally:
        daemon.stop()


def test_daemon_down_says_how_to_start_it_then_reconnects(
    connection: Connection, events: Events, port: int
) -> None:
    connection.start()
    down = events.wait_for(state("disconnected"))
    assert (
        isinstance(down, ConnectionEvent)
        and "mrflow serve" in down.detail
        and str(port) in down.detail
    )
    daemon = FakeDaemon(port)  # the daemon starts later: the plugin finds it by itself
    try:
        events.wait_for(state("connected"), timeout=15)
        assert connection.connected
    finally:
        daemon.stop()
    events.wait_for(state("disconnected"))  # and notices when it goes away again


def test_a_wrong_token_is_refused_with_the_daemons_reason(port: int, events: Events) -> None:
    daemon = FakeDaemon(port)
    link = Connection(f"ws://127.0.0.1:{port}", lambda: "wrong", "pytest", events.queue.put)
    try:
        link.start()
        refused = events.wait_for(state("refused"))
        assert isinstance(refused, ConnectionEvent) and "token" in refused.detail
    finally:
        link.stop()
        daemon.stop()


def test_requests_queued_while_down_are_reported_not_sent(
    connection: Connection, events: Events
) -> None:
    connection.send(Generate(job_id="lost-1", prompt="x"))
    connection.start()
    lost = events.wait_for(lambda e: isinstance(e, NotSent))
    assert isinstance(lost, NotSent) and lost.message.job_id == "lost-1"  # type: ignore[attr-defined]


def test_error_messages_reach_the_plugin(connection: Connection, events: Events, port: int) -> None:
    daemon = FakeDaemon(port)
    try:
        connection.start()
        events.wait_for(state("connected"))
        connection.send(Generate(job_id="oom", prompt="fail"))
        error = events.wait_for(
            lambda e: isinstance(e, MessageEvent) and isinstance(e.message, Error)
        )
        assert isinstance(error, MessageEvent) and error.message.code == "out_of_memory"  # type: ignore[attr-defined]
    finally:
        daemon.stop()


def test_an_invalid_request_is_refused_before_it_is_queued(connection: Connection) -> None:
    with pytest.raises(ProtocolError) as refused:
        connection.send(Generate(job_id="bad", prompt="x", mode="inpaint"))
    assert refused.value.field == "image"


def test_requests_queued_when_stopping_are_sent_before_closing(port: int, events: Events) -> None:
    daemon = FakeDaemon(port)
    link = Connection(f"ws://127.0.0.1:{port}", lambda: TOKEN, "pytest", events.queue.put)
    try:
        link.start()
        events.wait_for(state("connected"))
        time.sleep(0.2)  # the thread is waiting for a daemon frame
        link.send(Cancel(job_id="job-1"))  # what a closing Krita does for its running jobs
        link.stop()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            isinstance(m, Cancel) for m in daemon.received
        ):
            time.sleep(0.05)
        assert [type(m).__name__ for m in daemon.received] == ["Hello", "Cancel"]
    finally:
        link.stop()
        daemon.stop()


def test_reconnecting_when_asked_does_not_blame_the_daemon(
    connection: Connection, events: Events, port: int
) -> None:
    daemon = FakeDaemon(port)
    try:
        connection.start()
        events.wait_for(state("connected"))
        connection.reconnect_now()
        seen: list[object] = []
        events.wait_for(lambda e: seen.append(e) or state("connected")(e))
        details = [e.detail for e in seen if isinstance(e, ConnectionEvent)]
        assert details[0] == f"connecting to ws://127.0.0.1:{port}"
        assert not [d for d in details if "closed" in d or "not reachable" in d], details
    finally:
        daemon.stop()
