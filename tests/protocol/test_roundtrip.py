"""Every message survives encode -> decode unchanged, and frames look as the spec says."""

from __future__ import annotations

import msgpack
import pytest
from mrflow_protocol import (
    CLIENT,
    CLIENT_MESSAGES,
    DAEMON,
    DAEMON_MESSAGES,
    MESSAGE_TYPES,
    Generate,
    Message,
    decode,
    encode,
)
from mrflow_protocol.examples import IMAGE, examples

EXAMPLES = examples()


def test_every_message_type_has_an_example() -> None:
    assert {message.type for message in EXAMPLES} == set(MESSAGE_TYPES)


def test_each_type_belongs_to_one_sender() -> None:
    assert all(cls.sender == CLIENT for cls in CLIENT_MESSAGES)
    assert all(cls.sender == DAEMON for cls in DAEMON_MESSAGES)
    assert not {c.type for c in CLIENT_MESSAGES} & {c.type for c in DAEMON_MESSAGES}


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.type)
def test_round_trip(message: Message) -> None:
    frame = encode(message)
    assert isinstance(frame, bytes)
    assert decode(frame) == message


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.type)
def test_frame_is_one_msgpack_map_with_its_type(message: Message) -> None:
    raw = msgpack.unpackb(encode(message), raw=False)
    assert isinstance(raw, dict)
    assert raw["type"] == message.type
    assert None not in raw.values(), "fields that are None are left out of the frame"


def test_images_travel_as_msgpack_bin() -> None:
    frame = encode(
        Generate(job_id="j", prompt="p", mode="img2img", width=64, height=48, image=IMAGE)
    )
    raw = msgpack.unpackb(frame, raw=True)
    assert raw[b"image"] == IMAGE  # bin, not str: raw=True would return str as bytes too
    assert msgpack.unpackb(frame, raw=False)["image"] == IMAGE  # and stays bytes when raw=False


def test_defaults_are_optional_on_the_wire() -> None:
    message = decode(msgpack.packb({"type": "generate", "job_id": "j1", "prompt": "a cat"}))
    assert message == Generate(job_id="j1", prompt="a cat")
    assert isinstance(message, Generate)
    assert (message.mode, message.width, message.height) == ("txt2img", 1024, 1024)


def test_ints_are_accepted_where_floats_are_expected() -> None:
    frame = msgpack.packb(
        {"type": "generate", "job_id": "j1", "prompt": "x", "refine_sigma": 0, "guidance": 4}
    )
    message = decode(frame)
    assert isinstance(message, Generate)
    assert message.guidance == 4.0 and isinstance(message.guidance, float)
