"""The reference client: one websocket connection to the daemon, safe to share between threads.

    with connect() as client:                       # ws://127.0.0.1:9817, token from the token file
        job = client.generate("a lighthouse at dusk", width=768, height=512)
        for event in job:                           # queued, progress, preview, stage_image, ...
            print(event.type)
        print(job.wait().seed)

A reader thread receives every frame and routes it: job events to their `Job`,
replies to the request waiting for them (matched by `request_id`), `status` to
subscribers. Calls from several threads at once are fine.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mrflow_protocol import (
    JOB_EVENTS,
    Cancel,
    ClientSession,
    Error,
    ErrorCode,
    GetResult,
    GetStatus,
    Limits,
    ListModels,
    LoadModel,
    LoraRef,
    Message,
    Models,
    Ok,
    Pause,
    Ping,
    Pong,
    ProtocolError,
    Resume,
    Shutdown,
    Status,
    SubscribeStatus,
    Unknown,
    UnloadModel,
    Welcome,
    default_url,
    encode,
    new_job_id,
)
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from mrflow_daemon import __version__, paths
from mrflow_daemon.client.errors import (
    AuthenticationError,
    ClientError,
    DaemonUnavailable,
    RequestError,
)
from mrflow_daemon.client.images import ImageInput, to_png
from mrflow_daemon.client.job import Job

log = logging.getLogger(__name__)

DEFAULT_URL = default_url()
DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for the handshake and for each request's reply (not for jobs)."""

StatusCallback = Callable[[Status], None]


def read_token(token_file: Path | None = None) -> str:
    """The token in the user's token file (the daemon creates it on its first start)."""
    path = token_file or paths.token_file()
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise AuthenticationError(
            f"no token file at {path}: start the daemon once with `mrflow serve` to create it"
        ) from None
    except OSError as exc:
        raise AuthenticationError(f"cannot read the token file {path}: {exc}") from None
    if not token:
        raise AuthenticationError(f"the token file {path} is empty")
    return token


def connect(
    url: str = DEFAULT_URL,
    token: str | None = None,
    client_name: str = f"mrflow-client {__version__}",
    *,
    token_file: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Client:
    """Open a connection and complete the handshake. The token defaults to the token file's."""
    return Client(url, token, client_name, token_file=token_file, timeout=timeout)


class Client:
    """One authenticated connection to a MrFlow daemon (see the module docstring)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        client_name: str = f"mrflow-client {__version__}",
        *,
        token_file: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._session = ClientSession(
            client_name=client_name, token=token if token is not None else read_token(token_file)
        )
        self._lock = threading.Lock()  # guards the maps below (held only briefly)
        self._send_lock = threading.Lock()  # one frame at a time, never blocking the reader
        self._jobs: dict[str, Job] = {}
        self._pending: dict[str, concurrent.futures.Future[Message]] = {}
        self._status_callbacks: list[StatusCallback] = []
        self._closed_reason: str | None = None
        self._websocket = self._open()
        self.welcome = self._handshake()
        self._reader = threading.Thread(
            target=self._read_frames, name=f"mrflow-client {url}", daemon=True
        )
        self._reader.start()

    # -- connection ---------------------------------------------------------------------

    def _open(self) -> ClientConnection:
        try:
            connection = ws_connect(
                self.url,
                open_timeout=self.timeout,
                max_size=None,  # the daemon's limits apply to what we send; its replies are trusted
                compression=None,  # images are PNG/JPEG already; deflate would only cost time
                proxy=None,  # the daemon is local: never route through an HTTP(S)_PROXY
                user_agent_header=f"mrflow-client/{__version__}",
            )
        except InvalidURI as exc:
            raise ClientError(f"not a websocket URL: {self.url} ({exc})") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 403:
                raise AuthenticationError(
                    f"the daemon at {self.url} refused the connection (HTTP 403): "
                    "a browser Origin not allowed in its config?",
                    code="origin_refused",
                ) from None
            raise DaemonUnavailable(
                f"{self.url} answered HTTP {status}: is that a MrFlow daemon?"
            ) from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise DaemonUnavailable(
                f"no MrFlow daemon at {self.url} — start it with `mrflow serve` ({exc})"
            ) from None
        # Entered as a context manager (closed by `close()`), as websockets asks of long-lived
        # connections.
        connection.__enter__()
        return connection

    def _handshake(self) -> Welcome:
        try:
            self._websocket.send(self._session.hello())
            frame = self._websocket.recv(timeout=self.timeout)
            message = self._session.receive(frame)
        except ProtocolError as error:
            self._websocket.close()
            if error.code in ("unauthorized", "unsupported_version", "origin_refused"):
                raise AuthenticationError(
                    f"the daemon at {self.url} refused the handshake: {error.message}", error.code
                ) from None
            raise RequestError.from_protocol(error) from None
        except TimeoutError:
            self._websocket.close()
            raise DaemonUnavailable(f"no welcome from {self.url} within {self.timeout} s") from None
        except ConnectionClosed as exc:
            raise DaemonUnavailable(
                f"the daemon at {self.url} closed the connection during the handshake ({exc})"
            ) from None
        assert isinstance(message, Welcome)  # ClientSession accepts nothing else first
        return message

    def close(self) -> None:
        """Close the connection (jobs keep running on the daemon; see `get_result`)."""
        self._websocket.close()
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=self.timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    def _send(self, message: Message) -> None:
        try:
            frame = encode(message)  # validates every field
        except ProtocolError as exc:
            raise RequestError.from_protocol(exc) from None
        with self._send_lock:
            if self._closed_reason is not None:
                raise DaemonUnavailable(
                    f"the connection to {self.url} is closed: {self._closed_reason}"
                )
            try:
                self._websocket.send(frame)
            except ConnectionClosed as exc:
                raise DaemonUnavailable(f"the connection to {self.url} closed: {exc}") from None

    # -- the reader thread --------------------------------------------------------------

    def _read_frames(self) -> None:
        reason = "the connection closed"
        try:
            for frame in self._websocket:
                try:
                    message = self._session.receive(frame)
                except ProtocolError as error:
                    # A broken frame from the daemon is logged, never fatal for the client.
                    log.warning("ignored a frame from the daemon: %s", error)
                    continue
                self._dispatch(message)
        except ConnectionClosed as exc:
            reason = f"the connection closed ({exc})"
        except Exception:  # the reader must never die silently: fail everything waiting
            log.exception("the client's reader thread failed")
            reason = "the client's reader failed (see the log)"
        finally:
            self._fail_all(reason)

    def _dispatch(self, message: Message | Unknown) -> None:
        if isinstance(message, Unknown):
            log.debug("ignored a message of unknown type %r (a newer daemon?)", message.type)
            return
        request_id = getattr(message, "request_id", None)
        job_id = getattr(message, "job_id", None)
        with self._lock:
            future = self._pending.pop(request_id, None) if request_id else None
            job = self._jobs.get(job_id) if job_id and future is None else None
            # A status answering a request is returned by it; pushed ones go to subscribers.
            pushed = isinstance(message, Status) and future is None
            callbacks = list(self._status_callbacks) if pushed else []
        if future is not None:
            future.set_result(message)
        elif (
            job is not None
            and isinstance(message, JOB_EVENTS)
            and (not isinstance(message, Error) or ErrorCode.ends_the_job(message.code))
        ):
            job._push(message)  # type: ignore[arg-type]  # JOB_EVENTS is exactly JobEvent
            if job.done:
                with self._lock:
                    self._jobs.pop(job.job_id, None)
        elif isinstance(message, Error):
            log.warning("error from the daemon: %s: %s", message.code, message.message)
        for callback in callbacks:
            try:
                callback(message)  # type: ignore[arg-type]
            except Exception:
                log.exception("a status callback failed")

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            self._closed_reason = reason
            jobs, self._jobs = list(self._jobs.values()), {}
            pending, self._pending = list(self._pending.values()), {}
        for job in jobs:
            job._lose(reason)
        for future in pending:
            future.set_exception(DaemonUnavailable(f"{self.url}: {reason}"))

    # -- requests with one reply --------------------------------------------------------

    def _request(self, make: Callable[[str], Message], timeout: float | None = None) -> Message:
        request_id = new_job_id()[:16]
        future: concurrent.futures.Future[Message] = concurrent.futures.Future()
        with self._lock:
            self._pending[request_id] = future
        try:
            self._send(make(request_id))
            reply = future.result(timeout=self.timeout if timeout is None else timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"no reply from {self.url} within {timeout or self.timeout} s"
            ) from None
        finally:
            with self._lock:
                self._pending.pop(request_id, None)
        if isinstance(reply, Error):
            raise RequestError(reply.code, reply.message, reply.field, reply.job_id)
        return reply

    def ping(self) -> float:
        """Round-trip time in seconds."""
        start = time.perf_counter()
        self._expect(self._request(lambda rid: Ping(request_id=rid)), Pong)
        return time.perf_counter() - start

    def models(self) -> Models:
        return self._expect(self._request(lambda rid: ListModels(request_id=rid)), Models)

    def load_model(self, model: str, timeout: float | None = 600.0) -> None:
        """Load `model` and keep it resident (waits until it is loaded)."""
        self._expect(self._request(lambda rid: LoadModel(model=model, request_id=rid), timeout), Ok)

    def unload_model(self, model: str | None = None) -> None:
        """Free `model` (None: every loaded model)."""
        self._expect(self._request(lambda rid: UnloadModel(model=model, request_id=rid), 120.0), Ok)

    def status(self) -> Status:
        return self._expect(self._request(lambda rid: GetStatus(request_id=rid)), Status)

    def subscribe_status(self, callback: StatusCallback) -> Status:
        """Call `callback(status)` on every status change (on the reader thread: be quick).

        Returns the current status."""
        with self._lock:
            first = not self._status_callbacks
            self._status_callbacks.append(callback)
        try:
            if first:
                request = self._request(lambda rid: SubscribeStatus(request_id=rid))
                return self._expect(request, Status)
            return self.status()
        except BaseException:
            self.unsubscribe_status(callback)  # so a later subscribe asks the daemon again
            raise

    def unsubscribe_status(self, callback: StatusCallback) -> None:
        with self._lock:
            if callback in self._status_callbacks:
                self._status_callbacks.remove(callback)
            last = not self._status_callbacks
        if last:  # answered with a status, like subscribing
            self._request(lambda rid: SubscribeStatus(subscribe=False, request_id=rid))

    def pause(self) -> None:
        """Stop starting queued jobs (the running one finishes)."""
        self._expect(self._request(lambda rid: Pause(request_id=rid)), Ok)

    def resume(self) -> None:
        self._expect(self._request(lambda rid: Resume(request_id=rid)), Ok)

    def shutdown(self) -> None:
        """Stop the daemon. The connection closes right after."""
        self._expect(self._request(lambda rid: Shutdown(request_id=rid)), Ok)

    def cancel(self, job_id: str) -> None:
        """Cancel one job; it ends with an error `cancelled` (raises RequestError `not_found`
        when the daemon has no unfinished job with that id)."""
        self._expect(self._request(lambda rid: Cancel(job_id=job_id, request_id=rid)), Ok)

    def cancel_all(self) -> None:
        """Cancel every unfinished job of this client."""
        self._expect(self._request(lambda rid: Cancel(all=True, request_id=rid)), Ok)

    def _expect(self, reply: Message, kind: type[Any]) -> Any:
        if not isinstance(reply, kind):
            raise ClientError(f"expected {kind.type} from the daemon, got {reply.type}")
        return reply

    # -- jobs ---------------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        *,
        mode: str | None = None,
        negative_prompt: str = "",
        width: int = 1024,
        height: int = 1024,
        preset: str | None = None,
        steps: int | None = None,
        refine_steps: int | None = None,
        refine_sigma: float | None = None,
        scale: int | None = None,
        guidance: float | None = None,
        seed: int | None = None,
        model: str | None = None,
        loras: Sequence[LoraRef] = (),
        strength: float | None = None,
        image: ImageInput | None = None,
        mask: ImageInput | None = None,
        front: bool = False,
        previews: bool = True,
        job_id: str | None = None,
    ) -> Job:
        """Queue a generation and return its handle at once.

        `mode` defaults to inpaint with a mask, img2img with an image, else txt2img.
        Images may be PNG bytes, a file path or a PIL image (converted to PNG; masks
        to greyscale). The request is checked against the daemon's limits before it
        is sent (RequestError naming the field)."""
        image_png = to_png(image) if image is not None else None
        mask_png = to_png(mask, mode="L", field="mask") if mask is not None else None
        if mode is None:
            mode = "inpaint" if mask_png else "img2img" if image_png else "txt2img"
        fields: dict[str, Any] = dict(
            prompt=prompt,
            mode=mode,
            negative_prompt=negative_prompt,
            width=width,
            height=height,
            preset=preset,
            steps=steps,
            refine_steps=refine_steps,
            refine_sigma=refine_sigma,
            scale=scale,
            guidance=guidance,
            seed=seed,
            model=model,
            loras=tuple(loras),
            strength=strength,
            image=image_png,
            mask=mask_png,
            front=front,
            previews=previews,
            job_id=job_id or new_job_id(),
        )
        try:
            message, _frame = self._session.generate(**fields)
        except ProtocolError as error:
            raise RequestError.from_protocol(error) from None
        except TypeError as exc:  # a wrong keyword or type in the Python call itself
            raise RequestError("invalid_field", str(exc)) from None
        return self._submit(message.job_id, message)

    def get_result(self, job_id: str) -> Job:
        """A handle on a job submitted earlier (maybe on another connection): its result if
        it finished, or its remaining events if it is still queued or running."""
        return self._submit(job_id, GetResult(job_id=job_id))

    def _submit(self, job_id: str, message: Message) -> Job:
        job = Job(job_id, self._cancel_quietly)
        with self._lock:
            if job_id in self._jobs:
                raise RequestError("duplicate_job", f"job {job_id} is already open on this client")
            self._jobs[job_id] = job
        try:
            self._send(message)
        except ClientError:
            with self._lock:
                self._jobs.pop(job_id, None)
            raise
        return job

    def _cancel_quietly(self, job_id: str) -> None:
        try:
            self.cancel(job_id)
        except RequestError as error:
            if error.code != "not_found":  # it finished meanwhile: its result is on the way
                raise

    @property
    def limits(self) -> Limits:
        """What the daemon accepts (from its welcome); requests are checked against it."""
        return self.welcome.limits
