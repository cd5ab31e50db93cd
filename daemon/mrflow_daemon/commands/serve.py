"""Run the MrFlow daemon: a websockets + msgpack server in front of one GPU worker.

It listens on 127.0.0.1 by default, requires the per-user token from the
token file in every client's hello, refuses browser origins that are not
allowed, and loads models on first use. Stop it with Ctrl+C, SIGTERM or an
admin `shutdown` message; the running job is cancelled between steps.

Every setting comes, in rising priority, from its default, the config file,
its MRFLOW_* environment variable and its flag below.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from mrflow_daemon import paths
from mrflow_daemon.server.config import (
    ConfigError,
    DaemonConfig,
    describe_settings,
    load_config,
    setting_default,
)

# Flags whose dashed setting name would read badly.
_FLAG_NAMES = {"allowed_origins": "--allow-origin"}


def flag_name(setting: str) -> str:
    return _FLAG_NAMES.get(setting, "--" + setting.replace("_", "-"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"TOML config file (default: {paths.config_file()})",
    )
    for f in dataclasses.fields(DaemonConfig):
        default = setting_default(f)
        shown = "" if default in ("", []) else f", default {default!r}"
        help_text = f.metadata["help"] + f"  [env MRFLOW_{f.name.upper()}{shown}]"
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, list):
            kwargs.update(action="append", metavar="ORIGIN")
        else:
            kwargs["type"] = type(default)
            last_word = f.name.split("_")[-1]
            kwargs["metavar"] = "SECONDS" if last_word == "s" else last_word.upper()
            if f.metadata["choices"]:
                kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(flag_name(f.name), **kwargs)
    parser.epilog = (
        f"config file: {paths.config_file()}\n"
        "  (TOML; keys are the setting names below, at the top level or in a [daemon] table;\n"
        "   set MRFLOW_HOME to keep every MrFlow folder under one directory)\n"
        f"token file:  {paths.token_file()}  (created with mode 0600 on first start)\n"
        f"log file:    {paths.log_dir() / 'daemon.log'}  (rotated)\n\n"
        "settings (TOML key, environment variable, meaning):\n" + describe_settings()
    )


def run(args: argparse.Namespace) -> int:
    if args.config is not None and not args.config.is_file():
        print(f"mrflow serve: config file {args.config} does not exist", file=sys.stderr)
        return 2
    overrides = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(DaemonConfig)}
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"mrflow serve: {exc}", file=sys.stderr)
        return 2

    from mrflow_daemon.server.app import run_server

    return run_server(config)
