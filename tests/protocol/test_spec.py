"""docs/protocol.md documents every message, every field and every error code."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from mrflow_protocol import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    ErrorCode,
    Limits,
    LoraRef,
    MemoryInfo,
    ModelInfo,
    PresetInfo,
)
from mrflow_protocol.version import format_version

SPEC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


@pytest.fixture(scope="module")
def spec() -> str:
    return SPEC.read_text(encoding="utf-8")


def section(spec: str, heading: str) -> str:
    """The text from a heading that contains `heading` up to the next heading."""
    match = re.search(rf"^#+ [^\n]*{re.escape(heading)}[^\n]*\n(.*?)(?=^#+ )", spec, re.M | re.S)
    assert match, f"no section for {heading} in {SPEC}"
    return match.group(1)


@pytest.mark.parametrize("type_name", sorted(MESSAGE_TYPES))
def test_every_message_has_a_section_with_its_fields_and_an_example(
    spec: str, type_name: str
) -> None:
    text = section(spec, f"`{type_name}`")
    for field in dataclasses.fields(MESSAGE_TYPES[type_name]):
        assert f"| `{field.name}` |" in text, f"{type_name}.{field.name} is not documented"
    assert f'"type": "{type_name}"' in text, f"{type_name} has no example"


@pytest.mark.parametrize("record", [LoraRef, MemoryInfo, ModelInfo, PresetInfo, Limits])
def test_records_are_documented(spec: str, record: type) -> None:
    text = section(spec, record.__name__)
    for field in dataclasses.fields(record):
        assert f"| `{field.name}` |" in text, f"{record.__name__}.{field.name} is not documented"


def test_every_error_code_is_documented(spec: str) -> None:
    text = section(spec, "Error codes")
    for code in ErrorCode.all():
        assert f"| `{code}` |" in text, f"error code {code} is not documented"


def test_default_port_and_version_are_stated(spec: str) -> None:
    assert "9817" in spec
    version = format_version(PROTOCOL_VERSION)
    assert f"version {version}" in spec.splitlines()[0]
    assert f"now `[{PROTOCOL_VERSION[0]}, {PROTOCOL_VERSION[1]}]`" in spec
