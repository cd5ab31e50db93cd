"""What one daemon accepts: sent to every client in `welcome.limits`.

The protocol itself has wide hard bounds (see the message fields); a daemon
narrows them with these limits, which depend on its device and config.
Clients can check a request against them before sending; the daemon checks
every request with `mrflow_protocol.check_limits` and answers `too_large`,
naming the field and the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from mrflow_protocol.fields import Range

Positive = Annotated[int, Range(1, 2**63 - 1)]


@dataclass(frozen=True)
class Limits:
    max_frame_bytes: Positive = 64 * 1024 * 1024
    """The largest websocket frame (one message) the daemon reads."""
    max_image_side: Positive = 4096
    """The largest width or height of a request, an input image or a mask."""
    max_image_pixels: Positive = 4096 * 4096
    """The largest width * height."""
    max_steps: Positive = 150
    """The most sampling steps (stage-1 `steps` and `refine_steps`)."""
    max_prompt_length: Positive = 4000
    """The longest prompt or negative prompt, in characters."""
    max_queued_jobs: Positive = 8
    """The most unfinished jobs (queued or running) one client may have."""
    max_loras: Positive = 8
    """The most LoRAs in one request."""
