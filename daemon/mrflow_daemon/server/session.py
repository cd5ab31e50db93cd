"""One client connection: the handshake, then one request at a time, replies through an outbox.

Every frame gets an answer. Whatever is wrong with a frame (not msgpack, wrong
types, a missing field, an unknown type, over a limit) is answered with an
`error` naming the field and what is allowed, and the connection carries on.
Only a failed handshake (no `hello` first, a wrong token, another major
protocol version) closes the connection, with close code 1008. Until its hello
is accepted a connection may send frames of at most HELLO_MAX_BYTES (a hello
is well under 1 KiB): a larger one closes it with 1009, so a connection that
never says hello cannot make the daemon buffer images.

Outgoing messages go through a queue drained by one writer task, so replies
and job events leave in the order they were produced and a slow client never
blocks the daemon; under backlog, step previews (and only previews) are dropped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mrflow_protocol.codec import decode, encode
from mrflow_protocol.errors import ErrorCode, ProtocolError
from mrflow_protocol.messages import (
    DAEMON,
    Cancel,
    Error,
    Generate,
    GetResult,
    GetStatus,
    Hello,
    ListModels,
    LoadModel,
    Message,
    Ok,
    Pause,
    Ping,
    Pong,
    Preview,
    Resume,
    Shutdown,
    SubscribeStatus,
    Unknown,
    UnloadModel,
)
from mrflow_protocol.version import PROTOCOL_VERSION, format_version, is_compatible
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from mrflow_daemon.server.auth import token_matches
from mrflow_daemon.server.jobs import JobRefused

if TYPE_CHECKING:
    from mrflow_daemon.server.app import Daemon

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0
HELLO_MAX_BYTES = 64 * 1024
MAX_ERROR_MESSAGE = 2000
PREVIEW_BACKLOG = 32
"""Outbox length past which new previews are dropped (a newer one is coming anyway)."""
POLICY_VIOLATION = 1008


def _bug_report(message: Message, exc: ProtocolError) -> bytes:
    """An `internal` error in place of a message the daemon failed to encode, with its ids when
    they are valid, so the job or request it was about ends instead of waiting forever."""
    text = f"daemon bug: {exc}"
    ids = {"job_id": getattr(message, "job_id", None)}
    ids["request_id"] = getattr(message, "request_id", None)
    try:
        return encode(error_reply(ErrorCode.INTERNAL, text, **ids))
    except ProtocolError:
        return encode(error_reply(ErrorCode.INTERNAL, text))


def error_reply(
    code: str,
    message: str,
    field: str | None = None,
    *,
    job_id: str | None = None,
    request_id: str | None = None,
) -> Error:
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[: MAX_ERROR_MESSAGE - 1] + "…"
    return Error(
        code=code,
        message=message,
        field=field[:256] if field else None,
        job_id=job_id,
        request_id=request_id,
    )


def from_protocol_error(error: ProtocolError) -> Error:
    return error_reply(
        error.code, error.message, error.field, job_id=error.job_id, request_id=error.request_id
    )


def set_max_message_size(connection: ServerConnection, size: int | None) -> int | None:
    """Set the largest frame the connection reads (past it, the library closes with 1009) and
    return the one it had. websockets 16 calls the attribute `max_message_size`, 15 `max_size`."""
    protocol = connection.protocol
    name = "max_message_size" if hasattr(protocol, "max_message_size") else "max_size"
    previous: int | None = getattr(protocol, name)
    setattr(protocol, name, size)
    return previous


class Session:
    """The daemon's side of one websocket connection."""

    def __init__(self, daemon: Daemon, connection: ServerConnection, session_id: str) -> None:
        self.daemon = daemon
        self.connection = connection
        self.id = session_id
        self.client_name = "?"
        self.subscribed = False
        self.dropped_previews = 0
        self._outbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: dict[type[Any], Callable[[Any], Awaitable[None]]] = {
            Generate: self._generate,
            Cancel: self._cancel,
            GetResult: self._get_result,
            ListModels: self._list_models,
            LoadModel: self._load_model,
            UnloadModel: self._unload_model,
            SubscribeStatus: self._subscribe_status,
            GetStatus: self._get_status,
            Pause: self._pause,
            Resume: self._resume,
            Shutdown: self._shutdown,
            Ping: self._ping,
        }

    # -- sending -------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Queue a message for this client (from the event loop's thread only)."""
        if isinstance(message, Preview) and self._outbox.qsize() > PREVIEW_BACKLOG:
            self.dropped_previews += 1
            return
        self._outbox.put_nowait(message)

    async def _write_outbox(self) -> None:
        while True:
            message = await self._outbox.get()
            try:
                if message is None:
                    return
                try:
                    frame = encode(message)
                except ProtocolError as exc:  # a daemon bug: say so instead of sending garbage
                    log.error("refusing to send an invalid %s: %s", message.type, exc)
                    frame = _bug_report(message, exc)
                await self.connection.send(frame)
            except ConnectionClosed:
                return
            finally:
                self._outbox.task_done()

    async def flush(self, timeout: float) -> None:
        """Wait until everything queued so far was handed to the socket (bounded)."""
        try:
            await asyncio.wait_for(self._outbox.join(), timeout)
        except asyncio.TimeoutError:
            log.warning("session %s: %d messages were not sent", self.id, self._outbox.qsize())

    # -- lifetime ------------------------------------------------------------------------

    async def run(self) -> None:
        limit = set_max_message_size(self.connection, HELLO_MAX_BYTES)
        if not await self._handshake():
            return
        set_max_message_size(self.connection, limit)
        writer = asyncio.create_task(self._write_outbox(), name=f"mrflow-writer-{self.id}")
        self.daemon.session_opened(self)
        try:
            async for frame in self.connection:
                await self._handle_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            self.daemon.session_closed(self)
            for task in self._tasks:
                task.cancel()
            self._outbox.put_nowait(None)
            await asyncio.gather(writer, *self._tasks, return_exceptions=True)
            dropped = f"; {self.dropped_previews} previews dropped" if self.dropped_previews else ""
            log.info("client %s (%s) disconnected%s", self.id, self.client_name, dropped)

    async def _refuse_handshake(self, error: Error) -> bool:
        log.warning("refused client %s: %s", self.remote, error.message)
        try:
            await self.connection.send(encode(error))
            await self.connection.close(POLICY_VIOLATION, error.code)
        except ConnectionClosed:
            pass
        return False

    async def _handshake(self) -> bool:
        try:
            frame = await asyncio.wait_for(self.connection.recv(), HANDSHAKE_TIMEOUT_S)
        except asyncio.TimeoutError:
            return await self._refuse_handshake(
                error_reply(ErrorCode.UNAUTHORIZED, f"no hello within {HANDSHAKE_TIMEOUT_S:g} s")
            )
        except ConnectionClosed:
            return False
        token_help = f"the content of the token file {self.daemon.config.token_path}"
        try:
            hello = decode(frame, limits=self.daemon.limits)
        except ProtocolError as exc:
            return await self._refuse_handshake(
                error_reply(
                    ErrorCode.UNAUTHORIZED,
                    f"the first message must be a valid hello with {token_help} ({exc})",
                    exc.field,
                )
            )
        if not isinstance(hello, Hello):
            return await self._refuse_handshake(
                error_reply(
                    ErrorCode.UNAUTHORIZED,
                    f"the first message must be hello with {token_help}, not {hello.type}",
                    "type",
                )
            )
        if not is_compatible(hello.protocol):
            return await self._refuse_handshake(
                error_reply(
                    ErrorCode.UNSUPPORTED_VERSION,
                    f"protocol {format_version(hello.protocol)} is not supported; allowed: "
                    f"{PROTOCOL_VERSION[0]}.x (this daemon speaks {format_version(PROTOCOL_VERSION)})",
                    "protocol",
                )
            )
        if not token_matches(hello.token, self.daemon.token):
            what = "a missing token" if not hello.token else "a wrong token"
            return await self._refuse_handshake(
                error_reply(ErrorCode.UNAUTHORIZED, f"{what}; send {token_help}", "token")
            )
        self.client_name = hello.client
        log.info("client %s connected: %s from %s", self.id, hello.client, self.remote)
        try:
            await self.connection.send(encode(self.daemon.welcome()))
        except ConnectionClosed:
            return False
        return True

    @property
    def remote(self) -> str:
        address = self.connection.remote_address
        return f"{address[0]}:{address[1]}" if address else "?"

    @property
    def is_local(self) -> bool:
        address = self.connection.remote_address
        try:
            return bool(address) and ipaddress.ip_address(address[0]).is_loopback
        except ValueError:
            return False

    # -- requests ------------------------------------------------------------------------

    async def _handle_frame(self, frame: bytes | str) -> None:
        try:
            message = decode(frame, limits=self.daemon.limits)
        except ProtocolError as exc:
            self.send(from_protocol_error(exc))
            return
        if isinstance(message, Unknown):
            self.send(
                error_reply(
                    ErrorCode.UNKNOWN_TYPE,
                    f"unknown message type {message.type!r}; allowed: "
                    + ", ".join(cls.type for cls in self._handlers),
                    "type",
                    job_id=message.job_id,
                    request_id=message.request_id,
                )
            )
            return
        handler = self._handlers.get(type(message))
        if handler is None:
            why = (
                "is sent by the daemon" if message.sender == DAEMON else "is only the first message"
            )
            self.send(
                error_reply(
                    ErrorCode.UNEXPECTED_MESSAGE,
                    f"{message.type} {why}; allowed now: "
                    + ", ".join(cls.type for cls in self._handlers),
                    "type",
                    job_id=getattr(message, "job_id", None),
                    request_id=getattr(message, "request_id", None),
                )
            )
            return
        try:
            await handler(message)
        except ProtocolError as exc:
            # Route the refusal to what it answers: the request's id, the job's id.
            exc.request_id = exc.request_id or getattr(message, "request_id", None)
            exc.job_id = exc.job_id or getattr(message, "job_id", None)
            self.send(from_protocol_error(exc))
        except JobRefused as exc:
            self.send(
                error_reply(
                    exc.code,
                    exc.message,
                    exc.field,
                    job_id=getattr(message, "job_id", None),
                    request_id=getattr(message, "request_id", None),
                )
            )
        except Exception as exc:  # a daemon bug: answer it, log it, keep the connection
            log.exception("session %s: %s failed", self.id, message.type)
            self.send(
                error_reply(
                    ErrorCode.INTERNAL,
                    f"{message.type} failed: {type(exc).__name__}: {exc}",
                    job_id=getattr(message, "job_id", None),
                    request_id=getattr(message, "request_id", None),
                )
            )

    def _in_background(self, work: Awaitable[None], request_id: str | None) -> None:
        """Run a slow request (model load) without holding up this client's other requests."""

        async def guarded() -> None:
            try:
                await work
            except ProtocolError as exc:
                exc.request_id = exc.request_id or request_id
                self.send(from_protocol_error(exc))
            except Exception as exc:  # a daemon bug: answer it, log it
                log.exception("session %s: background request failed", self.id)
                self.send(
                    error_reply(
                        ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}", request_id=request_id
                    )
                )

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _generate(self, message: Generate) -> None:
        await self.daemon.submit(self, message)

    async def _cancel(self, message: Cancel) -> None:
        jobs = self.daemon.jobs_to_cancel(self, message.job_id, everything=message.all)
        self.send(Ok(request=message.type, request_id=message.request_id))
        self.daemon.cancel(jobs)  # then each job's `cancelled` error, as protocol.md says

    async def _get_result(self, message: GetResult) -> None:
        self.daemon.reattach(self, message.job_id)

    async def _list_models(self, message: ListModels) -> None:
        self.send(self.daemon.models_message(message.request_id))

    async def _load_model(self, message: LoadModel) -> None:
        async def load() -> None:
            await self.daemon.load_model(message.model, message.request_id)
            self.send(Ok(request=message.type, request_id=message.request_id))

        self._in_background(load(), message.request_id)

    async def _unload_model(self, message: UnloadModel) -> None:
        async def unload() -> None:
            await self.daemon.unload_model(message.model, message.request_id)
            self.send(Ok(request=message.type, request_id=message.request_id))

        self._in_background(unload(), message.request_id)

    async def _subscribe_status(self, message: SubscribeStatus) -> None:
        self.subscribed = message.subscribe
        self.send(self.daemon.status(message.request_id))

    async def _get_status(self, message: GetStatus) -> None:
        self.send(self.daemon.status(message.request_id))

    async def _pause(self, message: Pause) -> None:
        self.daemon.set_paused(True)
        self.send(Ok(request=message.type, request_id=message.request_id))

    async def _resume(self, message: Resume) -> None:
        self.daemon.set_paused(False)
        self.send(Ok(request=message.type, request_id=message.request_id))

    async def _shutdown(self, message: Shutdown) -> None:
        if not self.is_local:
            raise ProtocolError(
                ErrorCode.UNAUTHORIZED,
                "shutdown is only accepted from the daemon's own machine",
                request_id=message.request_id,
            )
        log.info("shutdown requested by client %s (%s)", self.id, self.client_name)
        self.send(Ok(request=message.type, request_id=message.request_id))
        await self.flush(timeout=2.0)
        self.daemon.request_shutdown()

    async def _ping(self, message: Ping) -> None:
        self.send(Pong(request_id=message.request_id))
