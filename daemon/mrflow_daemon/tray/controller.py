"""The tray's link to the daemon: connect, follow its status, send commands, reconnect.

A protocol client of the daemon (mrflow_daemon.client), no Qt: every change of what the tray
should show is handed to `on_change(TrayState)`, from whichever thread noticed it; the Qt side
moves it to the GUI thread. A watcher thread notices a lost connection and reconnects, so the
tray keeps working when the daemon restarts. When nothing answers and `start_daemon` is set,
it launches `mrflow serve` itself, and only a daemon it launched is stopped when it quits.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from mrflow_protocol import Status

from mrflow_daemon import paths
from mrflow_daemon.client import (
    AuthenticationError,
    Client,
    ClientError,
    DaemonUnavailable,
    connect,
)
from mrflow_daemon.tray.state import TrayState

log = logging.getLogger(__name__)

RECONNECT_INTERVAL_S = 0.5
DAEMON_START_TIMEOUT_S = 120.0


def wait_until_port_closed(url: str, timeout: float) -> bool:
    """Wait until nothing accepts connections at `url`'s host and port; False on timeout."""
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                pass
        except OSError:
            return True
        time.sleep(0.2)
    return False


def stderr_log() -> Path:
    """Where a daemon started by the tray prints (its own log is `paths.log_dir()`)."""
    return paths.log_dir() / "tray-started-daemon.out"


def serve_command(extra_args: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "mrflow_daemon.cli", "serve", *extra_args]


class DaemonController:
    def __init__(
        self,
        url: str,
        *,
        token_file: Path | None = None,
        start_daemon: bool = True,
        serve_args: Sequence[str] = (),
        on_change: Callable[[TrayState], None] = lambda state: None,
    ) -> None:
        self.url = url
        self.token_file = token_file
        self.start_daemon = start_daemon
        self.serve_args = list(serve_args)
        self.on_change = on_change
        self._lock = threading.RLock()
        self._state = TrayState(daemon_url=url)
        self._client: Client | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._process_started_at = 0.0
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._launch_requested = False  # "Restart daemon": start one even without start_daemon

    # -- state ----------------------------------------------------------------------------

    @property
    def state(self) -> TrayState:
        with self._lock:
            return self._state

    def _set(self, state: TrayState) -> None:
        with self._lock:
            if state == self._state:
                return
            self._state = state
        self.on_change(state)

    def _on_status(self, status: Status) -> None:  # on the client's reader thread
        with self._lock:
            if self._client is None:
                return
            state = self._state.with_status(status)
        self._set(state)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (starting a daemon when none answers) and keep the connection up."""
        self._stopping.clear()
        self._watcher = threading.Thread(target=self._watch, name="mrflow-tray-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            client = self._client
            if client is None or client.closed:
                self._try_connect()
            self._stopping.wait(RECONNECT_INTERVAL_S)

    def _try_connect(self) -> None:
        with self._lock:
            if self._client is not None:  # the connection was lost
                self._client = None
                self._state = self._state.disconnected()
                state = self._state
            else:
                state = None
        if state is not None:
            self.on_change(state)
        try:
            client = connect(
                self.url, token_file=self.token_file, client_name="mrflow-tray", timeout=10
            )
        except DaemonUnavailable as exc:
            self._no_daemon(str(exc))
            return
        except AuthenticationError as exc:
            token_file = self.token_file or paths.token_file()
            if not token_file.is_file():  # the daemon creates it on its first start
                self._no_daemon(str(exc))
            else:  # a daemon answers but refuses us: starting another would not help
                self._set(self.state.disconnected(str(exc)))
            return
        except ClientError as exc:
            self._set(self.state.disconnected(str(exc)))
            return
        try:
            with self._lock:
                self._client = client
            status = client.subscribe_status(self._on_status)
        except (ClientError, TimeoutError) as exc:
            client.close()
            with self._lock:
                self._client = None
            self._set(self.state.disconnected(str(exc)))
            return
        self._on_status(status)

    def _no_daemon(self, reason: str) -> None:
        with self._lock:
            process = self._process
            waiting = process is not None and process.poll() is None
            if process is not None and not waiting:
                reason = (
                    f"the daemon the tray started exited with code {process.returncode}; "
                    f"see {stderr_log()} and the log in {paths.log_dir()}"
                )
                self._process = None
            elif waiting and time.monotonic() - self._process_started_at > DAEMON_START_TIMEOUT_S:
                reason = f"the daemon did not answer within {DAEMON_START_TIMEOUT_S:.0f} s"
                waiting = False
            # Launch once; a daemon of ours that died is reported, not restarted in a loop.
            launch = process is None and (
                self._launch_requested or (self.start_daemon and not self._state.owns_daemon)
            )
            state = replace(
                self._state.disconnected(None if waiting or launch else reason),
                starting=waiting or launch,
            )
            if launch:
                self._launch_requested = False
                self._launch_daemon()
                state = replace(state, owns_daemon=True)
        self._set(state)

    def _launch_daemon(self) -> None:  # called with the lock held
        log.info("no daemon at %s; starting one", self.url)
        # What the daemon prints before its own log is set up (an import error, a bad config)
        # goes to a file beside that log, where "see the log" sends the user.
        output = stderr_log()
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "wb") as sink:  # this start's output only: it cannot grow forever
            self._process = subprocess.Popen(
                serve_command(self.serve_args),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self._process_started_at = time.monotonic()

    @property
    def daemon_process(self) -> subprocess.Popen[bytes] | None:
        return self._process

    def stop(self, *, stop_daemon: bool | None = None, timeout: float = 60.0) -> None:
        """Stop following the daemon. Stops the daemon too if the tray started it (or if asked)."""
        self._stopping.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=5)
        if stop_daemon is None:
            stop_daemon = self._process is not None
        with self._lock:
            client, self._client = self._client, None
            process = self._process
        if client is not None:
            if stop_daemon:
                try:
                    client.shutdown()
                except (ClientError, TimeoutError) as exc:
                    log.warning("could not ask the daemon to stop: %s", exc)
            client.close()
        if process is not None and stop_daemon:
            if client is None:  # still starting, or not answering: no one to ask, so signal it
                process.terminate()  # SIGTERM: the daemon's own clean stop
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.terminate()
                process.wait(timeout=10)
            self._process = None

    # -- commands from the menu -----------------------------------------------------------

    def _call(self, what: str, action: Callable[[Client], object]) -> bool:
        client = self._client
        if client is None or client.closed:
            self._set(self.state.failed(f"cannot {what}: the daemon is not running"))
            return False
        try:
            action(client)
        except (ClientError, TimeoutError) as exc:
            self._set(self.state.failed(f"{what} failed: {exc}"))
            return False
        return True

    def pause(self) -> bool:
        return self._call("pause", lambda c: c.pause())

    def resume(self) -> bool:
        return self._call("resume", lambda c: c.resume())

    def toggle_pause(self) -> bool:
        return self.resume() if self.state.paused else self.pause()

    def unload_models(self) -> bool:
        return self._call("unload the models", lambda c: c.unload_model(None))

    def restart_daemon(self) -> bool:
        """Stop the daemon and start a fresh one, owned by the tray from then on."""
        stopped = self._call("stop the daemon", lambda c: c.shutdown())
        process = self._process
        if process is not None:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.terminate()
                process.wait(timeout=10)
        elif stopped:  # not ours: wait until it has let go of the port the new one needs
            wait_until_port_closed(self.url, timeout=60)
        with self._lock:
            self._process = None
            self._launch_requested = True
            state = replace(self._state.disconnected(), starting=True)
        self._set(state)
        # The watcher sees the closed connection, finds no daemon and starts one.
        return stopped
