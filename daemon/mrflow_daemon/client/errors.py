"""What the client library raises: one base class, one subclass per thing a caller handles."""

from __future__ import annotations

from mrflow_protocol import ErrorCode, ProtocolError


class ClientError(Exception):
    """Base class of every error the client library raises."""


class DaemonUnavailable(ClientError):
    """No daemon answered at the URL (or the connection dropped)."""


class AuthenticationError(ClientError):
    """The daemon refused the handshake: wrong or missing token, refused origin, old protocol."""

    def __init__(self, message: str, code: str = ErrorCode.UNAUTHORIZED) -> None:
        super().__init__(message)
        self.code = code


class RequestError(ClientError):
    """The daemon (or the local check against its limits) refused a request."""

    def __init__(
        self,
        code: str,
        message: str,
        field: str | None = None,
        job_id: str | None = None,
    ) -> None:
        where = f" ({field})" if field else ""
        super().__init__(f"{code}{where}: {message}")
        self.code = code
        self.message = message
        self.field = field
        self.job_id = job_id

    @classmethod
    def from_protocol(cls, error: ProtocolError) -> RequestError:
        return cls(error.code, error.message, error.field, error.job_id)


class JobFailed(RequestError):
    """A job ended with an error instead of a result (`code` says why)."""


class JobCancelled(JobFailed):
    """A job ended because it was cancelled."""


class ConnectionLost(ClientError):
    """The connection closed while waiting; a job's result can still be fetched with
    `Client.get_result(job_id)` after reconnecting."""
