"""The daemon: a websockets server, the job queue and the GPU worker, wired together.

    run_server(config)                    `mrflow serve`: runs until SIGINT/SIGTERM/shutdown
    async with running_daemon(config):    the same inside a running event loop (tests)
    with DaemonThread(config) as daemon:  the same on a background thread (demo, benchmarks)

Security at the door: the server binds where the config says (loopback unless
`allow_remote`); a handshake carrying a browser `Origin` header that the config
does not allow is refused with **HTTP 403 before the websocket upgrade**
(`process_request`), so a web page never gets a socket at all; then the first
message must be `hello` with the token (see `session`).

Threads: everything here runs on the event loop's thread except the `JobSink`
methods, which the worker calls; they build messages there (image encoding is
the slow part) and hand them to the loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from mrflow_protocol.errors import ErrorCode, ProtocolError
from mrflow_protocol.messages import (
    Generate,
    Message,
    ModelInfo,
    Models,
    Queued,
    StageImage,
    Status,
    Welcome,
)
from mrflow_protocol.version import PROTOCOL_VERSION
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from mrflow_daemon import __version__, paths
from mrflow_daemon.engine import events as engine_events
from mrflow_daemon.engine.errors import EngineError
from mrflow_daemon.engine.families import family_info
from mrflow_daemon.engine.plan import resolve_plan
from mrflow_daemon.engine.presets import DEFAULT_PRESET
from mrflow_daemon.engine.request import GenerationRequest
from mrflow_daemon.engine.result import GenerationResult
from mrflow_daemon.server.auth import ensure_token, origin_allowed
from mrflow_daemon.server.config import DaemonConfig
from mrflow_daemon.server.jobs import Job, JobQueue, JobRefused, JobState, JobStore
from mrflow_daemon.server.logs import configure_logging
from mrflow_daemon.server.messages import JobReporter, preset_infos, to_engine_request
from mrflow_daemon.server.models import (
    EngineFactory,
    EngineOptions,
    ModelHost,
    free_device_memory,
    load_mrflow_engine,
    resolve_model,
)
from mrflow_daemon.server.session import Session, error_reply
from mrflow_daemon.server.system import describe_device, memory_info
from mrflow_daemon.server.worker import GenerationWorker, ShuttingDownError, is_out_of_memory

log = logging.getLogger(__name__)

FEATURES = (
    "previews",
    "stage_images",
    "get_result",
    "cancel_all",
    "front_insert",
    "pause",
    "status",
    "load_model",
)
SHUTDOWN_FLUSH_S = 2.0
WORKER_STOP_TIMEOUT_S = 60.0


def _local_folder(name: str) -> Path | None:
    """The local folder a configured or loaded model name stands for (an alias of the built-in
    model, an installed name, a path), found with file checks only; None where there is none
    (a Hugging Face id is not looked up: the welcome must not wait for the network)."""
    from mrflow_daemon import models
    from mrflow_daemon.builtin import trained_weights
    from mrflow_daemon.models.catalog import BuiltinEntry, find_entry

    if isinstance(find_entry(name), BuiltinEntry):
        return trained_weights()  # None for the tiny random one: no card
    try:
        folder = models.resolve(name)
    except Exception:  # not installed, no such path: the welcome lists it without details
        return None
    return folder if folder.is_dir() else None


def _card_refine_sigma(folder: Path | None) -> float | None:
    """The refine sigma the engine takes from this folder's card (JSON only, no weights), or
    None: none set, not a model the card applies to, or a folder that cannot be read."""
    if folder is None:
        return None
    from mrflow_daemon.engine.errors import EngineError
    from mrflow_daemon.engine.families import family_info

    try:
        return family_info(folder).refine_sigma
    except EngineError:
        return None


class Daemon:
    """One daemon: the server, the queue, the result store, the models and the worker."""

    def __init__(
        self,
        config: DaemonConfig,
        *,
        engine_factory: EngineFactory | None = None,
        model_resolver: Callable[[str], Path] | None = None,
    ) -> None:
        self.config = config
        self.token = ensure_token(config.token_path)
        self.limits = config.limits()
        self.queue = JobQueue(
            max_total=config.max_queue_total, max_per_client=config.max_queued_jobs
        )
        self.store = JobStore(
            retention_s=config.result_retention_s, max_finished=config.max_retained_results
        )
        options = EngineOptions(
            device=config.device or None,
            dtype=config.dtype or None,
            offload=config.offload,
            upscaler=config.upscaler or None,
            max_side=config.max_image_side,
        )
        self.models = ModelHost(
            options,
            factory=engine_factory or load_mrflow_engine,
            resolver=model_resolver or resolve_model,
            max_resident=config.max_resident_models,
        )
        self.worker = GenerationWorker(self.queue, self.models, sink=self)
        self.sessions: dict[str, Session] = {}
        self.device = config.device or "cpu"
        self._session_ids = itertools.count(1)
        self._reporters: dict[str, JobReporter] = {}  # worker thread only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._stopping = False
        self._stopped: asyncio.Event | None = None
        self._stop_task: asyncio.Task[None] | None = None

    # -- lifetime ------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        # Importing torch takes seconds: do it before listening, off the loop.
        self.device = await asyncio.to_thread(describe_device, self.config.device)
        self.worker.start()
        try:
            await self._preload_and_listen()
        except BaseException:  # the port is taken, ...: no worker or model may outlive it
            await asyncio.to_thread(self.worker.stop, cancel_running=True, timeout=5)
            await asyncio.to_thread(self.models.unload)
            raise

    async def _preload_and_listen(self) -> None:
        if self.config.preload:
            try:
                await self.load_model(self.config.model, None)
            except ProtocolError as exc:  # serve anyway: clients are told when they use it
                log.error("could not preload %s: %s", self.config.model, exc.message)
        self._server = await serve(
            self._handle_connection,
            self.config.host,
            self.config.port,
            process_request=self._check_origin,
            # Up to twice the limit is read and answered with `too_large`; past that the
            # library closes with 1009 (message too big) without reading it all.
            max_size=2 * self.config.max_frame_bytes,
            compression=None,  # images are compressed already; deflate only costs CPU
            # Frames buffered per connection before the reader pushes back: each may be up to
            # twice max_frame_bytes, and a connection buffers before it has said hello.
            max_queue=4,
        )
        log.info(
            "MrFlow daemon %s listening on %s (device %s, model %s, token file %s)",
            __version__,
            self.url,
            self.device,
            self.config.model,
            self.config.token_path,
        )

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the daemon is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"ws://{host}:{self.port}"

    @property
    def stopping(self) -> bool:
        return self._stop_task is not None or self._stopping

    def request_shutdown(self) -> None:
        """Start a clean stop (signal handlers, the `shutdown` message); returns at once."""
        if self._stop_task is None and self._loop is not None:
            self._stop_task = self._loop.create_task(self.stop())

    async def stop(self) -> None:
        """Refuse queued jobs, cancel the running one between steps, tell clients, close."""
        if self._stopping:
            if self._stopped is not None:
                await self._stopped.wait()
            return
        self._stopping = True
        log.info("shutting down")
        for job in self.queue.close():
            self._finalize(
                job,
                JobState.CANCELLED,
                [
                    error_reply(
                        ErrorCode.SHUTTING_DOWN,
                        "the daemon is shutting down; the job did not run",
                        job_id=job.job_id,
                    )
                ],
            )
        stopped = await asyncio.to_thread(
            self.worker.stop, cancel_running=True, timeout=WORKER_STOP_TIMEOUT_S
        )
        if not stopped:
            log.error("the GPU worker did not stop within %.0f s", WORKER_STOP_TIMEOUT_S)
        await asyncio.sleep(0)  # let the worker's last callbacks run
        await asyncio.gather(*(s.flush(SHUTDOWN_FLUSH_S) for s in list(self.sessions.values())))
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if stopped:
            await asyncio.to_thread(self.models.unload)
        assert self._stopped is not None
        self._stopped.set()
        log.info("stopped")

    async def wait_stopped(self) -> None:
        assert self._stopped is not None
        await self._stopped.wait()

    # -- connections ---------------------------------------------------------------------

    def _check_origin(self, connection: ServerConnection, request: Request) -> Response | None:
        origin = request.headers.get("Origin")
        if origin_allowed(origin, self.config.allowed_origins):
            return None
        log.warning("refused a browser handshake from origin %r (not in allowed_origins)", origin)
        return connection.respond(
            403,
            f"origin_refused: browser origin {origin!r} is not allowed; add it to "
            f"allowed_origins in {paths.config_file()} to allow it\n",
        )

    async def _handle_connection(self, connection: ServerConnection) -> None:
        if self._stopping:
            await connection.close(1001, "shutting down")
            return
        await Session(self, connection, f"c{next(self._session_ids)}").run()

    def session_opened(self, session: Session) -> None:
        self.sessions[session.id] = session
        self.broadcast_status()

    def session_closed(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        # Its jobs keep running; their results wait in the store for a reconnect.
        self.broadcast_status()

    # -- requests from sessions ----------------------------------------------------------

    def welcome(self) -> Welcome:
        return Welcome(
            daemon_version=__version__,
            protocol=PROTOCOL_VERSION,
            device=self.device[:256],
            memory=memory_info(self.device),
            models=self.model_infos(),
            default_model=self.config.model,
            presets=preset_infos(),
            default_preset=DEFAULT_PRESET,
            limits=self.limits,
            features=FEATURES,
        )

    def model_infos(self) -> tuple[ModelInfo, ...]:
        from mrflow_daemon.builtin import max_side, trained_weights

        loaded = set(self.models.loaded_names())

        def info(name: str, folder: Path | None, family: str | None = None) -> ModelInfo:
            # What a model's card tells clients (JSON only); nothing for a folder without one.
            return ModelInfo(
                name=name[:256],
                family=family,
                loaded=name in loaded,
                max_side=max_side(folder),
                refine_sigma=_card_refine_sigma(folder),
            )

        infos: dict[str, ModelInfo] = {}
        try:
            from mrflow_daemon.models import installed_models

            for model in installed_models():
                if model.kind != "upscaler":
                    folder = trained_weights() if model.kind == "builtin" else model.path
                    infos[model.name] = info(model.name, folder, model.family)
        except Exception:  # a broken models folder must not break the handshake
            log.exception("could not list the installed models")
        for name in [self.config.model, *loaded]:
            if name not in infos:  # a folder path or an alias: its card, where it has one
                infos[name] = info(name, _local_folder(name))
        return tuple(infos.values())

    def models_message(self, request_id: str | None) -> Models:
        return Models(
            models=self.model_infos(), default_model=self.config.model, request_id=request_id
        )

    async def submit(self, session: Session, message: Generate) -> None:
        # Decoding input PNGs can take a moment for large canvases: off the loop.
        lora_dir = paths.models_dir() / "loras"
        request = await asyncio.to_thread(to_engine_request, message, lora_dir)
        loaded = self.models.loaded_names()
        # No model named: the one used last (loaded_names() is least recently used first).
        model = message.model or (loaded[-1] if loaded else self.config.model)
        folder = await self.check_model(model, job_id=message.job_id)
        await asyncio.to_thread(self._check_plan, request, folder, message.job_id)
        job = Job(
            job_id=message.job_id,
            owner=session.id,
            request=request,
            model=model,
            previews=message.previews,
        )
        self.store.add(job)
        try:
            self.queue.submit(job, front=message.front)
        except JobRefused:
            self.store.forget(job.job_id)
            raise
        position = self.queue.position(job.job_id)
        session.send(Queued(job_id=job.job_id, position=max((position or 1) - 1, 0)))
        if message.front:
            self._announce_positions(skip=job.job_id)
        log.info(
            "job %s queued by %s (%dx%d, %s)",
            job.job_id,
            session.id,
            request.width,
            request.height,
            request.preset,
        )
        self.broadcast_status()

    def jobs_to_cancel(
        self, session: Session, job_id: str | None, *, everything: bool
    ) -> list[Job]:
        """The jobs a `cancel` names; raises `not_found` for an unknown id (before any `ok`)."""
        if everything:
            mine = [
                j for j in self.store.all() if not j.state.finished and session.id in j.listeners
            ]
        else:
            assert job_id is not None
            job = self.store.get(job_id)
            if job is None:
                raise ProtocolError(
                    ErrorCode.NOT_FOUND, f"no job with id {job_id!r}", "job_id", job_id=job_id
                )
            mine = [job]
        return mine

    def cancel(self, jobs: list[Job]) -> None:
        for job in jobs:
            if self.queue.remove(job.job_id) is not None:
                # Queued: cancelled at once, it never reaches the worker.
                self._finalize(job, JobState.CANCELLED, [self._cancelled_error(job)])
            elif not job.state.finished:
                job.cancel_token.cancel()  # running: the engine stops at its next step
        self._announce_positions()
        self.broadcast_status()

    def reattach(self, session: Session, job_id: str) -> None:
        """`get_result`: send a finished job's outcome, or stream a live job's events here."""
        job = self.store.get(job_id)
        if job is None:
            raise ProtocolError(
                ErrorCode.NOT_FOUND,
                f"no job with id {job_id!r}: unknown, or its result was kept for "
                f"{self.config.result_retention_s:g} s and is gone",
                "job_id",
                job_id=job_id,
            )
        if job.state.finished:
            for message in job.final_messages:
                session.send(message)
            return
        job.listeners.add(session.id)  # the submitter (if still here) keeps getting them too
        position = self.queue.position(job.job_id)
        if position is not None:
            session.send(Queued(job_id=job.job_id, position=position - 1))

    async def check_model(
        self, name: str, *, job_id: str | None = None, request_id: str | None = None
    ) -> Path:
        """Refuse an unknown model at once, not when the worker gets to it (file checks only);
        returns its folder."""
        try:
            return await asyncio.to_thread(self.models.resolver, name)
        except Exception as exc:
            raise self._model_error(name, exc, job_id=job_id, request_id=request_id) from None

    def _check_plan(self, request: GenerationRequest, folder: Path, job_id: str) -> None:
        """Refuse now what the engine would refuse after the queue and a model load (steps,
        scale, sigmas, strength, seed, preset for this model's family: JSON configs only)."""
        try:
            plan = resolve_plan(request, family_info(folder), self.config.max_image_side)
        except EngineError as exc:
            raise ProtocolError(exc.code, exc.message, exc.field, job_id=job_id) from None
        # The daemon's max_steps holds for the steps a preset or the model supplies too.
        limit = self.config.max_steps
        for name, steps in (("steps", plan.steps), ("refine_steps", plan.refine_steps)):
            if steps > limit:
                raise ProtocolError(
                    ErrorCode.TOO_LARGE,
                    f"{name} is {steps} (from preset {request.preset!r}); "
                    f"allowed: at most {limit} on this daemon",
                    name,
                    job_id=job_id,
                )

    async def load_model(self, name: str, request_id: str | None) -> None:
        await self.check_model(name, request_id=request_id)

        def load() -> None:
            self.models.get(name)

        try:
            await asyncio.wrap_future(self.worker.call(load))  # between jobs, on the worker
        except Exception as exc:
            raise self._model_error(name, exc, request_id=request_id) from None
        self.broadcast_status()

    @staticmethod
    def _model_error(
        name: str, exc: Exception, *, job_id: str | None = None, request_id: str | None = None
    ) -> ProtocolError:
        code = getattr(exc, "code", ErrorCode.INTERNAL)
        if is_out_of_memory(exc):
            log.warning("loading %s ran out of device memory: %s", name, exc)
            traceback.clear_frames(exc.__traceback__)  # its frames hold the half-loaded model
            free_device_memory()
            code = ErrorCode.OUT_OF_MEMORY
        elif not isinstance(exc, (EngineError, ShuttingDownError)):
            log.exception("loading %s failed", name)
        return ProtocolError(
            code if code in ErrorCode.all() else ErrorCode.INTERNAL,
            f"could not load {name!r}: {getattr(exc, 'message', exc)}",
            "model",
            job_id=job_id,
            request_id=request_id,
        )

    async def unload_model(self, name: str | None, request_id: str | None = None) -> None:
        try:
            unloaded = await asyncio.wrap_future(self.worker.call(lambda: self.models.unload(name)))
        except ShuttingDownError as exc:
            raise ProtocolError(exc.code, exc.message, request_id=request_id) from None
        if name is not None and not unloaded:
            loaded = ", ".join(self.models.loaded_names()) or "none"
            raise ProtocolError(
                ErrorCode.NOT_FOUND,
                f"model {name!r} is not loaded; loaded: {loaded}",
                "model",
                request_id=request_id,
            )
        self.broadcast_status()

    def set_paused(self, paused: bool) -> None:
        self.queue.set_paused(paused)
        log.info("queue %s", "paused" if paused else "resumed")
        self.broadcast_status()

    def status(self, request_id: str | None = None) -> Status:
        running, queued = self.queue.snapshot()
        if running is not None and running.state.finished:
            running = None  # its end is recorded; the worker is about to take the next job
        reporter = self._reporters.get(running.job_id) if running else None
        state = "paused" if self.queue.paused else ("busy" if running else "idle")
        loaded = self.models.loaded_names()
        return Status(
            state=state,
            job_id=running.job_id if running else None,
            stage=reporter.stage if reporter else None,
            percent=reporter.last_percent if reporter else None,
            queue_length=len(queued),
            loaded_model=loaded[-1][:256] if loaded else None,  # the one used last
            memory=memory_info(self.device),
            clients=len(self.sessions),
            request_id=request_id,
        )

    def broadcast_status(self) -> None:
        subscribers = [s for s in self.sessions.values() if s.subscribed]
        if subscribers:
            status = self.status()
            for session in subscribers:
                session.send(status)

    def _announce_positions(self, skip: str | None = None) -> None:
        """Tell every queued job's client its new place (after a start, cancel or front-insert)."""
        _, queued = self.queue.snapshot()
        for index, job in enumerate(queued):
            if job.job_id != skip:
                self._send_to_listener(job, Queued(job_id=job.job_id, position=index))

    def _send_to_listener(self, job: Job, message: Message) -> None:
        for session_id in sorted(job.listeners):
            session = self.sessions.get(session_id)
            if session is not None:
                session.send(message)

    def _finalize(self, job: Job, state: JobState, messages: list[Message]) -> None:
        """Record a job's end and its closing messages together (loop thread), and send them."""
        job.final_messages = messages
        job.state = state
        job.finished_at = time.monotonic()
        # Kept for the retention time are the closing messages, not the decoded input pictures.
        job.request.image = job.request.mask = None
        for message in messages:
            if not isinstance(message, StageImage):  # those went out live already
                self._send_to_listener(job, message)
        self.store.prune()
        self.broadcast_status()

    @staticmethod
    def _cancelled_error(job: Job) -> Message:
        return error_reply(
            ErrorCode.CANCELLED, f"job {job.job_id} was cancelled", job_id=job.job_id
        )

    # -- JobSink: called on the worker thread -------------------------------------------

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(callback, *args)

    def job_started(self, job: Job) -> None:
        self._reporters[job.job_id] = JobReporter(
            job,
            previews=job.previews,
            preview_format=self.config.preview_format,
            preview_quality=self.config.preview_quality,
        )
        self._post(self._on_job_started)

    def _on_job_started(self) -> None:
        self._announce_positions()
        self.broadcast_status()

    def job_event(self, job: Job, event: engine_events.Event) -> None:
        reporter = self._reporters[job.job_id]
        before = reporter.stage, int(reporter.last_percent)
        for message in reporter.on_event(event):
            self._post(self._send_to_listener, job, message)
        if (reporter.stage, int(reporter.last_percent)) != before:  # subscribers see each 1%
            self._post(self.broadcast_status)

    def job_finished(self, job: Job, result: GenerationResult) -> None:
        reporter = self._reporters.pop(job.job_id)
        messages: list[Message] = [*reporter.stage_images, reporter.result(result)]
        self._post(self._finalize, job, JobState.DONE, messages)

    def job_failed(self, job: Job, code: str, message: str, field: str | None) -> None:
        self._reporters.pop(job.job_id, None)
        error = error_reply(code, message, field, job_id=job.job_id)
        self._post(self._finalize, job, JobState.FAILED, [error])

    def job_cancelled(self, job: Job) -> None:
        self._reporters.pop(job.job_id, None)
        self._post(self._finalize, job, JobState.CANCELLED, [self._cancelled_error(job)])


# -- ways to run it ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_daemon(config: DaemonConfig, **kwargs: Any) -> AsyncIterator[Daemon]:
    """A started daemon inside the current event loop; stopped on exit."""
    daemon = Daemon(config, **kwargs)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


class DaemonThread:
    """A daemon on a background thread with its own event loop (for synchronous callers).

    with DaemonThread(config) as daemon:
        ...  # connect to daemon.url with daemon.token
    """

    def __init__(self, config: DaemonConfig, **kwargs: Any) -> None:
        self.config = config
        self.kwargs = kwargs
        self.daemon: Daemon | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mrflow-daemon", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            try:
                self.daemon = Daemon(self.config, **self.kwargs)
                await self.daemon.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            await self.daemon.wait_stopped()

        asyncio.run(main())

    def __enter__(self) -> Daemon:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self.daemon is not None
        return self.daemon

    def stop(self, timeout: float = 120.0) -> None:
        daemon = self.daemon
        if daemon is not None and daemon._loop is not None and self._thread.is_alive():
            daemon._loop.call_soon_threadsafe(daemon.request_shutdown)
        self._thread.join(timeout)

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def run_server(config: DaemonConfig) -> int:
    """`mrflow serve`: log to the rotating file and the console, serve until told to stop."""
    configure_logging(config.log_level, config.log_path)
    try:
        return asyncio.run(_serve(config))
    except KeyboardInterrupt:  # a second Ctrl+C while stopping
        return 130


async def _serve(config: DaemonConfig) -> int:
    daemon = Daemon(config)
    try:
        await daemon.start()
    except OSError as exc:
        log.error(
            "cannot listen on %s:%s (%s): is another daemon running? choose --port",
            config.host,
            config.port,
            exc.strerror or exc,
        )
        return 1
    except EngineError as exc:  # the configured device is not on this machine
        log.error("cannot start: %s: %s (set device in the config, or --device)", exc.field, exc)
        return 1
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl+C raises instead
            loop.add_signal_handler(signum, stop_signal_handler(daemon))
    await daemon.wait_stopped()
    return 0


def stop_signal_handler(
    daemon: Daemon, exit_now: Callable[[int], object] = os._exit
) -> Callable[[], None]:
    """Ctrl+C / SIGTERM: the first starts a clean stop (which waits up to a minute for a step
    that cannot be interrupted); a second while stopping exits at once, with status 130."""

    def handle() -> None:
        if not daemon.stopping:
            daemon.request_shutdown()
            return
        log.warning("stop signal while stopping: exiting now, without waiting for the worker")
        for handler in logging.getLogger().handlers:
            handler.flush()  # the log file has the line above before the process ends
        exit_now(130)

    return handle
