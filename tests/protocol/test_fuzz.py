"""Property tests: whatever bytes arrive, decode() returns a message or raises ProtocolError.

Nothing else may escape (no KeyError, TypeError, RecursionError, ...), and no
input may make it slow. Inputs: random bytes, random msgpack values, valid
frames with bytes flipped / cut / inserted, and valid maps with one field
replaced by a random value.
"""

from __future__ import annotations

import time
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mrflow_protocol import (
    MESSAGE_TYPES,
    Hello,
    Limits,
    Message,
    ProtocolError,
    ServerSession,
    Unknown,
    decode,
    encode,
)
from mrflow_protocol.examples import examples

FRAMES = [encode(message) for message in examples()]
WIRE_MAPS = [msgpack.unpackb(frame, raw=False) for frame in FRAMES]
LIMITS = Limits(max_frame_bytes=1 << 20, max_image_side=2048)

FUZZ = settings(
    max_examples=200,
    deadline=1000,  # milliseconds per example: a hang or a pathological input fails the test
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=80)
    | st.binary(max_size=80),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)


def decode_safely(data: bytes, limits: Limits | None = None) -> Message | Unknown | None:
    """decode(), asserting it ends quickly and raises nothing but ProtocolError."""
    start = time.perf_counter()
    try:
        return decode(data, limits=limits)
    except ProtocolError as error:
        assert error.code and error.message
        return None
    finally:
        assert time.perf_counter() - start < 0.5


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    decode_safely(data)
    decode_safely(data, LIMITS)


@FUZZ
@given(msgpack_values)
def test_random_msgpack_values(value: Any) -> None:
    decode_safely(msgpack.packb(value, use_bin_type=True))


@FUZZ
@given(
    st.sampled_from(sorted(MESSAGE_TYPES)),
    st.dictionaries(st.text(max_size=16), msgpack_values, max_size=8),
)
def test_known_types_with_random_fields(type_name: str, fields: dict[str, Any]) -> None:
    decode_safely(msgpack.packb({**fields, "type": type_name}, use_bin_type=True), LIMITS)


@FUZZ
@given(st.sampled_from(range(len(WIRE_MAPS))), st.data())
def test_one_field_replaced_by_a_random_value(index: int, data: st.DataObject) -> None:
    wire = dict(WIRE_MAPS[index])
    name = data.draw(st.sampled_from(sorted(wire)))
    wire[name] = data.draw(msgpack_values)
    message = decode_safely(msgpack.packb(wire, use_bin_type=True), LIMITS)
    if message is not None and name != "type":
        # Whatever was accepted must be re-encodable: decode only lets valid messages through.
        assert decode(encode(message)) == message  # type: ignore[arg-type]


@FUZZ
@given(
    st.sampled_from(FRAMES),
    st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
        min_size=1,
        max_size=8,
    ),
)
def test_flipped_bytes(frame: bytes, flips: list[tuple[int, int]]) -> None:
    mutated = bytearray(frame)
    for position, value in flips:
        mutated[position % len(mutated)] = value
    decode_safely(bytes(mutated), LIMITS)


@FUZZ
@given(st.sampled_from(FRAMES), st.integers(min_value=0), st.binary(max_size=64))
def test_cut_and_spliced_frames(frame: bytes, cut: int, insert: bytes) -> None:
    cut %= len(frame) + 1
    decode_safely(frame[:cut])
    decode_safely(frame[:cut] + insert + frame[cut:], LIMITS)


def test_deeply_nested_input_is_refused_quickly() -> None:
    nested = b"\x91" * 100_000 + b"\xc0"  # 100000 nested one-element arrays
    assert decode_safely(nested) is None
    nested_map = b"\x81\xa1a" * 50_000 + b"\xc0"
    assert decode_safely(nested_map) is None


def test_huge_declared_lengths_with_little_data_are_refused_quickly() -> None:
    for header in (b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff"):
        assert decode_safely(header + b"\x00" * 16) is None


@FUZZ
@given(st.binary(max_size=512) | st.sampled_from(FRAMES), st.booleans())
def test_server_session_refuses_anything_with_a_protocol_error(frame: bytes, greeted: bool) -> None:
    session = ServerSession(token="secret", limits=LIMITS)
    if greeted:
        session.receive(encode(Hello(client="fuzz", token="secret")))
    try:
        session.receive(frame)
    except ProtocolError as error:
        assert error.fatal == (not greeted)  # before the hello, every refusal closes
