"""One module per `mrflow` subcommand; see mrflow_daemon.cli."""
