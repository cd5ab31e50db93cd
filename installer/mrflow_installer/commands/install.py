"""Install the MrFlow plugin into Krita and set up the daemon.

Copies the plugin (with pure-Python copies of its dependencies) into Krita's pykrita folder,
enables it in kritarc, creates the daemon's token, and, if you want, starts the daemon when
you log in. Running it again changes nothing; after an upgrade it updates the plugin and keeps
your settings. `mrflow uninstall` removes exactly what it added.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mrflow_installer import autostart
from mrflow_installer.install import InstallError, install
from mrflow_installer.payload import PayloadError, vendored_versions
from mrflow_installer.platforms import known_profiles, target_profiles


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--krita-dir",
        type=Path,
        metavar="DIR",
        help="Krita's resource folder (the one holding pykrita/), instead of detecting it",
    )
    login = parser.add_mutually_exclusive_group()
    login.add_argument(
        "--autostart",
        dest="autostart",
        action="store_true",
        default=None,
        help="start the daemon when you log in",
    )
    login.add_argument(
        "--no-autostart",
        dest="autostart",
        action="store_false",
        help="do not start the daemon at login (and remove the entry if there is one)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would change; change nothing"
    )


def _ask_autostart() -> bool | None:
    """Ask, with the current state as the default (Enter keeps it)."""
    if not sys.stdin.isatty():
        return None  # not asked, not changed
    current = autostart.is_enabled()
    choices = "[Y/n]" if current else "[y/N]"
    answer = input(f"Start the MrFlow daemon when you log in? {choices} ").strip().lower()
    if not answer:
        return None  # keep whatever is there (the daemon's entry or the tray's)
    return answer in {"y", "yes"}


def run(args: argparse.Namespace) -> int:
    profiles = target_profiles(args.krita_dir)
    start_at_login = args.autostart
    if start_at_login is None and not args.dry_run:
        start_at_login = _ask_autostart()
    try:
        report = install(profiles, start_at_login=start_at_login, dry_run=args.dry_run)
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.done:
            print("Done before the error (`mrflow uninstall` takes it out again):", file=sys.stderr)
            for line in exc.done:
                print(f"  {line}", file=sys.stderr)
        return 1
    except (PayloadError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # an install record this version cannot read
        print(f"error: {exc}; move it away and run `mrflow install` again", file=sys.stderr)
        return 1
    for profile in profiles:
        print(f"Krita profile ({profile.label}): {profile.pykrita_dir}")
    for line in report.actions:
        print(f"  {line}")
    if not report.changed:
        print("  everything is already in place; nothing changed")
    elif not args.dry_run:
        print("Done. Restart Krita, then open Settings > Dockers > MrFlow.")
    if report.changed:
        # The copies run on Krita's own Python, which may be older than this one.
        needs = ", ".join(
            f"{name} {version} (Python {python})"
            for name, (version, python) in vendored_versions().items()
        )
        print(f"{'Would copy' if args.dry_run else 'Copied'} for Krita's Python: {needs}.")
    if args.krita_dir is None and len(profiles) == 1:
        others = [p for p in known_profiles() if p.pykrita_dir != profiles[0].pykrita_dir]
        for other in others:
            print(f"(Not installed for Krita's {other.label} profile: it has not been used here.)")
    return 0
