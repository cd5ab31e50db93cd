"""Protocol version and the compatibility rule between peers.

Two peers are compatible when their major versions are equal. A minor version
only ever adds: new optional fields (an older peer ignores fields it does not
know), new message types (an older peer decodes them as `Unknown` and answers
`unknown_type`), new error codes, new open-set values (stages, states,
features). Anything else is a new major version.
"""

from __future__ import annotations

PROTOCOL_VERSION: tuple[int, int] = (1, 2)
"""1.1 added `ModelInfo.max_side`, 1.2 `ModelInfo.refine_sigma`."""

DEFAULT_PORT = 9817
"""The daemon's fixed loopback port (7860 and 8188 belong to A1111 and ComfyUI)."""

DEFAULT_HOST = "127.0.0.1"


def default_url(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    return f"ws://{host}:{port}"


def is_compatible(peer: tuple[int, int], ours: tuple[int, int] = PROTOCOL_VERSION) -> bool:
    """Same major version: every message both know means the same thing to both."""
    return peer[0] == ours[0]


def format_version(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"
