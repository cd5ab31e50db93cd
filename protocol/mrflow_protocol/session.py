"""Connection state without I/O: what each side must do with the frames it gets.

The daemon keeps one `ServerSession` per websocket connection, the client one
`ClientSession`; both are fed raw frames and hand back vetted messages, or
raise `ProtocolError`. Their I/O (asyncio, Qt, threads) stays with the caller:

    session = ServerSession(token=token, limits=limits)
    async for frame in websocket:
        try:
            message = session.receive(frame)
        except ProtocolError as error:
            await websocket.send(encode(error_reply(error)))
            if error.fatal:
                await websocket.close(CLOSE_POLICY_VIOLATION, error.code)
            continue
        ...  # a Hello (send a Welcome) or an authenticated request
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Collection
from typing import Any

from mrflow_protocol.codec import check_limits, decode, encode
from mrflow_protocol.errors import ErrorCode, ProtocolError
from mrflow_protocol.limits import Limits
from mrflow_protocol.messages import (
    CLIENT,
    DAEMON,
    Error,
    Generate,
    Hello,
    Message,
    Result,
    Unknown,
    Welcome,
)
from mrflow_protocol.version import PROTOCOL_VERSION, format_version, is_compatible

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
"""The daemon is shutting down."""
CLOSE_POLICY_VIOLATION = 1008
"""Sent after a fatal error (failed handshake); the error frame before it says why."""


def new_job_id() -> str:
    """A fresh client-generated job id (32 hex digits)."""
    return uuid.uuid4().hex


def error_reply(error: ProtocolError) -> Error:
    """The `error` message that answers `error`."""
    return Error(
        code=error.code,
        message=error.message[:10_000],
        field=error.field[:256] if error.field else None,
        job_id=error.job_id,
        request_id=error.request_id,
    )


def origin_allowed(origin: str | None, allowed: Collection[str]) -> bool:
    """Whether a websocket handshake's Origin header may connect.

    Browsers always send Origin; native clients (Krita, GIMP, the tray, the CLI)
    send none. Refusing unknown origins stops any web page the user visits from
    driving the daemon through localhost."""
    if origin is None or "*" in allowed:
        return True
    return origin.rstrip("/") in {entry.rstrip("/") for entry in allowed}


def unknown_type_error(message: Unknown) -> ProtocolError:
    return ProtocolError(
        ErrorCode.UNKNOWN_TYPE,
        f"unknown message type {message.type!r} (this daemon speaks protocol "
        f"{format_version(PROTOCOL_VERSION)})",
        "type",
        job_id=message.job_id,
        request_id=message.request_id,
    )


class ServerSession:
    """The daemon's view of one connection: handshake, token, limits."""

    def __init__(self, *, token: str, limits: Limits | None = None) -> None:
        if not token:
            raise ValueError("the daemon needs a token (an empty one would let anyone in)")
        self._token = token
        self.limits = limits or Limits()
        self.client_name: str | None = None
        self.peer_version: tuple[int, int] | None = None

    @property
    def authenticated(self) -> bool:
        return self.client_name is not None

    def receive(self, frame: bytes | bytearray | memoryview | str) -> Message:
        """The vetted message in `frame`: a `Hello` that passed, or a request after one.

        Raises ProtocolError for anything to refuse; before a successful hello every
        error is `fatal` (answer it, then close the connection)."""
        try:
            message = decode(frame, limits=self.limits)
            if isinstance(message, Unknown):
                raise unknown_type_error(message)
            if message.sender != CLIENT:
                raise ProtocolError(
                    ErrorCode.UNEXPECTED_MESSAGE,
                    f"{message.type} is a daemon message; a client may not send it",
                    "type",
                )
            if not self.authenticated:
                if not isinstance(message, Hello):
                    raise ProtocolError(
                        ErrorCode.UNAUTHORIZED,
                        f"send hello with the token first (got {message.type})",
                        "type",
                    )
                self._handshake(message)
            elif isinstance(message, Hello):
                raise ProtocolError(
                    ErrorCode.UNEXPECTED_MESSAGE,
                    "hello was already sent on this connection",
                    "type",
                )
        except ProtocolError as error:
            if self.authenticated:
                raise
            if error.code in (ErrorCode.UNAUTHORIZED, ErrorCode.UNSUPPORTED_VERSION):
                error.fatal = True
                raise
            # Before a good hello, everything else is "not a valid hello" (docs/protocol.md).
            raise ProtocolError(
                ErrorCode.UNAUTHORIZED,
                f"the first message must be a valid hello with the token ({error.message})",
                error.field,
                fatal=True,
            ) from None
        return message

    def _handshake(self, hello: Hello) -> None:
        if not is_compatible(hello.protocol):
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"client speaks protocol {format_version(hello.protocol)}; this daemon speaks "
                f"{format_version(PROTOCOL_VERSION)} (same major version needed): update "
                f"{'the client' if hello.protocol[0] < PROTOCOL_VERSION[0] else 'the daemon'}",
                "protocol",
            )
        if not hmac.compare_digest(hello.token.encode(), self._token.encode()):
            reason = "no token" if not hello.token else "a wrong token"
            raise ProtocolError(
                ErrorCode.UNAUTHORIZED,
                f"{reason}: send the content of the daemon's token file",
                "token",
            )
        self.client_name = hello.client
        self.peer_version = hello.protocol


class ClientSession:
    """The client's view of one connection: handshake, the daemon's limits, open jobs."""

    def __init__(self, *, client_name: str, token: str) -> None:
        self.client_name = client_name
        self.token = token
        self.welcome: Welcome | None = None
        self.open_jobs: set[str] = set()
        """Jobs submitted on this connection without a result or error yet."""

    @property
    def limits(self) -> Limits:
        return self.welcome.limits if self.welcome else Limits()

    def hello(self) -> bytes:
        return encode(Hello(client=self.client_name, protocol=PROTOCOL_VERSION, token=self.token))

    def receive(self, frame: bytes | bytearray | memoryview | str) -> Message | Unknown:
        """The message in a daemon frame. `Unknown` ones (a newer daemon's) should be ignored.

        Raises ProtocolError for a broken frame, an error before the welcome (the
        handshake failed: `fatal`) or a daemon of another major version."""
        message = decode(frame)
        if isinstance(message, Unknown):
            return message
        if message.sender != DAEMON:
            raise ProtocolError(
                ErrorCode.UNEXPECTED_MESSAGE, f"{message.type} is a client message", "type"
            )
        if self.welcome is None:
            if isinstance(message, Error):
                error = message.to_exception()
                error.fatal = True
                raise error
            if not isinstance(message, Welcome):
                raise ProtocolError(
                    ErrorCode.UNEXPECTED_MESSAGE,
                    f"expected welcome, got {message.type}",
                    "type",
                    fatal=True,
                )
            if not is_compatible(message.protocol):
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED_VERSION,
                    f"the daemon speaks protocol {format_version(message.protocol)}; this client "
                    f"speaks {format_version(PROTOCOL_VERSION)}",
                    "protocol",
                    fatal=True,
                )
            self.welcome = message
        elif (
            isinstance(message, (Result, Error))
            and message.job_id is not None
            and (isinstance(message, Result) or ErrorCode.ends_the_job(message.code))
        ):
            self.open_jobs.discard(message.job_id)
        return message

    def generate(self, **fields: Any) -> tuple[Generate, bytes]:
        """A `generate` with a fresh job id (unless given), checked against the daemon's limits."""
        fields.setdefault("job_id", new_job_id())
        message = Generate(**fields)
        check_limits(message, self.limits)
        frame = encode(message)
        if len(frame) > self.limits.max_frame_bytes:
            # The daemon would refuse it undecoded, with no job id to end the job with.
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"the request is {len(frame)} bytes; allowed: at most "
                f"{self.limits.max_frame_bytes} on this daemon (max_frame_bytes)",
                "image" if message.image is not None else None,
                job_id=message.job_id,
            )
        self.open_jobs.add(message.job_id)
        return message, frame
