"""Every refusal gets the right error code, while another client's job keeps running and finishes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from mrflow_daemon.server.app import Daemon
from mrflow_protocol.codec import encode
from mrflow_protocol.messages import (
    Cancel,
    Error,
    Generate,
    GetStatus,
    Hello,
    LoadModel,
    Ping,
    Pong,
    Result,
    Status,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

StartDaemon = Callable[..., Daemon]
Connect = Callable[..., Any]

LIMITS = {
    "max_image_side": 256,
    "max_steps": 200,
    "max_prompt_length": 100,
    "max_queued_jobs": 2,
    "max_frame_bytes": 65536,
    "allowed_origins": ["http://localhost:5173"],
}


def only_error(replies: list[Any]) -> Error:
    assert len(replies) == 1 and isinstance(replies[0], Error), replies
    return replies[0]


def test_every_refusal_is_answered_while_a_concurrent_job_completes(
    start_daemon: StartDaemon, connect: Connect, gate: Any
) -> None:
    daemon = start_daemon(**LIMITS)
    busy = connect(daemon)
    busy.generate("busy-job", prompt="a lighthouse [hold]", steps=3)
    gate.wait_reached()  # the job is running, held after its first step

    # -- the handshake ------------------------------------------------------------------
    for token, words in (("wrong", "wrong token"), ("", "missing token")):
        refused = connect(daemon, token=token)
        error = refused.recv(10)
        assert isinstance(error, Error) and (error.code, error.field) == ("unauthorized", "token")
        assert words in error.message and str(daemon.config.token_path) in error.message
        with pytest.raises(ConnectionClosed) as closed:
            refused.connection.recv(10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

    silent = connect(daemon, hello=False)
    silent.send(Ping())
    error = silent.recv(10)
    assert (
        isinstance(error, Error)
        and error.code == "unauthorized"
        and "must be hello" in error.message
    )

    future = connect(daemon, hello=False)
    future.send(Hello(client="from the future", protocol=(2, 0), token=daemon.token))
    error = future.recv(10)
    assert isinstance(error, Error) and (error.code, error.field) == (
        "unsupported_version",
        "protocol",
    )

    # A browser page: refused with HTTP 403 before the websocket exists.
    with pytest.raises(InvalidStatus) as http:
        ws_connect(daemon.url, origin="https://evil.example").__enter__()
    assert http.value.response.status_code == 403
    assert b"origin_refused" in http.value.response.body
    connect(daemon, origin="http://localhost:5173")  # an allowed origin gets in (with the token)

    # -- frames and requests from an authenticated client -------------------------------
    client = connect(daemon)

    def refusal(frame: bytes | str) -> Error:
        return only_error(client.reply_to(frame))

    def generate(**fields: Any) -> bytes:
        wire = {"type": "generate", "job_id": "j", "prompt": "p", "width": 64, "height": 64}
        return msgpack.packb({**wire, **fields})

    assert refusal(b"\xc1 not msgpack").code == "malformed_frame"
    assert refusal(msgpack.packb([1, 2, 3])).code == "malformed_frame"
    assert refusal("a text frame").code == "malformed_frame"
    error = refusal(msgpack.packb({"type": "teleport", "request_id": "r7"}))
    assert (error.code, error.field, error.request_id) == ("unknown_type", "type", "r7")
    error = refusal(msgpack.packb({"type": "generate", "job_id": "j"}))
    assert (error.code, error.field, error.job_id) == ("missing_field", "prompt", "j")
    error = refusal(generate(width="big"))
    assert (error.code, error.field) == ("invalid_field", "width")
    error = refusal(generate(width=4096))
    assert (error.code, error.field) == ("too_large", "width") and "at most 256" in error.message
    error = refusal(generate(steps=500))
    assert (error.code, error.field) == ("too_large", "steps") and "at most 200" in error.message
    error = refusal(generate(prompt="x" * 101))
    assert (error.code, error.field) == ("too_large", "prompt") and "at most 100" in error.message
    error = refusal(generate(prompt="x" * 90_000))
    assert error.code == "too_large" and "at most 65536" in error.message
    error = refusal(encode(Status(state="idle")))
    assert (error.code, error.field) == ("unexpected_message", "type")
    error = refusal(encode(Hello(client="again", token=daemon.token)))
    assert (error.code, error.field) == ("unexpected_message", "type")
    error = refusal(encode(Cancel(job_id="never-submitted", request_id="c9")))
    assert (error.code, error.field, error.job_id, error.request_id) == (
        "not_found",
        "job_id",
        "never-submitted",
        "c9",
    )
    # An unknown model is refused at once, without waiting for the worker (busy with the held job).
    client.send(LoadModel(model="/no/such/model", request_id="load"))
    error = client.wait_for(lambda m: isinstance(m, Error) and m.request_id == "load", timeout=20)
    assert (error.code, error.field) == ("model_not_found", "model")
    error = refusal(generate(job_id="typo", model="/no/such/model"))
    assert (error.code, error.field, error.job_id) == ("model_not_found", "model", "typo")
    # A folder that is no model is refused at once too, so nothing is unloaded to make room.
    not_a_model = str(daemon.config.token_path.parent)
    error = refusal(generate(job_id="folder", model=not_a_model))
    assert (error.code, error.field, error.job_id) == ("model_not_found", "model", "folder")
    assert "model_index.json" in error.message
    # What the engine refuses is refused before the queue, not after the wait and a model load.
    error = refusal(generate(job_id="s3", scale=3))
    assert (error.code, error.field, error.job_id) == ("invalid_request", "scale", "s3")
    assert "2 or 4" in error.message
    error = refusal(generate(job_id="sig0", refine_sigma=0.0))
    assert (error.code, error.field) == ("invalid_request", "refine_sigma")
    error = refusal(generate(job_id="huge-seed", seed=2**64 - 1))
    assert (error.code, error.field) == ("invalid_request", "seed")

    # Per-client queue limit: two jobs wait behind the busy one, the third is refused.
    assert client.reply_to(generate(job_id="q1", steps=1)) == []
    assert client.reply_to(generate(job_id="q2", steps=1)) == []
    error = refusal(generate(job_id="q3", steps=1))
    assert (error.code, error.field, error.job_id) == ("queue_full", "job_id", "q3")
    assert "at most 2" in error.message
    error = refusal(generate(job_id="q1", steps=1))
    assert (error.code, error.field, error.job_id) == ("duplicate_job", "job_id", "q1")

    # The refusals happened while the other client's job was running, and it still finishes.
    client.send(GetStatus(request_id="now"))
    status = client.wait_for(lambda m: isinstance(m, Status) and m.request_id == "now")
    assert (status.state, status.job_id) == ("busy", "busy-job")
    gate.released.set()
    events = busy.job_events("busy-job")
    assert isinstance(events[-1], Result)
    assert [e.step for e in events if e.type == "preview"] == [1, 2, 3]
    for job_id in ("q1", "q2"):
        assert isinstance(client.job_events(job_id)[-1], Result)


def test_a_frame_far_over_the_limit_closes_that_connection_only(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    daemon = start_daemon(max_frame_bytes=65536)
    bystander, flooder = connect(daemon), connect(daemon)
    flooder.send_raw(b"\x00" * (3 * 65536))  # more than twice the limit is never read
    with pytest.raises(ConnectionClosed) as closed:
        flooder.connection.recv(10)
    assert closed.value.sent is not None or closed.value.rcvd is not None
    code = (closed.value.rcvd or closed.value.sent).code
    assert code == 1009
    bystander.send(Ping(request_id="still-here"))
    assert isinstance(bystander.wait_for(lambda m: isinstance(m, Pong)), Pong)


def test_before_its_hello_a_connection_may_send_only_small_frames(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    from mrflow_daemon.server.session import HELLO_MAX_BYTES

    daemon = start_daemon()
    stranger = connect(daemon, hello=False)
    stranger.send_raw(b"\x00" * (HELLO_MAX_BYTES + 1))  # an image before saying who it is
    with pytest.raises(ConnectionClosed) as closed:
        stranger.connection.recv(10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    # After the hello the daemon's own frame limit applies again: a 1 MiB frame is read.
    client = connect(daemon)
    padded = {"type": "ping", "request_id": "big", "padding": "x" * (1 << 20)}
    client.send_raw(msgpack.packb(padded))
    pong = client.wait_for(lambda m: isinstance(m, Pong))
    assert isinstance(pong, Pong) and pong.request_id == "big"


def test_a_model_load_that_runs_out_of_memory_says_so() -> None:
    import torch

    exc = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 24.00 GiB")
    error = Daemon._model_error("flux-dev", exc, request_id="load")
    assert (error.code, error.field, error.request_id) == ("out_of_memory", "model", "load")
    assert "flux-dev" in error.message and "out of memory" in error.message


def test_max_steps_holds_for_the_steps_a_preset_supplies(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    client = connect(start_daemon(max_steps=10))
    request = Generate(job_id="n", prompt="x", preset="native", width=64, height=64)
    error = only_error(client.reply_to(encode(request)))  # native: the model's 50 steps
    assert (error.code, error.field, error.job_id) == ("too_large", "steps", "n")
    assert "from preset 'native'" in error.message and "at most 10" in error.message
    client.generate("ok", steps=3, width=64, height=64)  # an explicit small count still runs
    assert isinstance(client.job_events("ok")[-1], Result)
