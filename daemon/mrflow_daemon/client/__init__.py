"""The reference client of the MrFlow daemon: real websockets, synchronous, thread-safe.

Used by `mrflow client`, `mrflow demo`, the tray and the tests. The protocol
itself (messages, validation) is `mrflow_protocol`; this package adds the I/O.
"""

from mrflow_daemon.client.connection import DEFAULT_URL, Client, connect, read_token
from mrflow_daemon.client.errors import (
    AuthenticationError,
    ClientError,
    ConnectionLost,
    DaemonUnavailable,
    JobCancelled,
    JobFailed,
    RequestError,
)
from mrflow_daemon.client.images import to_png
from mrflow_daemon.client.job import Job, JobEvent

__all__ = [
    "DEFAULT_URL",
    "AuthenticationError",
    "Client",
    "ClientError",
    "ConnectionLost",
    "DaemonUnavailable",
    "Job",
    "JobCancelled",
    "JobEvent",
    "JobFailed",
    "RequestError",
    "connect",
    "read_token",
    "to_png",
]
