"""Registration with Krita: the docker, the three actions, and a docker that explains
what is missing instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_krita import Krita, Selection, Window
from mrflow_krita import deps, log, plugin
from mrflow_krita.qt import QtWidgets


@pytest.fixture(autouse=True)
def _quiet_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The plugin logs into its own folder; in tests that folder is the source tree.
    monkeypatch.setattr(log, "_candidates", lambda: [tmp_path / "logs"])
    monkeypatch.setattr(log, "_log_file", None)


@pytest.fixture(scope="module")
def app() -> QtWidgets.QApplication:
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def test_register_adds_the_docker_and_three_actions(krita: Krita) -> None:
    plugin.register()
    (factory,) = krita.dock_factories
    assert factory.docker_id == "mrflow_docker"
    (extension,) = krita.extensions
    window = Window()
    extension.createActions(window)
    assert sorted(window.actions) == [
        "mrflow_fill_canvas",
        "mrflow_fill_selection",
        "mrflow_refine",
    ]
    assert window.actions["mrflow_fill_selection"].text == "MrFlow: Fill selection"
    assert log.log_file() is not None and log.log_file().is_file()


def test_a_docker_with_missing_files_explains_the_fix(
    app: QtWidgets.QApplication, krita: Krita, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deps, "REQUIRED", ("websockets.sync.client", "mrflow_missing_dependency"))
    docker = plugin.MrFlowDocker()
    text = docker.widget().findChild(QtWidgets.QLabel).text()
    assert docker.windowTitle() == "MrFlow"
    assert "mrflow_missing_dependency" in text and "mrflow install" in text


def test_the_actions_run_jobs_through_the_shared_runtime(
    app: QtWidgets.QApplication, krita: Krita
) -> None:
    from mrflow_krita.runtime import Runtime

    krita.writeSetting("mrflow", "daemon_url", "ws://127.0.0.1:9")  # nothing listens there
    plugin.register()
    window = Window()
    krita.extensions[0].createActions(window)
    runtime = Runtime.get()
    try:
        sent: list[object] = []
        runtime.controller._send = sent.append
        runtime.controller.connection_changed("connected")
        runtime.params.prompt = "a boat"
        document = krita.createDocument(64, 64, "doc", "RGBA", "U8", "", 72.0)
        selection = Selection()
        selection.select(8, 8, 16, 16, 255)
        document.setSelection(selection)
        window.actions["mrflow_refine"].trigger()
        (request,) = sent
        assert request.mode == "img2img" and request.prompt == "a boat"  # type: ignore[attr-defined]
        krita.notifier().applicationClosing.emit()  # Krita closes: the runtime stops
        assert Runtime._instance is None
    finally:
        Runtime.shutdown_if_running()


def test_the_missing_panel_needs_nothing_that_may_be_missing() -> None:
    """What explains a broken install (no vendored packages, a Python too old for them) must
    not import those packages itself."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('mrflow_protocol', 'msgpack', 'websockets'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from mrflow_krita.qt import QtWidgets\n"
        "app = QtWidgets.QApplication([])\n"
        "from mrflow_krita.missing import MissingPanel\n"
        "panel = MissingPanel('Krita runs Python 3.8')\n"
        "print('shown')\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "shown", result.stderr
