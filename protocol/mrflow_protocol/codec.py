"""Messages to msgpack frames and back, with every field validated.

`encode(message)` gives the bytes of one binary websocket frame: a msgpack map
holding `type` and the message's fields (fields that are None are left out).
`decode(frame)` turns a frame back into a message, checking every field
against the rules in its annotation; anything wrong raises `ProtocolError`
naming the field and what is allowed. Nothing else ever escapes `decode`, so a
peer can answer any frame, however broken, with an `error` reply.

Forward compatibility: fields a message does not declare are ignored, and a
`type` this version does not know decodes to `Unknown`.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any

import msgpack

from mrflow_protocol.errors import ErrorCode, ProtocolError
from mrflow_protocol.fields import ImageBytes, Items, Range, Text, check_finite, readable_id
from mrflow_protocol.images import png_size
from mrflow_protocol.limits import Limits
from mrflow_protocol.messages import (
    MESSAGE_TYPES,
    Generate,
    Message,
    Unknown,
)

_TYPE_RULE = Text(1, 64)


# --- encoding ----------------------------------------------------------------------------


def encode(message: Message, *, validate: bool = True) -> bytes:
    """The frame for `message`. With `validate`, refuse to send what a peer would refuse."""
    if not isinstance(message, Message):
        raise TypeError(f"not a protocol message: {message!r}")
    wire = _to_wire(message)
    if validate:
        _decode_known(type(message), wire)
    wire = {"type": message.type, **wire}
    return msgpack.packb(wire, use_bin_type=True)


def _to_wire(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _to_wire(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, (tuple, list)):
        return [_to_wire(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_wire(item) for key, item in value.items()}
    return value


# --- decoding ----------------------------------------------------------------------------


class _DuplicateKey(Exception):
    def __init__(self, key: Any) -> None:
        super().__init__(key)
        self.key = key


def _map_without_duplicates(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """A msgpack map as a dict, refusing a repeated key (msgpack itself keeps the last one)."""
    result: dict[Any, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def decode(
    frame: bytes | bytearray | memoryview | str, *, limits: Limits | None = None
) -> Message | Unknown:
    """The message in one frame. Raises only `ProtocolError`.

    With `limits` (the daemon's), the frame size and a `generate` request's sizes,
    steps and prompt lengths are checked against them too (`too_large`)."""
    if isinstance(frame, str):
        raise ProtocolError(
            ErrorCode.MALFORMED_FRAME,
            "a text frame; send each message as one msgpack map in a binary frame",
        )
    if limits is not None and len(frame) > limits.max_frame_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"the frame has {len(frame)} bytes; allowed: at most {limits.max_frame_bytes}",
        )
    try:
        raw = msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=False,
            use_list=True,
            timestamp=0,
            object_pairs_hook=_map_without_duplicates,
        )
    except _DuplicateKey as exc:
        raise ProtocolError(
            ErrorCode.MALFORMED_FRAME, f"a map holds the key {exc.key!r} twice; keys must be unique"
        ) from None
    except Exception as exc:  # msgpack raises many kinds for broken input; all mean the same
        raise ProtocolError(
            ErrorCode.MALFORMED_FRAME, f"not a msgpack frame ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(raw, dict):
        raise ProtocolError(
            ErrorCode.MALFORMED_FRAME, f"a frame must hold a msgpack map, not {_kind(raw)}"
        )
    type_name = raw.get("type")
    if type_name is None:
        raise ProtocolError(ErrorCode.MALFORMED_FRAME, "the map has no `type`", "type")
    if not isinstance(type_name, str):
        raise ProtocolError(
            ErrorCode.MALFORMED_FRAME, f"type must be a string, not {_kind(type_name)}", "type"
        )
    _TYPE_RULE.check(type_name, "type")
    fields = {key: value for key, value in raw.items() if key != "type" and isinstance(key, str)}
    cls = MESSAGE_TYPES.get(type_name)
    if cls is None:
        return Unknown(type_name, fields)
    try:
        message = _decode_known(cls, fields)
        if limits is not None:
            check_limits(message, limits)
    except ProtocolError as error:
        # Route the error to the job or request it is about, when the frame said which.
        if error.job_id is None:
            error.job_id = readable_id(fields.get("job_id"))
        if error.request_id is None:
            error.request_id = readable_id(fields.get("request_id"))
        raise
    return message


def _decode_known(cls: type[Message], fields: Mapping[str, Any]) -> Message:
    message = typing.cast(Message, _build(cls, fields, ""))
    message.check()
    return message


# --- validation of one value against its annotation --------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _build(cls: type, raw: Mapping[str, Any], prefix: str) -> Any:
    """An instance of dataclass `cls` from a decoded map (unknown keys ignored)."""
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        if f.name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(ErrorCode.MISSING_FIELD, f"{path} is required", path)
            continue
        values[f.name] = _convert(raw[f.name], hints[f.name], path)
    return cls(**values)


def _convert(value: Any, hint: Any, path: str) -> Any:
    rules: tuple[Any, ...] = ()
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extra = typing.get_args(hint)
        rules = tuple(extra)
    origin = typing.get_origin(hint)

    if origin is typing.Union or origin is types.UnionType:
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(options) != 1:  # the protocol only uses `X | None`
            raise TypeError(f"unsupported annotation at {path}: {hint}")
        return None if value is None else _convert(value, options[0], path)

    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list):
            raise _wrong_type(path, "a list", value)
        _apply(rules, len(value), path)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(item, args[0], f"{path}.{i}") for i, item in enumerate(value))
        if len(value) != len(args):
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"{path} has {len(value)} entries; allowed: exactly {len(args)}",
                path,
            )
        return tuple(
            _convert(item, arg, f"{path}.{i}")
            for i, (item, arg) in enumerate(zip(value, args, strict=True))
        )

    if origin is dict:
        _key_type, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise _wrong_type(path, "a map", value)
        _apply(rules, len(value), path)
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _wrong_type(f"{path} key", "a string", key, field=path)
            result[key] = _convert(item, value_type, f"{path}.{key}")
        return result

    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _wrong_type(path, "a map", value)
        return _build(typing.cast(type, hint), value, path + ".")

    if hint is bool:
        if not isinstance(value, bool):
            raise _wrong_type(path, "true or false", value)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong_type(path, "an integer", value)
        _apply(rules, value, path)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _wrong_type(path, "a number", value)
        number = float(value)
        check_finite(number, path)
        _apply(rules, number, path)
        return number
    if hint is str:
        if not isinstance(value, str):
            raise _wrong_type(path, "a string", value)
        try:
            value.encode("utf-8")  # msgpack strings are UTF-8: a lone surrogate has no encoding
        except UnicodeEncodeError as exc:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"{path} is not valid Unicode text (character {exc.start} is a lone surrogate, "
                "for example from a name in another encoding)",
                path,
            ) from None
        _apply(rules, value, path)
        return value
    if hint is bytes:
        if not isinstance(value, bytes):
            raise _wrong_type(path, "binary (msgpack bin)", value)
        _apply(rules, value, path)
        return value
    raise TypeError(f"unsupported annotation at {path}: {hint}")


def _apply(rules: tuple[Any, ...], value: Any, path: str) -> None:
    for rule in rules:
        if isinstance(rule, (Range, Text, Items, ImageBytes)):
            rule.check(value, path)


def _wrong_type(path: str, expected: str, value: Any, field: str | None = None) -> ProtocolError:
    return ProtocolError(
        ErrorCode.INVALID_FIELD,
        f"{path} must be {expected}, not {_kind(value)}",
        field if field is not None else path,
    )


def _kind(value: Any) -> str:
    names = {
        type(None): "nil",
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        bytes: "binary",
        list: "a list",
        dict: "a map",
    }
    return names.get(type(value), f"msgpack {type(value).__name__}")


# --- cross-message checks ----------------------------------------------------------------


def check_limits(message: Message, limits: Limits) -> None:
    """Refuse a request over the daemon's limits with `too_large`, naming the field and limit."""
    if isinstance(message, Generate):
        _check_generate(message, limits)


def _too_large(path: str, what: str, limit: str) -> ProtocolError:
    return ProtocolError(ErrorCode.TOO_LARGE, f"{path} is {what}; allowed: {limit}", path)


def _check_generate(message: Generate, limits: Limits) -> None:
    side = limits.max_image_side
    for name in ("width", "height"):
        value = getattr(message, name)
        if value > side:
            raise _too_large(name, str(value), f"at most {side} on this daemon")
    pixels = message.width * message.height
    if pixels > limits.max_image_pixels:
        raise _too_large(
            "width",
            f"{message.width}x{message.height} = {pixels} pixels",
            f"at most {limits.max_image_pixels} pixels on this daemon",
        )
    for name in ("steps", "refine_steps"):
        value = getattr(message, name)
        if value is not None and value > limits.max_steps:
            raise _too_large(name, str(value), f"at most {limits.max_steps} on this daemon")
    for name in ("prompt", "negative_prompt"):
        length = len(getattr(message, name))
        if length > limits.max_prompt_length:
            raise _too_large(
                name, f"{length} characters", f"at most {limits.max_prompt_length} characters"
            )
    if len(message.loras) > limits.max_loras:
        raise _too_large("loras", f"{len(message.loras)} entries", f"at most {limits.max_loras}")
    for name in ("image", "mask"):
        data = getattr(message, name)
        size = png_size(data) if data is not None else None
        if size is None:
            continue
        width, height = size
        if max(width, height) > side or width * height > limits.max_image_pixels:
            raise _too_large(
                name,
                f"a {width}x{height} PNG",
                f"at most {side} per side and {limits.max_image_pixels} pixels",
            )
