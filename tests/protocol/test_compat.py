"""A newer peer (minor version) never breaks an older one; a different major is refused."""

from __future__ import annotations

import msgpack
import pytest
from mrflow_protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    Generate,
    Hello,
    ProtocolError,
    ServerSession,
    Status,
    Unknown,
    Welcome,
    decode,
    encode,
    error_reply,
    is_compatible,
    unknown_type_error,
)
from mrflow_protocol.examples import examples


def test_unknown_type_decodes_to_unknown_with_its_fields() -> None:
    message = decode(msgpack.packb({"type": "explore", "job_id": "j1", "count": 4}))
    assert message == Unknown("explore", {"job_id": "j1", "count": 4})
    assert isinstance(message, Unknown)
    assert message.job_id == "j1"


def test_unknown_type_is_answered_with_an_unknown_type_error() -> None:
    message = decode(msgpack.packb({"type": "explore", "request_id": "r1"}))
    assert isinstance(message, Unknown)
    reply = error_reply(unknown_type_error(message))
    assert (reply.code, reply.field, reply.request_id) == (ErrorCode.UNKNOWN_TYPE, "type", "r1")
    assert "'explore'" in reply.message
    assert decode(encode(reply)) == reply


def test_unreadable_ids_on_unknown_messages_are_dropped() -> None:
    message = decode(msgpack.packb({"type": "explore", "job_id": ["not", "an", "id"]}))
    assert isinstance(message, Unknown)
    assert message.job_id is None


@pytest.mark.parametrize("message", examples(), ids=lambda m: m.type)
def test_extra_fields_from_a_newer_peer_are_ignored(message: object) -> None:
    raw = msgpack.unpackb(encode(message), raw=False)  # type: ignore[arg-type]
    raw["added_in_1_7"] = {"anything": [1, 2.5, b"\x00", None]}
    assert decode(msgpack.packb(raw)) == message


def test_extra_fields_in_nested_records_are_ignored() -> None:
    raw = msgpack.unpackb(encode(examples()[1]), raw=False)
    raw["limits"]["max_batch"] = 4
    raw["models"][0]["quantization"] = "fp8"
    assert decode(msgpack.packb(raw)) == examples()[1]


def test_open_set_words_from_a_newer_daemon_are_accepted() -> None:
    status = decode(msgpack.packb({"type": "status", "state": "warming_up", "stage": "taylor"}))
    assert isinstance(status, Status) and status.state == "warming_up"
    error = decode(msgpack.packb({"type": "error", "code": "quota_exceeded", "message": "m"}))
    assert error.code == "quota_exceeded"  # type: ignore[union-attr]


def test_compatibility_rule() -> None:
    major, minor = PROTOCOL_VERSION
    assert is_compatible((major, minor + 5))
    assert is_compatible((major, 0))
    assert not is_compatible((major + 1, 0))
    assert not is_compatible((major - 1, 9))


def test_daemon_accepts_a_newer_minor_client() -> None:
    session = ServerSession(token="secret")
    major, minor = PROTOCOL_VERSION
    hello = Hello(client="future", protocol=(major, minor + 3), token="secret")
    assert session.receive(encode(hello)) == hello
    assert session.peer_version == (major, minor + 3)


def test_daemon_refuses_another_major_with_advice() -> None:
    session = ServerSession(token="secret")
    hello = Hello(client="future", protocol=(PROTOCOL_VERSION[0] + 1, 0), token="secret")
    with pytest.raises(ProtocolError) as info:
        session.receive(encode(hello))
    error = info.value
    assert (error.code, error.field, error.fatal) == (
        ErrorCode.UNSUPPORTED_VERSION,
        "protocol",
        True,
    )
    assert "update the daemon" in error.message


def test_welcome_without_optional_parts_decodes() -> None:
    """A minimal daemon (e.g. a future GIMP bridge test double) may send only the required field."""
    welcome = decode(msgpack.packb({"type": "welcome", "daemon_version": "9.9"}))
    assert isinstance(welcome, Welcome)
    assert welcome.protocol == PROTOCOL_VERSION and welcome.models == ()


def test_generate_from_an_older_client_without_new_fields() -> None:
    message = decode(msgpack.packb({"type": "generate", "job_id": "a", "prompt": "p"}))
    assert isinstance(message, Generate) and message.previews and not message.front
