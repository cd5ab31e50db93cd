"""The sans-I/O sessions: handshake, token, message direction, job bookkeeping."""

from __future__ import annotations

import msgpack
import pytest
from mrflow_protocol import (
    ClientSession,
    Error,
    ErrorCode,
    Generate,
    Hello,
    Limits,
    Ping,
    ProtocolError,
    Queued,
    Result,
    ServerSession,
    Unknown,
    Welcome,
    decode,
    encode,
    new_job_id,
    origin_allowed,
)
from mrflow_protocol.examples import IMAGE


def refused(session: ServerSession, frame: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        session.receive(frame)
    return info.value


def hello(token: str = "secret") -> bytes:
    return encode(Hello(client="test", token=token))


class TestServerSession:
    def test_good_hello_authenticates(self) -> None:
        session = ServerSession(token="secret")
        assert isinstance(session.receive(hello()), Hello)
        assert session.authenticated and session.client_name == "test"
        assert session.receive(encode(Ping(request_id="r"))) == Ping(request_id="r")

    @pytest.mark.parametrize(("token", "reason"), [("nope", "a wrong token"), ("", "no token")])
    def test_bad_token_is_fatal(self, token: str, reason: str) -> None:
        session = ServerSession(token="secret")
        error = refused(session, hello(token))
        assert (error.code, error.field, error.fatal) == (ErrorCode.UNAUTHORIZED, "token", True)
        assert reason in error.message
        assert not session.authenticated

    def test_request_before_hello_is_refused_and_fatal(self) -> None:
        error = refused(ServerSession(token="secret"), encode(Ping()))
        assert (error.code, error.fatal) == (ErrorCode.UNAUTHORIZED, True)

    def test_garbage_before_hello_is_fatal_but_after_it_is_not(self) -> None:
        session = ServerSession(token="secret")
        error = refused(session, b"\xc1garbage")
        assert (error.code, error.fatal) == (ErrorCode.UNAUTHORIZED, True)  # as the docs say
        assert "valid hello" in error.message
        session = ServerSession(token="secret")
        session.receive(hello())
        error = refused(session, b"\xc1garbage")
        assert (error.code, error.fatal) == (ErrorCode.MALFORMED_FRAME, False)

    def test_second_hello_and_daemon_messages_are_unexpected(self) -> None:
        session = ServerSession(token="secret")
        session.receive(hello())
        assert refused(session, hello()).code == ErrorCode.UNEXPECTED_MESSAGE
        queued = encode(Queued(job_id="j", position=0))
        assert refused(session, queued).code == ErrorCode.UNEXPECTED_MESSAGE

    def test_unknown_type_after_hello(self) -> None:
        session = ServerSession(token="secret")
        session.receive(hello())
        error = refused(session, msgpack.packb({"type": "teleport", "job_id": "j9"}))
        assert (error.code, error.job_id, error.fatal) == (ErrorCode.UNKNOWN_TYPE, "j9", False)

    def test_limits_apply(self) -> None:
        session = ServerSession(token="secret", limits=Limits(max_image_side=256))
        session.receive(hello())
        error = refused(session, encode(Generate(job_id="big", prompt="", width=512)))
        assert (error.code, error.field, error.job_id) == (ErrorCode.TOO_LARGE, "width", "big")

    def test_empty_daemon_token_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError):
            ServerSession(token="")


class TestClientSession:
    def welcome(self, **fields: object) -> bytes:
        return encode(Welcome(daemon_version="0.1.0", **fields))  # type: ignore[arg-type]

    def test_handshake(self) -> None:
        session = ClientSession(client_name="cli", token="t")
        sent = decode(session.hello())
        assert sent == Hello(client="cli", token="t")
        message = session.receive(self.welcome(limits=Limits(max_steps=9)))
        assert isinstance(message, Welcome)
        assert session.limits.max_steps == 9

    def test_error_before_welcome_is_fatal(self) -> None:
        session = ClientSession(client_name="cli", token="t")
        frame = encode(Error(code="unauthorized", message="wrong token", field="token"))
        with pytest.raises(ProtocolError) as info:
            session.receive(frame)
        assert (info.value.code, info.value.fatal) == ("unauthorized", True)

    def test_other_major_daemon_is_refused(self) -> None:
        session = ClientSession(client_name="cli", token="t")
        with pytest.raises(ProtocolError) as info:
            session.receive(self.welcome(protocol=(2, 0)))
        assert info.value.code == ErrorCode.UNSUPPORTED_VERSION

    def test_tracks_open_jobs_and_checks_limits_locally(self) -> None:
        session = ClientSession(client_name="cli", token="t")
        session.receive(self.welcome(limits=Limits(max_image_side=512)))
        message, frame = session.generate(prompt="a", width=512, height=512)
        assert decode(frame) == message and message.job_id in session.open_jobs
        with pytest.raises(ProtocolError) as info:
            session.generate(prompt="a", width=1024)
        assert info.value.code == ErrorCode.TOO_LARGE
        result = Result(job_id=message.job_id, image=IMAGE, width=64, height=48, seed=1)
        session.receive(encode(result))
        assert not session.open_jobs

    def test_an_error_about_a_reused_id_or_unknown_request_leaves_the_job_open(self) -> None:
        session = ClientSession(client_name="cli", token="t")
        session.receive(self.welcome())
        message, _ = session.generate(prompt="a")
        for code in ("duplicate_job", "unknown_type"):
            session.receive(encode(Error(code=code, message="x", job_id=message.job_id)))
            assert message.job_id in session.open_jobs  # that job goes on
        session.receive(encode(Error(code="cancelled", message="x", job_id=message.job_id)))
        assert not session.open_jobs

    def test_a_request_over_the_frame_limit_is_refused_before_it_is_sent(self) -> None:
        session = ClientSession(client_name="cli", token="t")
        session.receive(self.welcome(limits=Limits(max_frame_bytes=len(IMAGE) + 64)))
        with pytest.raises(ProtocolError) as info:
            session.generate(prompt="x" * 100, mode="img2img", image=IMAGE)
        assert (info.value.code, info.value.field) == (ErrorCode.TOO_LARGE, "image")
        assert "max_frame_bytes" in info.value.message and not session.open_jobs

    def test_unknown_daemon_messages_are_returned_not_raised(self) -> None:
        session = ClientSession(client_name="cli", token="t")
        session.receive(self.welcome())
        assert isinstance(session.receive(msgpack.packb({"type": "sparkle"})), Unknown)


def test_job_ids_are_unique_and_valid() -> None:
    ids = {new_job_id() for _ in range(100)}
    assert len(ids) == 100
    for job_id in ids:
        decode(encode(Generate(job_id=job_id, prompt="")))


@pytest.mark.parametrize(
    ("origin", "allowed", "ok"),
    [
        (None, (), True),  # native clients send no Origin
        ("https://evil.example", (), False),
        ("http://localhost:3000", ("http://localhost:3000",), True),
        ("http://localhost:3001", ("http://localhost:3000",), False),
        ("http://localhost:3000/", ("http://localhost:3000",), True),
        ("https://anything", ("*",), True),
    ],
)
def test_origin_policy(origin: str | None, allowed: tuple[str, ...], ok: bool) -> None:
    assert origin_allowed(origin, allowed) is ok
