"""A handle on one submitted job: iterate its events as they arrive, or wait for its result."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

from mrflow_protocol import Error, ErrorCode, Preview, Progress, Queued, Result, StageImage

from mrflow_daemon.client.errors import ConnectionLost, JobCancelled, JobFailed

JobEvent = Queued | Progress | Preview | StageImage | Result | Error


class _Lost:
    """Put in a job's queue when the connection closes before the job ended."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class Job:
    """One job on the daemon, as seen by the client that submitted (or fetched) it.

    Events arrive on the client's reader thread and queue here; the caller reads
    them from any one thread with `events()` (or by iterating the job) or skips to
    the end with `wait()`. The last event is always a `Result` or an `Error`."""

    def __init__(self, job_id: str, cancel: Callable[[str], None]) -> None:
        self.job_id = job_id
        self._cancel = cancel
        self._events: queue.Queue[JobEvent | _Lost] = queue.Queue()
        self._finished = threading.Event()
        self.result: Result | None = None
        self.error: Error | None = None

    # -- called by the client's reader thread --

    def _push(self, event: JobEvent) -> None:
        if isinstance(event, Result):
            self.result = event
        elif isinstance(event, Error):
            self.error = event
        self._events.put(event)
        if isinstance(event, (Result, Error)):
            self._finished.set()

    def _lose(self, reason: str) -> None:
        if not self._finished.is_set():
            self._events.put(_Lost(reason))

    # -- for callers --

    @property
    def done(self) -> bool:
        """True once a result or an error arrived."""
        return self._finished.is_set()

    def events(self, timeout: float | None = None) -> Iterator[JobEvent]:
        """Yield each event until (and including) the `Result` or `Error`.

        `timeout` bounds the wait for each next event (TimeoutError when it passes).
        Raises ConnectionLost if the connection closes first."""
        while True:
            if self.done and self._events.empty():
                return  # its last event was already read (by wait() or an earlier loop)
            event = self._next(timeout)
            yield event
            if isinstance(event, (Result, Error)):
                return

    def __iter__(self) -> Iterator[JobEvent]:
        return self.events()

    def wait(self, timeout: float | None = None) -> Result:
        """The result, once it comes (events not read yet are skipped).

        Raises JobCancelled, JobFailed, ConnectionLost or TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._next(remaining)
        return self.outcome()

    def _next(self, timeout: float | None) -> JobEvent:
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"job {self.job_id}: no event from the daemon in {timeout} s"
            ) from None
        if isinstance(event, _Lost):
            self._events.put(event)  # later calls see it too
            raise ConnectionLost(f"job {self.job_id}: {event.reason}")
        return event

    def outcome(self) -> Result:
        """The result of a finished job, or the error it ended with, raised."""
        if self.result is not None:
            return self.result
        if self.error is not None:
            kind = JobCancelled if self.error.code == ErrorCode.CANCELLED else JobFailed
            raise kind(self.error.code, self.error.message, self.error.field, self.job_id)
        raise RuntimeError(f"job {self.job_id} has not finished")

    def cancel(self) -> None:
        """Ask the daemon to cancel this job; its last event will be an error `cancelled`
        (or its result, when it finished first)."""
        if not self.done:
            self._cancel(self.job_id)

    def __repr__(self) -> str:
        state = "done" if self.done else "open"
        return f"<Job {self.job_id} {state}>"
