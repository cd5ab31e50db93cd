"""Jobs, the daemon's one FIFO queue, and finished results kept for reconnecting clients.

Both classes are shared between the asyncio thread (submit, cancel, status)
and the worker thread (take, finish), so each guards its state with a lock
and every method returns quickly.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from mrflow_protocol.errors import ErrorCode

from mrflow_daemon.engine.events import CancelToken
from mrflow_daemon.engine.request import GenerationRequest


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass
class Job:
    """One generation request, from submission until its result is forgotten."""

    job_id: str
    owner: str
    """The session that submitted it; events go to every session in `listeners`: the owner, and
    each session that asked for the job with `get_result` while it was still going."""
    request: GenerationRequest
    model: str
    submitted_at: float = field(default_factory=time.monotonic)
    state: JobState = JobState.QUEUED
    cancel_token: CancelToken = field(default_factory=CancelToken)
    previews: bool = True
    """Send a preview per low-res step (the client may ask for progress only)."""
    listeners: set[str] = field(default_factory=set)
    started_at: float | None = None
    finished_at: float | None = None
    final_messages: list[Any] = field(default_factory=list)
    """The protocol messages that close the job (stage images and result, or an error), kept
    so a client that reconnects can fetch them by job id."""

    def __post_init__(self) -> None:
        self.listeners.add(self.owner)


class JobRefused(Exception):
    """A job cannot be queued; `code` and `field` go into the error reply."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class JobQueue:
    """One FIFO for the whole daemon, with front-insert, pause and per-client limits."""

    def __init__(self, *, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self._jobs: deque[Job] = deque()
        self._running: Job | None = None
        self._paused = False
        self._closed = False
        self._changed = threading.Condition()

    # -- asyncio side --------------------------------------------------------------------

    def submit(self, job: Job, *, front: bool = False) -> None:
        with self._changed:
            if self._closed:
                raise JobRefused(ErrorCode.SHUTTING_DOWN, "the daemon is shutting down")
            if len(self._jobs) >= self.max_total:
                raise JobRefused(
                    ErrorCode.QUEUE_FULL,
                    f"the daemon's queue is full ({self.max_total} jobs); try again later",
                    "job_id",
                )
            held = sum(1 for j in self._jobs if j.owner == job.owner)
            if self._running is not None and self._running.owner == job.owner:
                held += 1
            if held >= self.max_per_client:
                raise JobRefused(
                    ErrorCode.QUEUE_FULL,
                    f"this client already has {held} jobs queued or running; "
                    f"allowed: at most {self.max_per_client}",
                    "job_id",
                )
            if front:
                self._jobs.appendleft(job)
            else:
                self._jobs.append(job)
            self._changed.notify_all()

    def remove(self, job_id: str) -> Job | None:
        """Take a queued job out (cancel at once); None when it is not queued."""
        with self._changed:
            for job in self._jobs:
                if job.job_id == job_id:
                    self._jobs.remove(job)
                    return job
            return None

    def remove_where(self, predicate: Callable[[Job], bool]) -> list[Job]:
        with self._changed:
            removed = [job for job in self._jobs if predicate(job)]
            for job in removed:
                self._jobs.remove(job)
            return removed

    def position(self, job_id: str) -> int | None:
        """1 = runs next; None when not queued."""
        with self._changed:
            for index, job in enumerate(self._jobs, start=1):
                if job.job_id == job_id:
                    return index
            return None

    def snapshot(self) -> tuple[Job | None, list[Job]]:
        with self._changed:
            return self._running, list(self._jobs)

    @property
    def paused(self) -> bool:
        return self._paused

    def set_paused(self, paused: bool) -> None:
        with self._changed:
            self._paused = paused
            self._changed.notify_all()

    def close(self) -> list[Job]:
        """Stop handing out jobs; returns the ones still queued (the caller cancels them)."""
        with self._changed:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            self._changed.notify_all()
            return left

    def wake(self) -> None:
        """Make a blocked `take` re-check its conditions (the worker has other work)."""
        with self._changed:
            self._changed.notify_all()

    # -- worker side ---------------------------------------------------------------------

    def take(self, should_yield: Callable[[], bool] = lambda: False) -> Job | None:
        """Block until a job can run; None when the queue is closed or `should_yield()`."""
        with self._changed:
            while True:
                if self._closed or should_yield():
                    return None
                if self._jobs and not self._paused:
                    job = self._jobs.popleft()
                    self._running = job
                    return job
                self._changed.wait(timeout=1.0)

    def done(self, job: Job) -> None:
        with self._changed:
            if self._running is job:
                self._running = None
            self._changed.notify_all()


class JobStore:
    """Every job the daemon knows, by id; finished ones are kept for a while, then forgotten."""

    def __init__(self, *, retention_s: float, max_finished: int) -> None:
        self.retention_s = retention_s
        self.max_finished = max_finished
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, job: Job) -> None:
        with self._lock:
            self._prune_locked(time.monotonic())
            if job.job_id in self._jobs:
                raise JobRefused(
                    ErrorCode.DUPLICATE_JOB,
                    f"job id {job.job_id!r} is already in use; job ids must be unique",
                    "job_id",
                )
            self._jobs[job.job_id] = job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._prune_locked(time.monotonic())
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def prune(self) -> None:
        with self._lock:
            self._prune_locked(time.monotonic())

    def _prune_locked(self, now: float) -> None:
        finished = [j for j in self._jobs.values() if j.state.finished]
        expired = {
            j.job_id
            for j in finished
            if j.finished_at is not None and now - j.finished_at > self.retention_s
        }
        # Beyond the count cap, the oldest finished results go first.
        surplus = len(finished) - len(expired) - self.max_finished
        if surplus > 0:
            survivors = sorted(
                (j for j in finished if j.job_id not in expired),
                key=lambda j: j.finished_at or 0.0,
            )
            expired.update(j.job_id for j in survivors[:surplus])
        for job_id in expired:
            del self._jobs[job_id]
