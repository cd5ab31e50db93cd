"""Settings persistence and the token file's default place (which must match the daemon's)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mrflow_daemon import paths
from mrflow_krita import deps
from mrflow_krita.settings import (
    MemoryStore,
    Settings,
    default_token_file,
    load_settings,
    save_settings,
)


def test_token_file_default_matches_the_daemon_with_mrflow_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MRFLOW_HOME", str(tmp_path))
    assert default_token_file() == paths.token_file() == tmp_path / "config" / "token"


@pytest.mark.parametrize("xdg", ["", "/tmp/somewhere/config"])
def test_token_file_default_matches_the_daemon_per_platform(
    xdg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MRFLOW_HOME", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", xdg)
    assert default_token_file() == paths.token_file()


@pytest.mark.skipif(sys.platform != "linux", reason="Flatpak is Linux only")
def test_flatpak_krita_looks_for_the_token_where_the_daemon_outside_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MRFLOW_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    daemon_side = paths.token_file()  # the daemon, outside the sandbox
    monkeypatch.setenv("FLATPAK_ID", "org.kde.krita")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".var/app/org.kde.krita/config"))
    assert default_token_file() == daemon_side == tmp_path / ".config" / "mrflow" / "token"


def test_settings_round_trip_and_bad_values_keep_defaults() -> None:
    store = MemoryStore()
    wanted = Settings(
        daemon_url="ws://127.0.0.1:1234",
        token_file="~/t",
        preset="turbo",
        strength=0.35,
        guidance=1.0,
        max_side=768,
    )
    save_settings(store, wanted)
    assert load_settings(store) == wanted
    store.write("strength", "lots")
    store.write("max_side", "")
    loaded = load_settings(store)
    assert loaded.strength == Settings().strength and loaded.max_side == Settings().max_side
    assert loaded.preset == "turbo"


def test_token_is_read_from_the_configured_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    assert Settings(token_file=str(token)).read_token() is None  # not there yet: no crash
    token.write_text("abc123\n")
    assert Settings(token_file=str(token)).read_token() == "abc123"


def test_missing_dependencies_are_named_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deps, "REQUIRED", ("msgpack", "surely_not_installed_module"))
    found = deps.problems()
    assert [problem.module for problem in found] == ["surely_not_installed_module"]
    text = deps.explain(found)
    assert (
        "surely_not_installed_module" in text
        and "mrflow install" in text
        and str(deps.VENDOR_DIR) in text
    )


def test_a_krita_python_older_than_the_plugin_needs_is_named() -> None:
    found = deps.problems((3, 8))
    text = deps.explain(found)
    assert "Python 3.8" in text and "3.10 or newer" in text and "Krita 5.2" in text
    assert "files are missing" not in text  # reinstalling would not help
    assert deps.problems() == []  # this Python is new enough and has everything


def test_vendored_packages_go_first_on_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setattr(deps, "VENDOR_DIR", tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("MSGPACK_PUREPYTHON", raising=False)
    deps.use_vendored_packages()
    assert sys.path[0] == str(tmp_path)
    import os

    assert os.environ["MSGPACK_PUREPYTHON"] == "1"
