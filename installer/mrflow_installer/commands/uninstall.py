"""Remove what `mrflow install` added: the plugin files, the kritarc line, the login entry.

Your downloaded models, your daemon settings and your Krita settings stay; `mrflow models
remove NAME` deletes a model.
"""

from __future__ import annotations

import argparse
import sys

from mrflow_daemon import paths

from mrflow_installer.install import uninstall


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print what would be removed")


def run(args: argparse.Namespace) -> int:
    try:
        report = uninstall(dry_run=args.dry_run)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not report.changed:
        print("MrFlow is not installed (no install record found); nothing to remove.")
        return 0
    for line in report.actions:
        print(f"  {line}")
    print(f"Models in {paths.models_dir()} were kept: `mrflow models remove NAME` deletes one.")
    return 0
