"""The tray icon and its menu: a thin Qt layer over DaemonController and TrayState.

Status changes arrive on the client's threads; a Qt signal carries them to the GUI thread.
Menu actions run on a short-lived worker thread, so a slow daemon never freezes the menu.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices
from PySide6.QtWidgets import QApplication, QMenu, QSystemTrayIcon

from mrflow_daemon import paths
from mrflow_daemon.tray import icon as tray_icon
from mrflow_daemon.tray.controller import DaemonController
from mrflow_daemon.tray.state import TrayState


class _Bridge(QObject):
    changed = Signal(object)


class Tray(QObject):
    """Owns the QSystemTrayIcon; `actions` holds its menu entries by name (tests trigger them)."""

    state_changed = Signal(object)
    """Emitted on the GUI thread with each new TrayState, after the icon and menu show it."""

    def __init__(
        self,
        controller: DaemonController,
        *,
        open_url: Callable[[QUrl], object] = QDesktopServices.openUrl,
        quit_app: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.controller = controller
        self._open_url = open_url
        self._quit_app = quit_app or QApplication.quit
        self._workers: list[threading.Thread] = []
        self._stopping: threading.Thread | None = None
        self._bridge = _Bridge()
        self._bridge.changed.connect(self._show)
        controller.on_change = self._bridge.changed.emit
        self.state = controller.state

        self.menu = QMenu()
        self.actions: dict[str, QAction] = {}
        self._headline = self._info("headline")
        self._model = self._info("model")
        self._memory = self._info("memory")
        self.menu.addSeparator()
        self._add("pause", "Pause queue", controller.toggle_pause, background=True)
        self._add("unload", "Unload models", controller.unload_models, background=True)
        self._add("restart", "Restart daemon", controller.restart_daemon, background=True)
        self.menu.addSeparator()
        self._add("logs", "Open log folder", lambda: self._open(paths.log_dir()))
        self._add("config", "Open config file", self._open_config)
        login = self._add("autostart", "Start at login", self._toggle_autostart)
        login.setCheckable(True)
        login.setChecked(self._autostart_enabled())
        self.menu.addSeparator()
        self._add("quit", "Quit", self.quit)

        self.icon = QSystemTrayIcon()
        self.icon.setContextMenu(self.menu)
        self._show(controller.state)

    # -- building -------------------------------------------------------------------------

    def _info(self, name: str) -> QAction:
        action = self.menu.addAction("")
        action.setEnabled(False)
        self.actions[name] = action
        return action

    def _add(
        self, name: str, text: str, callback: Callable[[], object], *, background: bool = False
    ) -> QAction:
        action = self.menu.addAction(text)
        run = (lambda: self._in_background(callback)) if background else callback
        action.triggered.connect(lambda _checked=False: run())
        self.actions[name] = action
        return action

    def _in_background(self, callback: Callable[[], object]) -> None:
        worker = threading.Thread(target=callback, name="mrflow-tray-action", daemon=True)
        self._workers = [w for w in self._workers if w.is_alive()] + [worker]
        worker.start()

    def wait_for_actions(self, timeout: float = 60.0) -> None:
        """Block until menu actions running in the background are done (for tests and quit)."""
        for worker in list(self._workers):
            worker.join(timeout)

    # -- showing --------------------------------------------------------------------------

    def _show(self, state: TrayState) -> None:
        self.state = state
        self.icon.setIcon(tray_icon.icon(state.icon, state.percent))
        self.icon.setToolTip(state.tooltip)
        self._headline.setText(state.headline)
        self._model.setText(state.model_line)
        self._memory.setText(state.memory_line)
        connected = state.connected
        self.actions["pause"].setText("Resume queue" if state.paused else "Pause queue")
        self.actions["pause"].setEnabled(connected)
        self.actions["unload"].setEnabled(connected)
        self.state_changed.emit(state)

    # -- actions --------------------------------------------------------------------------

    def _open(self, path: Path) -> None:
        if not path.suffix:  # a folder: it may not exist before the daemon first writes there
            path.mkdir(parents=True, exist_ok=True)
        self._open_url(QUrl.fromLocalFile(str(path)))

    def _open_config(self) -> None:
        config = paths.config_file()
        if not config.exists():  # give the user a file to edit, with the settings explained
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(
                "# MrFlow daemon settings (TOML). `mrflow serve --help` lists every setting.\n"
                '# model = "FLUX.1-schnell"\n# port = 9817\n',
                encoding="utf-8",
            )
        self._open(config)

    @staticmethod
    def _autostart_enabled() -> bool:
        try:
            from mrflow_installer import autostart
        except ImportError:
            return False
        return autostart.is_enabled()

    def _toggle_autostart(self) -> None:
        from mrflow_installer import autostart

        if self.actions["autostart"].isChecked():
            autostart.enable("tray")  # the tray starts the daemon itself
        else:
            autostart.disable()
        self.actions["autostart"].setChecked(autostart.is_enabled())

    def quit(self) -> None:
        """Hide at once, then stop (the daemon too, if the tray started it) off the GUI thread:
        a clean stop can wait for a step, and the desktop must not freeze meanwhile."""
        self.icon.hide()

        def stop() -> None:
            self.wait_for_actions()
            self.controller.stop()

        self._stopping = threading.Thread(target=stop, name="mrflow-tray-quit", daemon=True)
        self._stopping.start()
        self._quit_when_stopped()

    def _quit_when_stopped(self) -> None:
        if self._stopping is not None and self._stopping.is_alive():
            QTimer.singleShot(100, self._quit_when_stopped)
            return
        self._quit_app()

    def wait_for_quit(self, timeout: float = 90.0) -> None:
        """Block until a quit's stop is done (for tests)."""
        if self._stopping is not None:
            self._stopping.join(timeout)
