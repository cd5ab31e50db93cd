"""`mrflow install` / `mrflow uninstall` into temporary homes laid out like each platform's."""

from __future__ import annotations

import hashlib
import os
import plistlib
import shlex
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from mrflow_daemon import paths
from mrflow_daemon.cli import main
from mrflow_installer import platforms
from mrflow_installer.manifest import InstallManifest
from mrflow_installer.payload import package_dir

PLATFORM_CASES = ["linux", "linux-flatpak", "windows", "macos"]


@dataclass(frozen=True)
class Home:
    root: Path
    platform: str  # one of PLATFORM_CASES
    pykrita: Path
    kritarc: Path
    autostart_entry: Path


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root: its SHA-256 and modification time (ns)."""
    return {
        str(path.relative_to(root)): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def tree(root: Path) -> set[str]:
    """Every file and folder under root."""
    return {str(path.relative_to(root)) for path in root.rglob("*")}


@pytest.fixture(params=PLATFORM_CASES)
def home(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    case: str = request.param
    root = tmp_path / "home"
    root.mkdir()
    monkeypatch.setenv("HOME", str(root))
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "APPDATA", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    platform = "linux" if case.startswith("linux") else case
    monkeypatch.setattr(platforms, "current_platform", lambda: platform)
    # MrFlow's own files go into this home too, so "nothing left" covers them.
    monkeypatch.setenv("MRFLOW_HOME", str(root / "mrflow-home"))
    if case == "linux":
        resources, kritarc = root / ".local/share/krita", root / ".config/kritarc"
        entry = root / ".config/autostart/mrflow-daemon.desktop"
    elif case == "linux-flatpak":
        flatpak = root / ".var/app/org.kde.krita"
        resources, kritarc = flatpak / "data/krita", flatpak / "config/kritarc"
        entry = root / ".config/autostart/mrflow-daemon.desktop"
        resources.mkdir(parents=True)  # Krita from Flathub has run once; the native one never
    elif case == "windows":
        monkeypatch.setenv("APPDATA", str(root / "AppData/Roaming"))
        monkeypatch.setenv("LOCALAPPDATA", str(root / "AppData/Local"))
        resources, kritarc = root / "AppData/Roaming/krita", root / "AppData/Local/kritarc"
        entry = (
            root / "AppData/Roaming/Microsoft/Windows/Start Menu/Programs/Startup/mrflow-daemon.cmd"
        )
    else:
        resources = root / "Library/Application Support/krita"
        kritarc = root / "Library/Preferences/kritarc"
        entry = root / "Library/LaunchAgents/org.mrflow.daemon.plist"
    return Home(root, case, resources / "pykrita", kritarc, entry)


KRITA_SETTINGS = (
    "[General]\n"
    "LastPreset=Basic-5 Size\n"
    "\n"
    "[python]\n"
    "enable_comics_project_management_tools=true\n"
    "\n"
    "[mrflow]\n"
    "preset=paper\n"
)


def install(*extra: str) -> None:
    assert main(["install", "--no-autostart", *extra]) == 0


def test_installs_plugin_vendored_packages_kritarc_and_token(home: Home) -> None:
    install()
    plugin = home.pykrita / "mrflow_krita"
    assert (home.pykrita / "mrflow_krita.desktop").is_file()
    assert (plugin / "__init__.py").is_file() and (plugin / "deps.py").is_file()
    vendor = plugin / "vendor"
    for module in ("msgpack/__init__.py", "msgpack/fallback.py", "websockets/sync/client.py"):
        assert (vendor / module).is_file(), module
    assert (vendor / "mrflow_protocol" / "__init__.py").is_file()
    assert (vendor / "msgpack" / "LICENSE").is_file() and (
        vendor / "websockets" / "LICENSE"
    ).is_file()
    # Pure Python only: no compiled speedups built for another interpreter.
    assert not [p for p in vendor.rglob("*") if p.suffix in {".so", ".pyd", ".c", ".pyc"}]
    assert home.kritarc.read_text() == "[python]\nenable_mrflow_krita=true\n"
    token = paths.token_file()
    assert len(token.read_text().strip()) >= 32
    if os.name == "posix":
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert not home.autostart_entry.exists()
    if home.platform == "linux-flatpak":  # only the profile that exists is used
        assert not (home.root / ".local/share/krita").exists()


def test_the_vendored_copies_import_without_site_packages(home: Home) -> None:
    install()
    vendor = home.pykrita / "mrflow_krita" / "vendor"
    probe = (
        "import os, sys; os.environ['MSGPACK_PUREPYTHON'] = '1'; sys.path.insert(0, sys.argv[1]);"
        "import msgpack, msgpack.fallback, websockets.sync.client, mrflow_protocol;"
        "assert msgpack.Packer is msgpack.fallback.Packer;"
        "assert msgpack.unpackb(msgpack.packb({'a': b'x'})) == {'a': b'x'};"
        "print(websockets.__file__, mrflow_protocol.__file__)"
    )
    # -I -S: no site-packages, so the only copies that can be found are the vendored ones.
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(vendor)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.count(str(vendor)) == 2


def test_running_twice_changes_nothing(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    install()
    before = snapshot(home.root)
    capsys.readouterr()
    install()
    assert snapshot(home.root) == before  # same bytes and the same modification times
    assert "nothing changed" in capsys.readouterr().out


def test_upgrade_replaces_plugin_files_and_keeps_settings(home: Home) -> None:
    home.kritarc.parent.mkdir(parents=True, exist_ok=True)
    home.kritarc.write_text(KRITA_SETTINGS)
    install()
    token_before = paths.token_file().read_bytes()
    # Pretend the installed copy is an older version: a file with older content, and one
    # module the new version no longer has.
    installed_init = home.pykrita / "mrflow_krita" / "__init__.py"
    installed_init.write_text("# MrFlow 0.0.1\n")
    old_module = home.pykrita / "mrflow_krita" / "old_module.py"
    old_module.write_text("# gone in this version\n")
    manifest = InstallManifest.load()
    assert manifest is not None
    manifest.profiles[0].files["mrflow_krita/old_module.py"] = "0" * 64
    manifest.save()
    # The user changed a plugin setting in Krita since.
    settings = home.kritarc.read_text().replace("preset=paper", "preset=fast")
    home.kritarc.write_text(settings)

    install()
    source_init = package_dir("mrflow_krita") / "__init__.py"
    assert installed_init.read_bytes() == source_init.read_bytes()
    assert not old_module.exists()
    assert home.kritarc.read_text() == settings  # untouched, byte for byte
    assert paths.token_file().read_bytes() == token_before


def test_uninstall_removes_exactly_what_install_added(home: Home) -> None:
    # A Krita profile that was in use: settings, another plugin, unrelated resources.
    home.kritarc.parent.mkdir(parents=True, exist_ok=True)
    home.kritarc.write_text(KRITA_SETTINGS)
    other_plugin = home.pykrita / "other_plugin"
    other_plugin.mkdir(parents=True)
    (other_plugin / "__init__.py").write_text("x = 1\n")
    (home.pykrita / "other_plugin.desktop").write_text("[Desktop Entry]\n")
    before = snapshot(home.root)
    before_tree = tree(home.root)

    assert main(["install", "--autostart"]) == 0
    assert home.autostart_entry.is_file()
    assert "enable_mrflow_krita=true" in home.kritarc.read_text()
    # Krita imports the plugin, which leaves compiled caches behind.
    cache = home.pykrita / "mrflow_krita" / "__pycache__"
    cache.mkdir()
    (cache / "deps.cpython-310.pyc").write_bytes(b"\0")
    # ... and the plugin writes its log beside itself.
    (home.pykrita / "mrflow_krita" / "logs").mkdir()
    (home.pykrita / "mrflow_krita" / "logs" / "mrflow_krita.log").write_text("started\n")

    assert main(["uninstall"]) == 0
    assert tree(home.root) == before_tree
    assert {k: v[0] for k, v in snapshot(home.root).items()} == {k: v[0] for k, v in before.items()}


def test_uninstall_on_a_fresh_profile_leaves_an_empty_home(home: Home) -> None:
    before_tree = tree(home.root)
    assert main(["install", "--autostart"]) == 0
    assert main(["uninstall"]) == 0
    assert tree(home.root) == before_tree


def test_uninstall_keeps_a_kritarc_line_the_user_had_before(home: Home) -> None:
    home.kritarc.parent.mkdir(parents=True, exist_ok=True)
    home.kritarc.write_text("[python]\nenable_mrflow_krita=true\n")
    install()
    assert main(["uninstall"]) == 0
    assert home.kritarc.read_text() == "[python]\nenable_mrflow_krita=true\n"


def test_dry_run_prints_the_plan_and_changes_nothing(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    before_tree = tree(home.root)
    assert main(["install", "--dry-run", "--autostart"]) == 0
    out = capsys.readouterr().out
    assert "would copy the plugin into" in out and "new files" in out
    assert "would set [python] enable_mrflow_krita=true" in out
    assert "would start the daemon at login" in out
    assert tree(home.root) == before_tree


def test_krita_dir_overrides_detection(home: Home, tmp_path: Path) -> None:
    custom = tmp_path / "portable-krita" / "pykrita"
    install("--krita-dir", str(custom))
    assert (custom / "mrflow_krita.desktop").is_file()
    assert not home.pykrita.exists()


def test_autostart_entry_runs_this_python(home: Home) -> None:
    assert main(["install", "--autostart"]) == 0
    content = home.autostart_entry.read_bytes()
    if home.platform == "macos":
        agent = plistlib.loads(content)
        assert agent["ProgramArguments"] == [sys.executable, "-m", "mrflow_daemon.cli", "serve"]
        assert agent["RunAtLoad"] is True
        assert Path(agent["StandardErrorPath"]).parent.is_dir()  # launchd does not make it
    elif home.platform == "windows":
        assert content.endswith(b"-m mrflow_daemon.cli serve\r\n")
        assert b"\r\nchcp 65001 >nul\r\nstart " in content  # UTF-8 before the path
    else:
        exec_line = next(line for line in content.decode().splitlines() if line.startswith("Exec="))
        assert shlex.split(exec_line.removeprefix("Exec=")) == [
            sys.executable,
            "-m",
            "mrflow_daemon.cli",
            "serve",
        ]
    # --no-autostart takes it away again.
    install()
    assert not home.autostart_entry.exists()


def test_a_failed_install_records_what_it_did_so_uninstall_removes_it(
    home: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mrflow_installer.commands.install as command
    from mrflow_installer.install import uninstall

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where Krita's folder should be")
    good = platforms.KritaProfile("native", home.pykrita.parent, home.kritarc)
    bad = platforms.KritaProfile("other", blocked / "krita", tmp_path / "other-kritarc")
    monkeypatch.setattr(command, "target_profiles", lambda _dir: [good, bad])
    assert main(["install", "--no-autostart"]) == 1
    err = capsys.readouterr().err
    assert "Done before the error" in err and str(home.pykrita) in err
    manifest = InstallManifest.load()
    assert manifest is not None and [p.label for p in manifest.profiles] == ["native", "other"]
    assert (home.pykrita / "mrflow_krita.desktop").is_file()
    uninstall()
    assert not (home.pykrita / "mrflow_krita.desktop").exists()
    assert "enable_mrflow_krita" not in (home.kritarc.read_text() if home.kritarc.is_file() else "")


def test_autostart_is_rewritten_when_it_starts_another_python(home: Home) -> None:
    home.autostart_entry.parent.mkdir(parents=True, exist_ok=True)
    home.autostart_entry.write_bytes(b"an entry written by an install from another venv\n")
    assert main(["install", "--autostart"]) == 0
    assert sys.executable.encode() in home.autostart_entry.read_bytes()


def test_an_install_keeps_the_trays_login_entry(home: Home) -> None:
    from mrflow_installer import autostart

    install()
    autostart.enable("tray")  # "Start at login" in the tray: the tray starts the daemon
    tray_entry = home.autostart_entry.read_bytes()
    assert main(["install", "--autostart"]) == 0
    assert home.autostart_entry.read_bytes() == tray_entry


@pytest.mark.parametrize(("enabled", "answer", "kept"), [(True, "", True), (False, "", False)])
def test_pressing_enter_at_the_autostart_question_keeps_the_current_state(
    home: Home, monkeypatch: pytest.MonkeyPatch, enabled: bool, answer: str, kept: bool
) -> None:
    assert main(["install", "--autostart" if enabled else "--no-autostart"]) == 0
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: answer)
    assert main(["install"]) == 0
    assert home.autostart_entry.is_file() is kept


def test_an_unreadable_install_record_is_a_clear_error(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    from mrflow_installer.manifest import manifest_path

    install()
    manifest_path().write_text('{"format": 1, "profiles": [{"surprise": true}]}')
    assert main(["install", "--no-autostart"]) == 1
    assert "cannot be read" in capsys.readouterr().err


def test_uninstall_removes_a_login_entry_the_tray_made(home: Home) -> None:
    from mrflow_installer import autostart

    install()
    autostart.enable("serve")  # the tray's "Start at login", after the install
    assert home.autostart_entry.is_file()
    assert main(["uninstall"]) == 0
    assert not home.autostart_entry.exists()


def test_a_windows_login_entry_keeps_non_ascii_and_percent_signs() -> None:
    from mrflow_installer import autostart

    python = "C:\\Users\\José\\100% env\\pythonw.exe"
    content = autostart.entry_content([python, "-m", "mrflow_daemon.cli", "serve"], "windows")
    assert '"C:\\Users\\José\\100%% env\\pythonw.exe"'.encode() in content
