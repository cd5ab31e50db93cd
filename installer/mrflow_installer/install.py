"""`install()` and `uninstall()`: put the plugin into Krita, and take exactly that out again.

Every write is skipped when the file already holds the same bytes, so installing twice changes
nothing (not even a modification time), and an upgrade rewrites only the files that changed,
deletes the ones the new version no longer has, and leaves the user's settings (kritarc's
[mrflow] group, the token, the daemon config) alone. Folders the installer had to create are
recorded too, and removed again by `uninstall` when nothing else has been put in them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mrflow_daemon import __version__, paths

from mrflow_installer import autostart, kritarc
from mrflow_installer.manifest import InstallManifest, ProfileRecord, manifest_path
from mrflow_installer.payload import PLUGIN, RUNTIME_DIRS, PayloadFile, payload
from mrflow_installer.platforms import KritaProfile


@dataclass
class Report:
    """What was (or, in a dry run, would be) done, one line each."""

    dry_run: bool = False
    actions: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.actions.append(("would " + text) if self.dry_run else text)

    @property
    def changed(self) -> bool:
        return bool(self.actions)


class InstallError(OSError):
    """An install that failed part way: `done` lists what it had already changed (recorded in
    the install manifest, so `mrflow uninstall` removes it)."""

    def __init__(self, cause: OSError, done: list[str]) -> None:
        super().__init__(str(cause))
        self.done = list(done)


@dataclass
class _Run:
    """One install or uninstall: its report and the manifest it updates."""

    report: Report
    manifest: InstallManifest

    @property
    def dry_run(self) -> bool:
        return self.report.dry_run

    def make_dirs(self, folder: Path) -> None:
        """Create `folder` and its missing parents, remembering each one created."""
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            if not self.dry_run:
                path.mkdir()
                if str(path) not in self.manifest.created_dirs:
                    self.manifest.created_dirs.append(str(path))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.mrflow-tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _install_files(
    run: _Run, profile: KritaProfile, files: list[PayloadFile], record: ProfileRecord
) -> None:
    wanted: dict[str, bytes] = {str(f.relative): f.read() for f in files}
    new = replaced = 0
    for relative, data in wanted.items():
        target = profile.pykrita_dir / relative
        record.files[relative] = _sha256(data)
        if target.is_file() and target.read_bytes() == data:
            continue
        if target.exists():
            replaced += 1
        else:
            new += 1
        if not run.dry_run:
            run.make_dirs(target.parent)
            _write_atomic(target, data)
    if new or replaced:
        run.report.add(
            f"copy the plugin into {profile.pykrita_dir} ({new} new files, {replaced} updated)"
        )
    # Files an earlier version installed that this one no longer has.
    stale = sorted(set(record.files) - set(wanted))
    for relative in stale:
        _remove_file(profile.pykrita_dir / relative, run.dry_run)
        del record.files[relative]
    if stale:
        run.report.add(
            f"remove {len(stale)} files the new version no longer has: {', '.join(stale)}"
        )


def _remove_file(path: Path, dry_run: bool) -> bool:
    existed = path.is_file()
    if dry_run:
        return existed
    if existed:
        path.unlink()
    # Python's compiled copies of it, made when Krita imported the module.
    cache = path.parent / "__pycache__"
    if path.suffix == ".py" and cache.is_dir():
        for compiled in cache.glob(f"{path.stem}.*.pyc"):
            compiled.unlink()
    return existed


def _enable_in_kritarc(run: _Run, profile: KritaProfile, record: ProfileRecord) -> None:
    exists = profile.kritarc.is_file()
    text = profile.kritarc.read_bytes().decode("utf-8", "surrogateescape") if exists else ""
    edit = kritarc.enable(text, PLUGIN)
    if edit.text == text and exists:
        return
    run.report.add(f"set [python] {kritarc.enable_key(PLUGIN)}=true in {profile.kritarc}")
    if run.dry_run:
        return
    record.kritarc_added_line = record.kritarc_added_line or edit.added_line
    record.kritarc_added_group = record.kritarc_added_group or edit.added_group
    record.kritarc_created = record.kritarc_created or not exists
    run.make_dirs(profile.kritarc.parent)
    _write_atomic(profile.kritarc, edit.text.encode("utf-8", "surrogateescape"))


def _ensure_token(run: _Run) -> None:
    token = paths.token_file()
    if token.is_file():
        return
    run.report.add(f"create the daemon token {token} (readable by you only)")
    if not run.dry_run:
        from mrflow_daemon.server.auth import ensure_token

        run.make_dirs(token.parent)
        ensure_token(token)
        run.manifest.token = str(token)


def _set_autostart(run: _Run, start_at_login: bool | None) -> None:
    entry = autostart.entry_path()
    ours = {autostart.entry_content(autostart.command(sub)) for sub in ("serve", "tray")}
    if start_at_login is True and not (entry.is_file() and entry.read_bytes() in ours):
        # Also when an entry is there but starts another Python (an install from another venv);
        # one of this Python's (the daemon, or the tray's "Start at login") is kept as it is.
        run.report.add(f"start the daemon at login ({entry})")
        if not run.dry_run:
            run.make_dirs(entry.parent)
            if autostart.writes_logs():
                run.make_dirs(paths.log_dir())  # recorded, so uninstall removes it if empty
            autostart.enable("serve")
    elif start_at_login is False and entry.is_file():
        run.report.add(f"stop starting the daemon at login (remove {entry})")
        if not run.dry_run:
            autostart.disable()
    if not run.dry_run and start_at_login is not None:
        run.manifest.autostart = str(entry) if start_at_login else None


def install(
    profiles: list[KritaProfile], *, start_at_login: bool | None = None, dry_run: bool = False
) -> Report:
    """Install into each profile. `start_at_login`: True/False sets it, None leaves it as it is."""
    run = _Run(Report(dry_run=dry_run), InstallManifest.load() or InstallManifest(__version__))
    run.manifest.version = __version__
    files = payload()
    try:
        for profile in profiles:
            record = run.manifest.profile(profile.pykrita_dir)
            if record is None:
                record = ProfileRecord(
                    profile.label, str(profile.pykrita_dir), str(profile.kritarc)
                )
                if not dry_run:
                    run.manifest.profiles.append(record)
            _install_files(run, profile, files, record)
            _enable_in_kritarc(run, profile, record)
        _ensure_token(run)
        _set_autostart(run, start_at_login)
    except OSError as exc:
        # Record what was done before the failure, so `mrflow uninstall` can take it out again.
        raise InstallError(exc, run.report.actions) from exc
    finally:
        if not dry_run:
            run.make_dirs(manifest_path().parent)
            run.manifest.save()
    return run.report


def uninstall(*, dry_run: bool = False) -> Report:
    """Remove what the manifest lists; leave everything else (models, settings) alone."""
    manifest = InstallManifest.load()
    report = Report(dry_run=dry_run)
    if manifest is None:
        return report
    for record in manifest.profiles:
        pykrita = Path(record.pykrita)
        removed = sum(_remove_file(pykrita / relative, dry_run) for relative in record.files)
        if removed:
            report.add(f"remove the plugin's {removed} files from {pykrita}")
        for relative in RUNTIME_DIRS:
            folder = pykrita / relative
            if folder.is_dir() and str(pykrita / PLUGIN) in manifest.created_dirs:
                report.add(f"remove the plugin's own {folder}")
                if not dry_run:
                    shutil.rmtree(folder)
        _disable_in_kritarc(record, report)
    # The login entry, whoever made it (the installer, or the tray's "Start at login"): it
    # starts this MrFlow, which is going away.
    entry = autostart.entry_path()
    if entry.is_file() and b"mrflow_daemon.cli" in entry.read_bytes():
        report.add(f"remove the login entry {entry}")
        if not dry_run:
            entry.unlink()
    if manifest.token and Path(manifest.token).is_file():
        report.add(f"remove the daemon token {manifest.token}")
        if not dry_run:
            Path(manifest.token).unlink()
    report.add(f"remove the install record {manifest_path()}")
    if not dry_run:
        manifest_path().unlink()
    # Deepest first, so a folder's subfolders are gone before it is tried.
    for folder in sorted(
        map(Path, manifest.created_dirs), key=lambda p: len(p.parts), reverse=True
    ):
        _remove_dir_if_empty(folder, dry_run)
    return report


def _disable_in_kritarc(record: ProfileRecord, report: Report) -> None:
    path = Path(record.kritarc)
    if not record.kritarc_added_line or not path.is_file():
        return
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    new_text = kritarc.remove(text, PLUGIN, remove_empty_group=record.kritarc_added_group)
    if record.kritarc_created and not new_text.strip():
        report.add(f"remove {path} (the installer created it)")
        if not report.dry_run:
            path.unlink()
        return
    if new_text != text:
        report.add(f"remove [python] {kritarc.enable_key(PLUGIN)} from {path}")
        if not report.dry_run:
            _write_atomic(path, new_text.encode("utf-8", "surrogateescape"))


def _remove_dir_if_empty(folder: Path, dry_run: bool) -> None:
    if dry_run or not folder.is_dir():
        return
    cache = folder / "__pycache__"
    if cache.is_dir() and folder.name != "__pycache__":
        shutil.rmtree(cache)  # compiled copies of our modules, made when Krita imported them
    if not any(folder.iterdir()):
        folder.rmdir()
