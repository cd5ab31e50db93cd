"""Stable error codes and the one exception the protocol package raises.

A code is part of the protocol: clients branch on it, so a code never changes
meaning and is never removed (new codes may appear in a newer minor version;
an older client treats a code it does not know like `internal`).
"""

from __future__ import annotations


class ErrorCode:
    """The error codes of protocol 1.x, as plain strings (they travel as they are)."""

    # The frame or message itself.
    MALFORMED_FRAME = "malformed_frame"  # not msgpack, not a map, no `type`, trailing bytes
    UNKNOWN_TYPE = "unknown_type"  # a `type` this peer does not know (a newer peer's message)
    UNEXPECTED_MESSAGE = (
        "unexpected_message"  # a known type sent the wrong way or at the wrong time
    )
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"  # wrong type, out of range, too long, bad image bytes
    TOO_LARGE = "too_large"  # frame, image or prompt over the daemon's advertised limits
    # The handshake.
    UNSUPPORTED_VERSION = "unsupported_version"  # protocol major versions differ
    UNAUTHORIZED = "unauthorized"  # wrong or missing token, or a request before `hello`
    ORIGIN_REFUSED = "origin_refused"  # a browser Origin header not allowed in the config
    # Jobs and the queue.
    QUEUE_FULL = "queue_full"  # this client already has `max_queued_jobs` jobs waiting
    DUPLICATE_JOB = "duplicate_job"  # a job id this client already used
    NOT_FOUND = "not_found"  # no job (or stored result) with that id
    CANCELLED = "cancelled"  # the job was cancelled before it finished
    PAUSED = "paused"  # reserved: the queue is paused (jobs still queue; see `status`)
    # Running a job.
    OUT_OF_MEMORY = "out_of_memory"  # the device ran out of memory; the daemon goes on
    MODEL_NOT_FOUND = "model_not_found"
    UNSUPPORTED_MODEL = "unsupported_model"
    INVALID_REQUEST = "invalid_request"  # the engine refused the request (names the field)
    SHUTTING_DOWN = "shutting_down"  # the daemon is stopping; the job will not run
    INTERNAL = "internal"  # a bug in the daemon; the message says what happened

    @classmethod
    def ends_the_job(cls, code: str) -> bool:
        """Whether an error carrying a `job_id` means that job is over. Not for these two: a
        `duplicate_job` refuses a second request that reused the id of a job that goes on, and
        an `unknown_type` refuses a request the daemon does not know, which changed nothing."""
        return code not in (cls.DUPLICATE_JOB, cls.UNKNOWN_TYPE)

    @classmethod
    def all(cls) -> frozenset[str]:
        return frozenset(
            value for name, value in vars(cls).items() if name.isupper() and isinstance(value, str)
        )


class ProtocolError(Exception):
    """A frame or message broke the protocol, or a request was refused.

    `field` names the offending field as a dotted path (``loras.1.weight``) when
    there is one; `job_id` / `request_id` are copied from the offending message
    when it carried readable ones, so the reply can be routed to what it is about.
    `fatal` marks an error after which the daemon closes the connection (a failed
    handshake); every other error leaves the connection open.
    """

    def __init__(
        self,
        code: str,
        message: str,
        field: str | None = None,
        *,
        job_id: str | None = None,
        request_id: str | None = None,
        fatal: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.job_id = job_id
        self.request_id = request_id
        self.fatal = fatal

    def __str__(self) -> str:
        where = f" [{self.field}]" if self.field else ""
        return f"{self.code}{where}: {self.message}"

    def __repr__(self) -> str:
        return f"ProtocolError({self.code!r}, {self.message!r}, field={self.field!r})"
