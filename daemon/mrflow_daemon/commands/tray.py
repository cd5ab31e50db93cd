"""A tray icon that shows the daemon's state and controls it.

It connects to the daemon (starting `mrflow serve` when none answers), shows idle /
generating (with the percent) / paused / error / stopped, and offers pause and resume,
unload models, restart, the log folder, the config file, start at login, and quit (which
stops the daemon only if the tray started it). Needs PySide6: pip install 'mrflow[tray]'.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help="the daemon's websocket URL (default: from the daemon config)"
    )
    parser.add_argument(
        "--no-start",
        dest="start",
        action="store_false",
        help="only connect; do not start a daemon when none answers",
    )


def _serve_args_for(url: str | None) -> list[str]:
    """`mrflow serve` flags that make a daemon the tray starts listen where --url points."""
    if not url:
        return []
    parsed = urlsplit(url)
    if parsed.scheme not in ("ws", "wss") or not parsed.hostname or parsed.port is None:
        raise ValueError("expected ws://HOST:PORT, for example ws://127.0.0.1:9817")
    return ["--host", parsed.hostname, "--port", str(parsed.port)]


def run(args: argparse.Namespace) -> int:
    try:
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication, QSystemTrayIcon
    except ImportError:
        print("mrflow tray needs PySide6: pip install 'mrflow[tray]'", file=sys.stderr)
        return 2
    from mrflow_protocol import default_url

    from mrflow_daemon.server.config import ConfigError, load_config
    from mrflow_daemon.tray.app import Tray
    from mrflow_daemon.tray.controller import DaemonController

    try:
        config = load_config()
    except ConfigError as exc:
        print(f"mrflow tray: {exc}", file=sys.stderr)
        return 2
    url = args.url or default_url(config.host, config.port)
    try:
        serve_args = _serve_args_for(args.url)
    except ValueError as exc:
        print(f"mrflow tray: --url {args.url}: {exc}", file=sys.stderr)
        return 2
    token_file = Path(config.token_file).expanduser() if config.token_file else None
    app = QApplication(sys.argv[:1])
    app.setQuitOnLastWindowClosed(False)
    if not QSystemTrayIcon.isSystemTrayAvailable():
        print(
            "mrflow tray: this desktop has no system tray; the daemon runs without one "
            "(`mrflow serve`)",
            file=sys.stderr,
        )
    controller = DaemonController(
        url, token_file=token_file, start_daemon=args.start, serve_args=serve_args
    )
    tray = Tray(controller)
    tray.icon.show()
    controller.start()
    # Ctrl+C in a terminal quits like the menu does. Qt's loop hides signals from Python, so a
    # timer hands control back to the interpreter a few times a second.
    signal.signal(signal.SIGINT, lambda *_: tray.quit())
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(250)
    app.aboutToQuit.connect(controller.stop)  # logout: still stop a daemon the tray started
    return app.exec()
