"""Enable and disable a plugin in kritarc, changing that one line and nothing else.

kritarc is KConfig's INI dialect, which Qt's and Python's INI parsers would rewrite (order,
case, escapes) if they saved it. So this edits the text: it finds the `[python]` group, sets
or removes one `enable_NAME=` key there, and keeps every other byte, including the file's
line endings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GROUP = "python"
# Any bracketed line starts a group; KConfig nests groups as `[Parent][Child]`.
_GROUP_HEADER = re.compile(r"^\ufeff?\s*\[(?P<name>.*)\]\s*$")


def enable_key(plugin: str) -> str:
    return f"enable_{plugin}"


@dataclass(frozen=True)
class Edit:
    text: str
    added_line: bool = False  # the key was not there before
    added_group: bool = False  # nor was the [python] group
    previous_value: str | None = None  # the key's value before, when it was there


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _key_of(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped.startswith(("#", ";", "[")) or "=" not in stripped:
        return None
    return stripped.split("=", 1)[0].strip()


def _group_span(lines: list[str]) -> tuple[int, int] | None:
    """[start, end) of the [python] group's lines (after its header), or None."""
    start = None
    for index, line in enumerate(lines):
        match = _GROUP_HEADER.match(line)
        if not match:
            continue
        if start is not None:
            return start, index
        if match.group("name") == GROUP:
            start = index + 1
    return (start, len(lines)) if start is not None else None


def enable(text: str, plugin: str) -> Edit:
    """`text` with `[python] enable_PLUGIN=true` set."""
    key, newline = enable_key(plugin), _newline(text)
    lines = text.splitlines(keepends=True)
    span = _group_span(lines)
    if span is None:
        prefix = text if not text or text.endswith(("\n", "\r")) else text + newline
        separator = newline if prefix else ""
        new_text = f"{prefix}{separator}[{GROUP}]{newline}{key}=true{newline}"
        return Edit(new_text, added_line=True, added_group=True)
    start, end = span
    for index in range(start, end):
        if _key_of(lines[index]) == key:
            value = lines[index].split("=", 1)[1].strip()
            if value == "true":
                return Edit(text, previous_value=value)
            ending = lines[index][len(lines[index].rstrip("\r\n")) :] or newline
            lines[index] = f"{key}=true{ending}"
            return Edit("".join(lines), previous_value=value)
    # Insert after the group's last non-blank line, so a blank separator line stays last.
    insert_at = end
    while insert_at > start and not lines[insert_at - 1].strip():
        insert_at -= 1
    if insert_at > 0 and not lines[insert_at - 1].endswith(("\n", "\r")):
        lines[insert_at - 1] += newline
    lines.insert(insert_at, f"{key}=true{newline}")
    return Edit("".join(lines), added_line=True)


def remove(text: str, plugin: str, *, remove_empty_group: bool = False) -> str:
    """`text` without the plugin's enable line (and its group, if asked and then empty)."""
    key = enable_key(plugin)
    lines = text.splitlines(keepends=True)
    span = _group_span(lines)
    if span is None:
        return text
    start, end = span
    kept = [line for line in lines[start:end] if _key_of(line) != key]
    if remove_empty_group and not any(line.strip() for line in kept):
        header = start - 1
        before = lines[:header]
        # Drop the blank separator `enable` put before the group it created.
        if before and not before[-1].strip() and end == len(lines):
            before = before[:-1]
        return "".join(before + lines[end:])
    return "".join(lines[:start] + kept + lines[end:])
