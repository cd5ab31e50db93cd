"""The tray's state logic, without Qt: what the daemon's status turns into on screen."""

from __future__ import annotations

from mrflow_daemon.tray.state import TrayState
from mrflow_protocol import Status
from mrflow_protocol.messages import MemoryInfo

GIB = 1 << 30


def test_nothing_connected_is_stopped() -> None:
    state = TrayState()
    assert state.icon == "stopped" and state.headline == "MrFlow: daemon not running"
    assert state.model_line == "Model: -" and state.memory_line == "Memory: -"
    assert TrayState(starting=True).headline == "MrFlow: starting the daemon…"


def test_idle_with_a_loaded_model_and_memory() -> None:
    status = Status(
        state="idle", loaded_model="FLUX.1-schnell", memory=MemoryInfo(int(6.5 * GIB), 24 * GIB)
    )
    state = TrayState().with_status(status)
    assert state.icon == "idle" and state.headline == "MrFlow: ready"
    assert state.model_line == "Model: FLUX.1-schnell"
    assert state.memory_line == "Memory: 6.5 GiB of 24.0 GiB"
    assert state.tooltip.splitlines() == [
        "MrFlow: ready",
        "Model: FLUX.1-schnell",
        "Memory: 6.5 GiB of 24.0 GiB",
    ]


def test_generating_shows_percent_stage_and_queue() -> None:
    status = Status(state="busy", job_id="job-1", stage="low_res", percent=42.4, queue_length=2)
    state = TrayState().with_status(status)
    assert state.icon == "generating" and state.percent == 42
    assert state.headline == "MrFlow: generating 42% (low_res)"
    assert "2 waiting" in state.tooltip


def test_paused_and_back() -> None:
    paused = TrayState().with_status(Status(state="paused"))
    assert paused.icon == "paused" and paused.paused
    assert not paused.with_status(Status(state="idle")).paused


def test_a_failed_action_shows_an_error_until_the_next_status() -> None:
    state = TrayState().with_status(Status(state="idle")).failed("unload the models failed: boom")
    assert state.icon == "error"
    assert state.headline == "MrFlow: error: unload the models failed: boom"
    assert state.percent is None
    assert state.with_status(Status(state="idle")).icon == "idle"


def test_losing_the_daemon_forgets_its_status() -> None:
    state = (
        TrayState().with_status(Status(state="busy", percent=10)).disconnected("connection closed")
    )
    assert state.icon == "stopped" and state.status is None
    assert "connection closed" in state.tooltip
