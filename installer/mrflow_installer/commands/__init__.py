"""The installer's `mrflow` subcommands (see mrflow_daemon.cli)."""
