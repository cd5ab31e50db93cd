"""Start MrFlow at login: an XDG autostart entry, a Windows Startup script, a macOS LaunchAgent.

One entry, one file per platform; `mrflow install --autostart` and the tray's "Start at login"
switch both go through here. The entry runs this Python with `-m mrflow_daemon.cli`, so it
keeps working whatever PATH the login session has.
"""

from __future__ import annotations

import os
import plistlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mrflow_daemon import paths

from mrflow_installer import platforms
from mrflow_installer.platforms import Platform

LAUNCH_AGENT_LABEL = "org.mrflow.daemon"
ENTRY_NAME = "mrflow-daemon"


def command(subcommand: str = "serve") -> list[str]:
    """The argv that starts `mrflow SUBCOMMAND` ("serve" or "tray") with this installation."""
    python = Path(sys.executable)
    windowless = python.with_name("pythonw.exe")  # no console window at login on Windows
    if platforms.current_platform() == "windows" and windowless.is_file():
        python = windowless
    return [str(python), "-m", "mrflow_daemon.cli", subcommand]


def entry_path(
    platform: Platform | None = None, env: Mapping[str, str] | None = None, home: Path | None = None
) -> Path:
    platform = platform or platforms.current_platform()
    env = os.environ if env is None else env
    home = home or Path.home()
    if platform == "windows":
        appdata = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
        startup = appdata / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Startup"
        return startup / f"{ENTRY_NAME}.cmd"
    if platform == "macos":
        return home / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"
    config = env.get("XDG_CONFIG_HOME", "").strip()
    return (Path(config) if config else home / ".config") / "autostart" / f"{ENTRY_NAME}.desktop"


def _desktop_quote(arg: str) -> str:
    """Quote one argument for a .desktop Exec line (Desktop Entry spec, "The Exec key")."""
    if arg and not any(ch in arg for ch in " \t\n\"'\\><~|&;$*?#()`"):
        return arg
    escaped = "".join("\\" + ch if ch in '"`$\\' else ch for ch in arg)
    return f'"{escaped}"'


def _cmd_quote(arg: str) -> str:
    arg = arg.replace("%", "%%")  # a batch file expands %...% even inside quotes
    return f'"{arg}"' if any(ch in arg for ch in " &()^%!") else arg


def entry_content(argv: Sequence[str], platform: Platform | None = None) -> bytes:
    """The bytes of the autostart entry that runs `argv` at login."""
    platform = platform or platforms.current_platform()
    if platform == "windows":
        line = 'start "MrFlow" /min ' + " ".join(_cmd_quote(a) for a in argv)
        # cmd.exe reads a batch file in the console's code page: switch it to UTF-8 first, so
        # a path with a non-ASCII user name (C:\\Users\\José\\...) is read as written.
        return (
            "@echo off\r\nrem Starts MrFlow at login (mrflow install --autostart)\r\n"
            f"chcp 65001 >nul\r\n{line}\r\n"
        ).encode()
    if platform == "macos":
        logs = paths.log_dir()
        plist = {
            "Label": LAUNCH_AGENT_LABEL,
            "ProgramArguments": list(argv),
            "RunAtLoad": True,
            "KeepAlive": False,
            "ProcessType": "Interactive",
            "StandardOutPath": str(logs / "launchd.out.log"),
            "StandardErrorPath": str(logs / "launchd.err.log"),
        }
        return plistlib.dumps(plist)
    exec_line = " ".join(_desktop_quote(a) for a in argv)
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=MrFlow\n"
        "Comment=MrFlow image generation daemon for Krita\n"
        f"Exec={exec_line}\n"
        "Terminal=false\n"
        "NoDisplay=true\n"
        "X-GNOME-Autostart-enabled=true\n"
    ).encode()


def writes_logs(platform: Platform | None = None) -> bool:
    """Whether the entry sends the daemon's output to files in the log folder (a LaunchAgent)."""
    return (platform or platforms.current_platform()) == "macos"


def is_enabled(platform: Platform | None = None) -> bool:
    return entry_path(platform).is_file()


def enable(subcommand: str = "serve", platform: Platform | None = None) -> Path:
    """Write the entry (atomically); return its path."""
    path = entry_path(platform)
    path.parent.mkdir(parents=True, exist_ok=True)
    if writes_logs(platform):
        paths.log_dir().mkdir(parents=True, exist_ok=True)  # launchd will not create it
    content = entry_content(command(subcommand), platform)
    if not path.is_file() or path.read_bytes() != content:
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(content)
        os.replace(temporary, path)
    return path


def disable(platform: Platform | None = None) -> bool:
    """Remove the entry; True when there was one."""
    path = entry_path(platform)
    if path.is_file():
        path.unlink()
        return True
    return False
