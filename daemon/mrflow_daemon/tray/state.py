"""What the tray shows, computed from the daemon's status: no Qt here, so it is tested alone.

The daemon reports `state` idle | busy | paused (an open set), the running job's stage and
percent, the loaded model and its memory. The tray adds what only a client can know: whether
the daemon answers at all (stopped) and whether an action of ours failed (error).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from mrflow_protocol import Status

IconState = Literal["idle", "generating", "paused", "error", "stopped"]


def format_bytes(count: int) -> str:
    gib = count / (1 << 30)
    return f"{gib:.1f} GiB" if gib >= 1 else f"{count / (1 << 20):.0f} MiB"


@dataclass(frozen=True)
class TrayState:
    connected: bool = False
    status: Status | None = None
    error: str | None = None  # the last failure, until the next good status
    daemon_url: str = ""
    starting: bool = False  # we launched a daemon and wait for it to answer
    owns_daemon: bool = False  # the tray started it, so Quit stops it

    # -- transitions ----------------------------------------------------------------------

    def with_status(self, status: Status) -> TrayState:
        return replace(self, connected=True, status=status, error=None, starting=False)

    def disconnected(self, reason: str | None = None) -> TrayState:
        return replace(self, connected=False, status=None, error=reason)

    def failed(self, message: str) -> TrayState:
        return replace(self, error=message)

    # -- what to show ---------------------------------------------------------------------

    @property
    def icon(self) -> IconState:
        if self.error is not None and (self.connected or not self.starting):
            return "error" if self.connected else "stopped"
        if not self.connected or self.status is None:
            return "stopped"
        if self.status.state == "paused":
            return "paused"
        if self.status.state == "busy" or self.status.job_id is not None:
            return "generating"
        return "idle"

    @property
    def percent(self) -> int | None:
        if self.icon != "generating" or self.status is None or self.status.percent is None:
            return None
        return round(self.status.percent)

    @property
    def paused(self) -> bool:
        return self.status is not None and self.status.state == "paused"

    @property
    def model_line(self) -> str:
        if self.status is None:
            return "Model: -"
        return f"Model: {self.status.loaded_model or 'none loaded'}"

    @property
    def memory_line(self) -> str:
        memory = self.status.memory if self.status else None
        if memory is None or memory.total <= 0:
            return "Memory: -"
        return f"Memory: {format_bytes(memory.used)} of {format_bytes(memory.total)}"

    @property
    def headline(self) -> str:
        """The first menu line and the tooltip's first line."""
        icon = self.icon
        if icon == "stopped":
            if self.starting:
                return "MrFlow: starting the daemon…"
            return "MrFlow: daemon not running"
        if icon == "error":
            return f"MrFlow: error: {self.error}"
        if icon == "paused":
            return "MrFlow: paused"
        if icon == "generating":
            stage = self.status.stage if self.status else None
            percent = f" {self.percent}%" if self.percent is not None else ""
            return f"MrFlow: generating{percent}" + (f" ({stage})" if stage else "")
        return "MrFlow: ready"

    @property
    def tooltip(self) -> str:
        lines = [self.headline]
        if self.connected and self.status is not None:
            lines += [self.model_line, self.memory_line]
            if self.status.queue_length:
                lines.append(f"{self.status.queue_length} waiting")
        elif self.error and self.icon == "stopped":
            lines.append(self.error)
        return "\n".join(lines)
