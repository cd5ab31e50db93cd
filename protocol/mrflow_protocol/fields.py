"""Declarative field rules, attached to message fields with `typing.Annotated`.

A message dataclass states each field's Python type and, in its annotation,
what values are allowed::

    width: Annotated[int, Range(16, 16384)] = 1024

The codec reads these rules to validate decoded maps, and `docs/protocol.md`
states the same ranges. Every rule can describe what it allows, so an error
always says what was wrong *and* what would have been accepted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated

from mrflow_protocol.errors import ErrorCode, ProtocolError
from mrflow_protocol.images import png_size, sniff_format


@dataclass(frozen=True)
class Range:
    """A closed numeric range for an int or float field (None: unbounded on that side)."""

    min: float | None = None
    max: float | None = None

    def check(self, value: float, path: str) -> None:
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"{path} is {value}; allowed: {self.describe()}", path
            )

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{_num(self.min)} to {_num(self.max)}"
        if self.min is not None:
            return f"at least {_num(self.min)}"
        if self.max is not None:
            return f"at most {_num(self.max)}"
        return "any number"


@dataclass(frozen=True)
class Text:
    """A string's length in characters, and optionally a pattern or a closed set of values."""

    min_len: int = 0
    max_len: int = 256
    pattern: str | None = None
    pattern_help: str = ""
    choices: tuple[str, ...] | None = None

    def check(self, value: str, path: str) -> None:
        if self.choices is not None:
            if value not in self.choices:
                raise ProtocolError(
                    ErrorCode.INVALID_FIELD,
                    f"{path} is {_short(value)}; allowed: {', '.join(self.choices)}",
                    path,
                )
            return
        if not self.min_len <= len(value) <= self.max_len:
            if self.min_len == 0:
                allowed = f"at most {self.max_len} characters"
            else:
                allowed = f"{self.min_len} to {self.max_len} characters"
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"{path} has {len(value)} characters; allowed: {allowed}",
                path,
            )
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"{path} is {_short(value)}; allowed: {self.pattern_help or self.pattern}",
                path,
            )


@dataclass(frozen=True)
class Items:
    """The most entries a list or map field may hold."""

    max_items: int

    def check(self, count: int, path: str) -> None:
        if count > self.max_items:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"{path} has {count} entries; allowed: at most {self.max_items}",
                path,
            )


@dataclass(frozen=True)
class ImageBytes:
    """Encoded image bytes in one of `formats`, recognised by their magic bytes."""

    formats: tuple[str, ...] = ("png",)

    def check(self, value: bytes, path: str) -> None:
        found = sniff_format(value)
        if found not in self.formats:
            what = f"{found.upper()} bytes" if found else "not a recognised image"
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"{path} is {what} ({len(value)} bytes); allowed: "
                + " or ".join(f.upper() for f in self.formats),
                path,
            )
        if found == "png" and png_size(value) is None:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"{path} is a PNG without an IHDR header", path
            )


Rule = Range | Text | Items | ImageBytes


def check_finite(value: float, path: str) -> None:
    if not math.isfinite(value):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"{path} is {value}; allowed: a finite number", path
        )


def readable_id(value: object) -> str | None:
    """`value` when it is a valid job or request id, else None (for routing error replies)."""
    if not isinstance(value, str):
        return None
    try:
        ID_TEXT.check(value, "id")
    except ProtocolError:
        return None
    return value


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "…")


# Aliases shared by many messages. Ids are client-generated; they go into logs and
# file names, so they are short and plain.
ID_TEXT = Text(
    1,
    64,
    pattern=r"[A-Za-z0-9._:\-]+",
    pattern_help="1 to 64 characters from A-Z a-z 0-9 . _ : -",
)
JobId = Annotated[str, ID_TEXT]
RequestId = Annotated[str, ID_TEXT]
Name = Annotated[str, Text(1, 256)]
"""A model, preset or LoRA name (or a path the daemon resolves)."""
ShortName = Annotated[str, Text(1, 64)]
"""An open-set word: a stage, a state, a feature; newer peers may send words older ones don't know."""
Count = Annotated[int, Range(0, 2**31 - 1)]
Bytes64 = Annotated[int, Range(0, 2**63 - 1)]
Seconds = Annotated[float, Range(0, None)]
Percent = Annotated[float, Range(0, 100)]
Side = Annotated[int, Range(1, 65535)]
"""A stated image width or height (the size of the bytes next to it)."""
VersionPart = Annotated[int, Range(0, 65535)]
Version = tuple[VersionPart, VersionPart]
"""A protocol version, [major, minor] on the wire."""
