"""The plugin's link to the daemon: one worker thread, reconnecting on its own.

The thread owns the websocket (websockets' pure-Python sync client) and the protocol's
`ClientSession`; Krita's UI thread never waits on the network. Everything the thread learns
is handed to `post`, which must be thread-safe: inside Krita it emits a Qt signal (queued to
the UI thread), in tests it appends to a queue. Outgoing messages wait in a queue until the
thread sends them.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from mrflow_protocol import ClientSession, Message, ProtocolError, Unknown, Welcome, encode
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect

log = logging.getLogger(__name__)

DAEMON_DOWN_HINT = "Start it with `mrflow serve` or from the MrFlow tray icon."
POLL_SECONDS = 0.05
"""How long the thread waits for a daemon frame before it sends what is queued."""
RETRY_SECONDS = (1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class ConnectionEvent:
    """The connection changed: "connecting", "connected", "disconnected" or "refused"."""

    state: str
    detail: str = ""
    welcome: Welcome | None = None


@dataclass(frozen=True)
class MessageEvent:
    message: Message


@dataclass(frozen=True)
class NotSent:
    """A request that was queued while the link went down and was never sent."""

    message: Message


Post = Callable[[ConnectionEvent | MessageEvent | NotSent], None]


class Connection:
    def __init__(
        self, url: str, token: Callable[[], str | None], client_name: str, post: Post
    ) -> None:
        self.url = url
        self._token = token
        self._client_name = client_name
        self._post = post
        self._outbox: queue.Queue[tuple[Message, bytes]] = queue.Queue()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mrflow-connection", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def reconnect_now(self, url: str | None = None) -> None:
        """Drop the current connection (if any) and try again at once, at `url` if given."""
        if url:
            self.url = url
        self._wake.set()

    def send(self, message: Message) -> None:
        """Encode (and so validate) a message now, raising ProtocolError naming a bad field;
        the worker thread sends it, or reports it as `NotSent` if the link goes down first."""
        self._outbox.put((message, encode(message)))

    # --- the worker thread ----------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self._post(ConnectionEvent("connecting", f"connecting to {self.url}"))
            self._wake.clear()
            try:
                self._session()  # returns when asked to stop or to reconnect
                attempt = 0
                detail = ""
            except ProtocolError as error:
                # The handshake was refused (token, version): retrying quickly will not help.
                self._post(ConnectionEvent("refused", str(error.message)))
                attempt = len(RETRY_SECONDS) - 1
                detail = ""
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI) as error:
                detail = f"MrFlow daemon not reachable at {self.url} ({error}). {DAEMON_DOWN_HINT}"
            except Exception as error:  # never let the thread die: log, report, retry
                log.exception("connection thread failed")
                detail = f"connection failed: {error}"
            self.connected = False
            self._drop_outbox()
            if detail:
                self._post(ConnectionEvent("disconnected", detail))
            delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
            attempt += 1
            self._wake.wait(delay)

    def _session(self) -> None:
        token = self._token() or ""
        session = ClientSession(client_name=self._client_name, token=token)
        with connect(self.url, open_timeout=5, max_size=None, compression=None) as websocket:
            websocket.send(session.hello())
            welcome = session.receive(websocket.recv(timeout=30))
            assert isinstance(welcome, Welcome)  # ClientSession raises otherwise
            self.connected = True
            self._post(ConnectionEvent("connected", f"connected to {self.url}", welcome))
            while not self._stop.is_set() and not self._wake.is_set():
                self._flush(websocket)
                try:
                    frame = websocket.recv(timeout=POLL_SECONDS)
                except TimeoutError:
                    continue
                try:
                    message = session.receive(frame)
                except ProtocolError as error:
                    log.warning("ignored a frame from the daemon: %s", error)
                    continue
                if not isinstance(message, Unknown):
                    self._post(MessageEvent(message))
            self._flush(websocket)  # e.g. the cancels of a Krita that is closing
            websocket.close()

    def _flush(self, websocket: object) -> None:
        while True:
            try:
                message, frame = self._outbox.get_nowait()
            except queue.Empty:
                return
            try:
                websocket.send(frame)  # type: ignore[attr-defined]
            except Exception:
                self._post(NotSent(message))  # its job is told; the link is handled by _run
                raise

    def _drop_outbox(self) -> None:
        """Requests queued while the link is down are dropped; their jobs are told so."""
        while True:
            try:
                message, _ = self._outbox.get_nowait()
            except queue.Empty:
                return
            log.warning("not sent (no connection): %s", message.type)
            self._post(NotSent(message))
