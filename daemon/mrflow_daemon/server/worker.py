"""The GPU worker: one thread that runs engine jobs one at a time.

The asyncio server never touches the engine; it queues jobs and control calls
(load, unload) here and hears back through a `JobSink`, whose methods run on
this thread and must hand their work to the event loop quickly. Whatever a
job raises fails that job only: the worker goes on with the next one.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from mrflow_protocol.errors import ErrorCode

from mrflow_daemon.engine.errors import EngineError, OutOfMemoryError
from mrflow_daemon.engine.events import (
    Event,
    GenerationCancelled,
    Stage,
    StageFinished,
    StageStarted,
)
from mrflow_daemon.engine.result import GenerationResult
from mrflow_daemon.server.jobs import Job, JobQueue, JobState
from mrflow_daemon.server.models import Engine, ModelHost, free_device_memory

log = logging.getLogger(__name__)

T = TypeVar("T")

OOM_HINT = (
    "try a smaller size or a preset with a larger scale, or start the daemon with --offload "
    "(slower, needs less GPU memory); other jobs are not affected"
)


class JobSink(Protocol):
    """Receives what happens to jobs; every method runs on the worker thread.

    Exactly one of `job_finished`, `job_failed` and `job_cancelled` ends each job that
    `take()` handed out; the sink records the job's final state, together with the
    messages that tell its client, so the two are never seen apart.
    """

    def job_started(self, job: Job) -> None: ...

    def job_event(self, job: Job, event: Event) -> None: ...

    def job_finished(self, job: Job, result: GenerationResult) -> None: ...

    def job_failed(self, job: Job, code: str, message: str, field: str | None) -> None: ...

    def job_cancelled(self, job: Job) -> None: ...


def is_out_of_memory(exc: BaseException) -> bool:
    """A device out-of-memory error, from the engine or straight from torch (CUDA, MPS)."""
    if isinstance(exc, OutOfMemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):  # pragma: no cover - older torch
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class ShuttingDownError(Exception):
    """A load or unload asked for while the daemon stops: it is not run."""

    code = ErrorCode.SHUTTING_DOWN

    def __init__(self) -> None:
        super().__init__("the daemon is shutting down")
        self.message = str(self)


class GenerationWorker:
    """Owns the thread, the resident models and the job that is running."""

    def __init__(self, queue: JobQueue, models: ModelHost, sink: JobSink) -> None:
        self.queue = queue
        self.models = models
        self.sink = sink
        self.running: Job | None = None
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._calls_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mrflow-gpu-worker", daemon=True)

    # -- from any thread -----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def call(self, fn: Callable[[], T]) -> Future[T]:
        """Run `fn` on the worker thread between jobs (load, unload): device work stays on one thread."""
        future: Future[T] = Future()
        with self._calls_lock:
            if self._stopping.is_set():  # never run, and never left waiting either
                future.set_exception(ShuttingDownError())
                return future
            self._calls.append((fn, future))
        self.queue.wake()
        return future

    def stop(self, *, cancel_running: bool, timeout: float | None = None) -> bool:
        """Stop taking jobs, optionally cancel the running one, wait; True if the thread ended.
        Loads and unloads still waiting are answered with ShuttingDownError, not run."""
        with self._calls_lock:
            self._stopping.set()
        job = self.running
        if cancel_running and job is not None:
            job.cancel_token.cancel()
        self.queue.wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- on the worker thread ------------------------------------------------------------

    def _has_calls(self) -> bool:
        with self._calls_lock:
            return bool(self._calls)

    def _run(self) -> None:
        log.info("GPU worker started")
        while True:
            self._run_pending_calls()
            if self._stopping.is_set():
                break
            job = self.queue.take(should_yield=lambda: self._has_calls() or self._stopping.is_set())
            if job is None:
                continue
            try:
                self._run_job(job)
            except Exception as exc:  # a bug in reporting, not in the job: fail it, carry on
                log.exception("job %s could not be reported", job.job_id)
                try:
                    self.sink.job_failed(job, ErrorCode.INTERNAL, f"internal error: {exc}", None)
                except Exception:
                    log.exception("job %s: the failure could not be reported either", job.job_id)
            finally:
                self.running = None
                self.queue.done(job)
        self._run_pending_calls()
        log.info("GPU worker stopped")

    def _run_pending_calls(self) -> None:
        while True:
            with self._calls_lock:
                if not self._calls:
                    return
                fn, future = self._calls.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            if self._stopping.is_set():  # a model load must not delay the stop
                future.set_exception(ShuttingDownError())
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def _run_job(self, job: Job) -> None:
        self.running = job
        # stop() sets the flag and then reads `running`; here `running` is set and then the flag
        # is read: a job taken just as the daemon began to stop is cancelled by one of the two.
        if self._stopping.is_set():
            job.cancel_token.cancel()
        if job.cancel_token.cancelled:  # cancelled between take() and here
            self.sink.job_cancelled(job)
            return
        job.state = JobState.RUNNING
        job.started_at = time.monotonic()
        self.sink.job_started(job)
        log.info("job %s started (model %s)", job.job_id, job.model)
        try:
            engine = self._engine_for(job)
            job.cancel_token.raise_if_cancelled()
            result = engine.generate(
                job.request,
                listener=lambda event: self.sink.job_event(job, event),
                cancel=job.cancel_token,
            )
        except GenerationCancelled:
            log.info("job %s cancelled", job.job_id)
            self.sink.job_cancelled(job)
        except Exception as exc:
            code, message, field = self._describe_failure(job, exc)
            self.sink.job_failed(job, code, message, field)
        else:
            log.info(
                "job %s done in %.2f s", job.job_id, time.monotonic() - (job.started_at or 0.0)
            )
            self.sink.job_finished(job, result)

    def _engine_for(self, job: Job) -> Engine:
        """The job's engine; a load inside a job is reported as its first stage."""
        if self.models.is_loaded(job.model):
            return self.models.get(job.model)
        started = time.monotonic()
        self.sink.job_event(job, StageStarted(Stage.LOAD))
        engine = self.models.get(job.model)
        self.sink.job_event(job, StageFinished(Stage.LOAD, time.monotonic() - started))
        return engine

    def _describe_failure(self, job: Job, exc: Exception) -> tuple[str, str, str | None]:
        if is_out_of_memory(exc):
            log.warning("job %s ran out of device memory: %s", job.job_id, exc)
            # The traceback's frames hold what was being built (a half-loaded model, a LoRA):
            # drop their locals, or the cache cannot go back to the driver.
            traceback.clear_frames(exc.__traceback__)
            free_device_memory()
            size = f"{job.request.width}x{job.request.height}"
            return (
                ErrorCode.OUT_OF_MEMORY,
                f"the device ran out of memory at {size}: {OOM_HINT}",
                None,
            )
        if isinstance(exc, EngineError):
            log.info("job %s refused by the engine: %s", job.job_id, exc.message)
            code = exc.code if exc.code in ErrorCode.all() else ErrorCode.INVALID_REQUEST
            return code, exc.message, exc.field
        log.exception("job %s failed", job.job_id)
        return ErrorCode.INTERNAL, f"the generation failed: {type(exc).__name__}: {exc}", None
