"""The one instance of the plugin inside Krita: settings, connection, controller, UI glue.

Dockers (one per Krita window) and the three actions all share it. It lives on the UI
thread; the connection thread reaches it only through `Bridge.event`, a queued Qt signal.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from mrflow_protocol import Message

from mrflow_krita import krita_adapter
from mrflow_krita.connection import Connection
from mrflow_krita.controller import Controller, JobParams, JobRefused
from mrflow_krita.jobs import Job, JobKind
from mrflow_krita.qt import QtCore, Signal
from mrflow_krita.settings import Settings, SettingsStore, load_settings, save_settings

log = logging.getLogger(__name__)

PLUGIN_VERSION = "0.1.0"


class Bridge(QtCore.QObject):  # type: ignore[misc]
    """Carries connection events from the worker thread to the UI thread.

    `event` is emitted on the worker thread; `_deliver` is a method of this QObject, which
    lives on the UI thread, so Qt queues every call to it there.
    """

    event = Signal(object)

    def __init__(self, handler: Callable[[object], None]) -> None:
        super().__init__()
        self._handler = handler
        self.event.connect(self._deliver)

    def _deliver(self, item: object) -> None:
        self._handler(item)


class Runtime:
    _instance: Runtime | None = None

    def __init__(self, store: SettingsStore | None = None) -> None:
        self.store = store or krita_adapter.KritaSettingsStore()
        self.settings = load_settings(self.store)
        self.controller = Controller(self.settings, self._send)
        self.bridge = Bridge(self.controller.on_connection_event)
        self.connection = Connection(
            self.settings.daemon_url,
            self.read_token,
            f"krita {krita_adapter.krita_version()} / mrflow-krita {PLUGIN_VERSION}"[:64],
            self.bridge.event.emit,
        )
        self.params = JobParams(
            prompt="",
            negative_prompt=self.settings.negative_prompt,
            strength=self.settings.strength,
            guidance=self.settings.guidance or None,
        )
        self.fixed_seed: int | None = None
        self.last_seed: int | None = None
        # Closed documents have no reliable signal in Krita 5.1's notifier: look every 2 s.
        self.timer = QtCore.QTimer()
        self.timer.setInterval(2000)
        self.timer.timeout.connect(self.controller.documents_changed)
        self.timer.start()
        self.connection.start()

    def _send(self, message: Message) -> None:
        self.connection.send(message)

    @classmethod
    def get(cls) -> Runtime:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def read_token(self) -> str | None:
        return self.settings.read_token()

    def update_settings(self, settings: Settings) -> None:
        reconnect = (
            settings.daemon_url != self.settings.daemon_url
            or settings.token_file != self.settings.token_file
        )
        self.settings = settings
        self.controller.settings = settings
        save_settings(self.store, settings)
        if reconnect:
            self.connection.reconnect_now(settings.daemon_url)

    def start(self, kind: JobKind) -> Job | None:
        """Run one of the three actions on the active document with the docker's choices."""
        params = self.params
        if not params.prompt.strip() and kind is not JobKind.REFINE:
            self.controller.report_error("Write a prompt first (what should be painted).")
            return None
        # The plugin picks random seeds itself, so the seed is shown (and copyable) at once.
        seed = self.fixed_seed if self.fixed_seed is not None else random.randrange(2**32)
        self.last_seed = seed
        job_params = JobParams(**{**params.__dict__, "seed": seed})
        try:
            return self.controller.start(krita_adapter.active_document(), kind, job_params)
        except JobRefused as refusal:
            self.controller.report_error(str(refusal))
        except Exception as error:  # a bug must not take Krita down: log it and say so
            log.exception("could not start %s", kind.value)
            self.controller.report_error(
                f"Could not start {kind.label}: {error} (details in the log)"
            )
        return None

    def shutdown(self) -> None:
        self.timer.stop()
        self.controller.cancel_all()
        self.connection.stop()

    @classmethod
    def shutdown_if_running(cls) -> None:
        """Krita is closing: cancel this session's jobs and close the connection."""
        if cls._instance is not None:
            cls._instance.shutdown()
            cls._instance = None
