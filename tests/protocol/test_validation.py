"""Bad fields are refused with a ProtocolError that names the field and what is allowed."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from mrflow_protocol import (
    ErrorCode,
    Generate,
    Limits,
    Preview,
    ProtocolError,
    Result,
    check_limits,
    decode,
    encode,
)
from mrflow_protocol.examples import IMAGE, MASK, solid_png

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 32


def frame(**fields: Any) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


def generate(**overrides: Any) -> bytes:
    return frame(**{"type": "generate", "job_id": "job-1", "prompt": "a cat", **overrides})


def refused(data: bytes, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(data, **kwargs)
    return info.value


@pytest.mark.parametrize(
    ("overrides", "field", "allowed"),
    [
        ({"width": "wide"}, "width", "must be an integer, not a string"),
        ({"width": 8}, "width", "16 to 16384"),
        ({"height": 20000}, "height", "16 to 16384"),
        ({"width": True}, "width", "must be an integer, not a boolean"),
        ({"steps": 0}, "steps", "1 to 1000"),
        ({"refine_sigma": 1.5}, "refine_sigma", "0 to 1"),
        ({"refine_sigma": math.nan}, "refine_sigma", "a finite number"),
        ({"guidance": math.inf}, "guidance", "a finite number"),
        ({"strength": -0.1}, "strength", "0 to 1"),
        ({"seed": -1}, "seed", "0 to 18446744073709551615"),
        ({"mode": "outpaint"}, "mode", "txt2img, img2img, inpaint"),
        ({"prompt": 7}, "prompt", "must be a string"),
        ({"job_id": ""}, "job_id", "1 to 64 characters"),
        ({"job_id": "a b"}, "job_id", "A-Z a-z 0-9 . _ : -"),
        ({"job_id": "x" * 65}, "job_id", "1 to 64 characters"),
        ({"front": 1}, "front", "true or false"),
        ({"loras": {"name": "a"}}, "loras", "must be a list"),
        ({"loras": [{"name": "a", "weight": 11}]}, "loras.0.weight", "-10 to 10"),
        ({"loras": [{"name": "a"}, {"weight": 1}]}, "loras.1", "exactly one of name or path"),
        ({"loras": [{"name": "a", "path": "/b"}]}, "loras.0", "exactly one of name or path"),
        ({"loras": [{"name": "a"}] * 65}, "loras", "at most 64"),
        ({"model": ""}, "model", "1 to 256 characters"),
        ({"image": IMAGE}, "image", "for img2img and inpaint"),
        ({"mode": "img2img"}, "image", "needs an input image"),
        ({"mode": "inpaint", "image": IMAGE}, "mask", "needs a mask"),
        ({"mode": "img2img", "image": IMAGE, "mask": MASK}, "mask", "needs mode inpaint"),
        ({"mode": "img2img", "image": JPEG}, "image", "JPEG bytes (36 bytes); allowed: PNG"),
        ({"mode": "img2img", "image": b"GIF89a" + b"\0" * 9}, "image", "not a recognised image"),
        ({"mode": "img2img", "image": "iVBORw0KGgo="}, "image", "binary (msgpack bin)"),
    ],
)
def test_generate_field_errors_name_the_field(
    overrides: dict[str, Any], field: str, allowed: str
) -> None:
    error = refused(generate(**overrides))
    assert error.field == field
    assert allowed in error.message
    assert error.code in (ErrorCode.INVALID_FIELD, ErrorCode.MISSING_FIELD)
    # The error is routed to the job, unless the job id itself was what was wrong.
    assert error.job_id == (None if field == "job_id" else "job-1")


@pytest.mark.parametrize("missing", ["job_id", "prompt"])
def test_missing_required_field(missing: str) -> None:
    fields = {"type": "generate", "job_id": "job-1", "prompt": "a cat"}
    del fields[missing]
    error = refused(frame(**fields))
    assert (error.code, error.field) == (ErrorCode.MISSING_FIELD, missing)
    assert f"{missing} is required" in error.message


def test_nested_missing_field_has_a_dotted_path() -> None:
    error = refused(frame(type="welcome", daemon_version="1", memory={"used": 1}))
    assert (error.code, error.field) == (ErrorCode.MISSING_FIELD, "memory.total")


def test_error_carries_the_job_id_so_the_daemon_can_route_it() -> None:
    error = refused(generate(job_id="mine-42", width=3))
    assert error.job_id == "mine-42"
    error = refused(frame(type="cancel", request_id="req-9", job_id=5))
    assert error.request_id == "req-9" and error.field == "job_id"


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"", "not a msgpack frame"),
        (b"\xc1", "not a msgpack frame"),
        (msgpack.packb({"type": "ping"}) + b"\x00", "not a msgpack frame"),
        (msgpack.packb([1, 2, 3]), "must hold a msgpack map, not a list"),
        (msgpack.packb("hello"), "not a string"),
        (msgpack.packb({"job_id": "x"}), "no `type`"),
        (msgpack.packb({"type": 3}), "type must be a string"),
        (msgpack.packb({"type": ""}), "type has 0 characters"),
        # A map of two entries with the same key: msgpack alone would keep the last one.
        (b"\x82" + (msgpack.packb("type") + msgpack.packb("ping")) * 2, "the key 'type' twice"),
        (
            b"\x82\xa4type\xa8generate\xa6params\x82"
            + (msgpack.packb("steps") + msgpack.packb(4)) * 2,
            "the key 'steps' twice",
        ),
    ],
)
def test_malformed_frames(data: bytes, what: str) -> None:
    error = refused(data)
    assert error.code in (ErrorCode.MALFORMED_FRAME, ErrorCode.INVALID_FIELD)
    assert what in error.message


def test_a_text_frame_is_refused_with_advice() -> None:
    error = refused('{"type": "ping"}')  # type: ignore[arg-type]
    assert error.code == ErrorCode.MALFORMED_FRAME
    assert "binary frame" in error.message


def test_msgpack_extension_types_are_refused_as_wrong_type() -> None:
    data = msgpack.packb({"type": "generate", "job_id": "j", "prompt": msgpack.ExtType(5, b"x")})
    error = refused(data)
    assert (error.code, error.field) == (ErrorCode.INVALID_FIELD, "prompt")


def test_map_keys_must_be_strings_in_timings() -> None:
    data = frame(
        type="result", job_id="j", image=IMAGE, width=64, height=48, seed=1, timings={1: 2.0}
    )
    error = refused(data)
    assert error.field == "timings"


class TestLimits:
    limits = Limits(max_frame_bytes=4096, max_image_side=512, max_image_pixels=512 * 384)

    def test_frame_size(self) -> None:
        error = refused(generate(prompt="x" * 5000), limits=self.limits)
        assert error.code == ErrorCode.TOO_LARGE
        assert "at most 4096" in error.message

    def test_side_and_pixels(self) -> None:
        error = refused(generate(width=640, height=256), limits=self.limits)
        assert (error.code, error.field) == (ErrorCode.TOO_LARGE, "width")
        assert "at most 512 on this daemon" in error.message
        error = refused(generate(width=512, height=512), limits=self.limits)
        assert error.code == ErrorCode.TOO_LARGE and "196608 pixels" in error.message
        decode(generate(width=512, height=384), limits=self.limits)  # exactly at the limit

    def test_steps_prompt_and_loras(self) -> None:
        limits = Limits(max_steps=30, max_prompt_length=10, max_loras=1)
        cases: list[tuple[dict[str, Any], str]] = [
            ({"steps": 31}, "steps"),
            ({"refine_steps": 31}, "refine_steps"),
            ({"prompt": "x" * 11}, "prompt"),
            ({"negative_prompt": "x" * 11}, "negative_prompt"),
            ({"loras": [{"name": "a"}, {"name": "b"}]}, "loras"),
        ]
        for overrides, field in cases:
            error = refused(generate(**overrides), limits=limits)
            assert (error.code, error.field) == (ErrorCode.TOO_LARGE, field), overrides

    def test_input_image_header_is_checked_before_decoding(self) -> None:
        big = solid_png(600, 16)
        error = refused(
            generate(mode="img2img", image=big, width=64, height=64), limits=self.limits
        )
        assert (error.code, error.field) == (ErrorCode.TOO_LARGE, "image")
        assert "600x16" in error.message

    def test_check_limits_directly(self) -> None:
        with pytest.raises(ProtocolError, match="width"):
            check_limits(Generate(job_id="j", prompt="", width=4096 + 16), Limits())


def test_stated_size_must_match_the_png() -> None:
    with pytest.raises(ProtocolError) as info:
        encode(Result(job_id="j", image=IMAGE, width=64, height=64, seed=1))
    assert info.value.field == "width" and "64x48" in info.value.message


@pytest.mark.parametrize(("data", "fmt"), [(JPEG, "jpeg"), (WEBP, "webp"), (IMAGE, "png")])
def test_previews_may_be_png_jpeg_or_webp(data: bytes, fmt: str) -> None:
    preview = Preview(job_id="j", step=1, total=2, image=data, format=fmt, width=64, height=48)
    assert decode(encode(preview)) == preview


def test_preview_format_must_match_the_bytes() -> None:
    with pytest.raises(ProtocolError) as info:
        encode(Preview(job_id="j", step=1, total=2, image=JPEG, format="png", width=8, height=8))
    assert info.value.field == "format"


def test_encode_refuses_what_the_peer_would_refuse() -> None:
    with pytest.raises(ProtocolError) as info:
        encode(Generate(job_id="j", prompt="x", steps=0))
    assert info.value.field == "steps"
    with pytest.raises(TypeError):
        encode({"type": "ping"})  # type: ignore[arg-type]


def test_a_lone_surrogate_is_an_invalid_field_not_an_encoder_crash() -> None:
    with pytest.raises(ProtocolError) as info:
        encode(
            Generate(job_id="j", prompt="caf\udce9")
        )  # a Latin-1 byte decoded with surrogateescape
    assert (info.value.code, info.value.field) == ("invalid_field", "prompt")
    assert "lone surrogate" in info.value.message
