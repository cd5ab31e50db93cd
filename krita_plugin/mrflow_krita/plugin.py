"""Registers MrFlow with Krita: the docker (Settings > Dockers > MrFlow) and three actions.

Imported by the package's `__init__` only when running inside Krita. If the plugin's own
files are incomplete, the docker explains what is missing instead of failing to load.
"""

from __future__ import annotations

import logging
from typing import Any

from mrflow_krita import deps
from mrflow_krita.krita_adapter import (
    DockWidget,
    Extension,
    on_application_closing,
    register_docker,
    register_extension,
)
from mrflow_krita.log import setup_logging
from mrflow_krita.qt import QtWidgets

log = logging.getLogger(__name__)

DOCKER_ID = "mrflow_docker"
ACTIONS = (
    ("mrflow_fill_canvas", "MrFlow: Fill canvas", "fill_canvas"),
    ("mrflow_fill_selection", "MrFlow: Fill selection", "fill_selection"),
    ("mrflow_refine", "MrFlow: Refine", "refine"),
)
"""Krita action id, menu text, JobKind value. Shortcuts: Settings > Configure Krita > Keyboard Shortcuts."""

MENU = "tools/scripts"


def _missing() -> str:
    found = deps.problems()
    return deps.explain(found) if found else ""


class MrFlowExtension(Extension):  # type: ignore[misc]
    def setup(self) -> None:
        pass

    def createActions(self, window: Any) -> None:
        for action_id, text, kind in ACTIONS:
            action = window.createAction(action_id, text, MENU)
            action.triggered.connect(lambda _checked=False, kind=kind: self._run(kind))

    def _run(self, kind_value: str) -> None:
        problem = _missing()
        if problem:
            QtWidgets.QMessageBox.warning(None, "MrFlow", problem)
            return
        from mrflow_krita.jobs import JobKind
        from mrflow_krita.runtime import Runtime

        Runtime.get().start(JobKind(kind_value))


class MrFlowDocker(DockWidget):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("MrFlow")
        problem = _missing()
        if problem:
            from mrflow_krita.missing import MissingPanel

            log.error("%s", problem)
            self.setWidget(MissingPanel(problem))
            return
        try:
            from mrflow_krita.panel import MrFlowPanel
            from mrflow_krita.runtime import Runtime

            self.setWidget(MrFlowPanel(Runtime.get()))
        except Exception as error:  # show it in the docker, keep Krita running
            log.exception("the MrFlow docker failed to start")
            from mrflow_krita.missing import MissingPanel

            self.setWidget(
                MissingPanel(f"MrFlow failed to start: {error}\nDetails are in the plugin log.")
            )

    def canvasChanged(self, canvas: Any) -> None:
        widget = self.widget()
        if hasattr(widget, "refresh"):
            widget.refresh()


def register() -> None:
    path = setup_logging()
    deps.use_vendored_packages()
    log.info("MrFlow plugin loading (log file %s)", path)
    register_extension(MrFlowExtension)
    register_docker(DOCKER_ID, MrFlowDocker)
    on_application_closing(_closing)


def _closing() -> None:
    if not _missing():
        from mrflow_krita.runtime import Runtime

        Runtime.shutdown_if_running()
