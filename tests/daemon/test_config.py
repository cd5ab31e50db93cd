"""Daemon settings: file < environment < flags, clear errors, the token file and the origin policy."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from mrflow_daemon import paths
from mrflow_daemon.commands import serve
from mrflow_daemon.server.auth import ensure_token, origin_allowed, token_matches
from mrflow_daemon.server.config import ConfigError, load_config
from mrflow_protocol.version import DEFAULT_PORT


def test_defaults_are_loopback_on_the_documented_port() -> None:
    config = load_config(environ={})
    assert (config.host, config.port) == ("127.0.0.1", DEFAULT_PORT)
    assert config.allow_remote is False and config.allowed_origins == []
    assert config.token_path == paths.token_file()


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    config_file = tmp_path / "daemon.toml"
    config_file.write_text(
        '[daemon]\nport = 1111\nmodel = "from-file"\nallowed_origins = ["http://a"]\n'
        "max_queued_jobs = 3\n"
    )
    environ = {"MRFLOW_PORT": "2222", "MRFLOW_OFFLOAD": "yes"}
    config = load_config(config_file, environ, {"port": 3333, "model": None})
    assert config.port == 3333  # flag beats environment
    assert config.offload is True  # environment beats default
    assert config.model == "from-file"  # a flag that was not given does not override
    assert config.allowed_origins == ["http://a"]
    assert config.max_queued_jobs == 3
    assert config.limits().max_queued_jobs == 3


def test_a_private_daemon_reads_no_config_file(tmp_path: Path) -> None:
    config_file = tmp_path / "daemon.toml"
    config_file.write_text('port = "not a port"\n')
    with pytest.raises(ConfigError, match="port"):
        load_config(config_file, environ={})
    assert (
        load_config(config_file, environ={}, read_file=False).port
        == load_config(tmp_path / "none.toml", environ={}).port
    )


def test_environment_lists_are_comma_separated() -> None:
    config = load_config(environ={"MRFLOW_ALLOWED_ORIGINS": "http://a, http://b"})
    assert config.allowed_origins == ["http://a", "http://b"]


@pytest.mark.parametrize(
    ("toml", "environ", "expected"),
    [
        ("port = 'x'\n", {}, "port from config file .* must be an integer, got 'x'"),
        ("colour = 1\n", {}, "unknown setting 'colour'; allowed: host, port"),
        ("port = [\n", {}, "not valid TOML"),
        ("", {"MRFLOW_PORT": "ninety"}, r"port from \$MRFLOW_PORT must be an integer"),
        ("", {"MRFLOW_OFFLOAD": "maybe"}, "offload .* must be true or false"),
        ("", {"MRFLOW_PORT": "70000"}, "port must be 0-65535"),
        ("", {"MRFLOW_PREVIEW_FORMAT": "gif"}, "preview_format must be one of jpeg, webp, png"),
        ("", {"MRFLOW_MAX_STEPS": "0"}, "max_steps must be at least 1"),
        ("", {"MRFLOW_MODEL": "/m" * 150}, "model must be 1-256 characters .*got 300"),
        ("", {"MRFLOW_DEVICE": "gpu"}, "device must be cpu, cuda, cuda:N or mps .*'gpu'"),
        ("", {"MRFLOW_DTYPE": "int8"}, "dtype must be one of bfloat16, .*'int8'"),
    ],
)
def test_bad_values_name_the_setting(
    tmp_path: Path, toml: str, environ: dict[str, str], expected: str
) -> None:
    config_file = tmp_path / "daemon.toml"
    config_file.write_text(toml)
    with pytest.raises(ConfigError, match=expected):
        load_config(config_file, environ)


def test_non_loopback_host_needs_allow_remote() -> None:
    with pytest.raises(ConfigError, match="--allow-remote"):
        load_config(environ={"MRFLOW_HOST": "0.0.0.0"})
    config = load_config(environ={"MRFLOW_HOST": "0.0.0.0", "MRFLOW_ALLOW_REMOTE": "1"})
    assert config.host == "0.0.0.0" and not config.is_loopback


def test_serve_help_documents_every_setting_file_and_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mrflow_daemon.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    for flag in ("--host", "--port", "--allow-remote", "--allow-origin", "--model", "--offload"):
        assert flag in text
    assert "MRFLOW_MAX_QUEUED_JOBS" in text and "MRFLOW_TOKEN_FILE" in text
    assert str(paths.config_file()) in text


def test_serve_flags_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from mrflow_daemon.cli import build_parser

    args = build_parser().parse_args(
        [
            "serve",
            "--port",
            "5000",
            "--no-offload",
            "--allow-origin",
            "http://x",
            "--allow-origin",
            "http://y",
        ]
    )
    seen = {}
    monkeypatch.setattr(
        "mrflow_daemon.server.app.run_server", lambda config: seen.setdefault("c", config) and 0
    )
    assert serve.run(args) == 0
    config = seen["c"]
    assert config.port == 5000 and config.offload is False
    assert config.allowed_origins == ["http://x", "http://y"]


def test_serve_refuses_a_missing_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mrflow_daemon.cli import main

    assert main(["serve", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_token_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "config" / "token"
    token = ensure_token(path)
    assert len(token) >= 40
    if sys.platform != "win32":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token(path) == token


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_loose_token_permissions_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("secret\n")
    os.chmod(path, 0o644)
    assert ensure_token(path) == "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_token_comparison() -> None:
    assert token_matches("abc", "abc")
    assert not token_matches("abd", "abc")
    assert not token_matches(None, "abc")
    assert not token_matches(b"abc", "abc")


def test_origin_policy() -> None:
    assert origin_allowed(None, [])  # not a browser
    assert not origin_allowed("https://evil.example", [])
    assert origin_allowed("http://localhost:3000", ["http://localhost:3000/"])
    assert not origin_allowed("http://localhost:3001", ["http://localhost:3000"])
    assert origin_allowed("https://anything", ["*"])


def test_logging_goes_to_a_rotating_file_and_can_be_configured_twice(tmp_path: Path) -> None:
    import logging
    import logging.handlers

    from mrflow_daemon.server.logs import configure_logging

    log_file = tmp_path / "logs" / "daemon.log"
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        configure_logging("info", log_file, console=False)
        configure_logging("info", log_file, console=True)  # replaces, never duplicates
        ours = [h for h in root.handlers if h not in before]
        assert sorted(type(h).__name__ for h in ours) == ["RotatingFileHandler", "StreamHandler"]
        logging.getLogger("mrflow_daemon.test").info("hello from the test")
        for handler in ours:
            handler.flush()
        assert "hello from the test" in log_file.read_text()
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
            handler.close()


def test_the_dtype_names_allowed_are_the_engines() -> None:
    from mrflow_daemon.engine.pipeline import DTYPES
    from mrflow_daemon.server.config import DTYPE_NAMES

    assert set(DTYPE_NAMES) == set(DTYPES)
