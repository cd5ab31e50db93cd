"""The `mrflow` command line: one entry point, one module per subcommand.

Each subcommand lives in its own module with two functions:

    def add_arguments(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> int

Each module defers its heavy imports (torch, diffusers, Qt) to `run()`, so `mrflow --help`
stays fast and one subcommand's imports cost nothing to the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mrflow_daemon import __version__

# name -> (module, one-line help). Order is the order `mrflow --help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "mrflow_daemon.commands.demo",
        "start a daemon and generate one image on the built-in model",
    ),
    "generate": (
        "mrflow_daemon.commands.generate",
        "generate an image with MrFlow staged sampling",
    ),
    "presets": ("mrflow_daemon.commands.presets", "list the sampling presets"),
    "bench": ("mrflow_daemon.commands.bench", "time native against MrFlow, per stage"),
    "make-tiny-model": (
        "mrflow_daemon.commands.make_tiny_model",
        "write a tiny random pipeline in diffusers format",
    ),
    "train-builtin": (
        "mrflow_daemon.commands.train_builtin",
        "train the built-in shapes model (VAE, transformer, upscaler)",
    ),
    "eval": (
        "mrflow_daemon.commands.eval",
        "quality benchmark: shape checker pass rates, native against MrFlow presets",
    ),
    "serve": ("mrflow_daemon.commands.serve", "run the local daemon (websockets + msgpack)"),
    "client": ("mrflow_daemon.commands.client", "a headless reference client of the daemon"),
    "models": ("mrflow_daemon.commands.models", "list, download, verify and remove models"),
    "tray": ("mrflow_daemon.commands.tray", "a tray icon that controls the daemon"),
    "install": (
        "mrflow_installer.commands.install",
        "install the Krita plugin and set up the daemon",
    ),
    "uninstall": ("mrflow_installer.commands.uninstall", "remove what `mrflow install` added"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrflow",
        description="MrFlow: fast staged diffusion generation for painting tools.",
    )
    parser.add_argument("--version", action="version", version=f"mrflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # this subcommand is not built yet
            raise
        command_parser = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
