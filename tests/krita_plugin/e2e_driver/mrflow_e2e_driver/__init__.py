"""Drives the installed MrFlow plugin inside a real Krita, for tests/krita_plugin/test_krita_e2e.py.

Installed next to the plugin in a temporary Krita profile. Once Krita's window exists it
opens a document, paints it, selects a rectangle, shows the MrFlow docker, types a prompt,
triggers the *Fill selection* action, waits for the result, takes a screenshot, presses
Apply (and undoes it), then selects everything and runs *Refine*, and writes what it saw to
$MRFLOW_E2E_DIR/report.json. Then it ends Krita (which may
crash on exit: the test judges the report, not the exit code).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from pathlib import Path

from krita import Krita, Selection
from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QApplication

OUT = Path(os.environ.get("MRFLOW_E2E_DIR", "/tmp/mrflow_e2e"))
TIMEOUT_S = float(os.environ.get("MRFLOW_E2E_TIMEOUT", "100"))
WIDTH, HEIGHT = 320, 240
SELECTION = (96, 64, 128, 96)  # x, y, w, h
PROMPT = "a lighthouse on a cliff at dusk"

report: dict = {"steps": []}
state: dict = {}


def step(name: str, **details: object) -> None:
    report["steps"].append(
        {
            "t": round(time.monotonic() - state.get("t0", time.monotonic()), 2),
            "step": name,
            **details,
        }
    )
    write_report()


def write_report() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(report, indent=1))


def finish(error: str | None = None) -> None:
    if error:
        report["error"] = error
    report["finished"] = True
    write_report()
    QTimer.singleShot(200, lambda: os._exit(0))  # Krita may crash in its own exit path


def guarded(function):
    def run() -> None:
        try:
            function()
        except Exception:
            finish(traceback.format_exc())

    return run


def docker_widget():
    for dock in Krita.instance().dockers():
        if dock.objectName() == "mrflow_docker":
            return dock
    return None


@guarded
def begin() -> None:
    state["t0"] = time.monotonic()
    app = Krita.instance()
    app.setBatchmode(True)
    window = app.activeWindow()
    window.qwindow().resize(1500, 950)
    window.qwindow().showMaximized()
    document = app.createDocument(WIDTH, HEIGHT, "e2e", "RGBA", "U8", "", 72.0)
    document.setBatchmode(True)
    window.addView(document)
    background = document.topLevelNodes()[0]
    # A horizontal gradient, so "untouched" is a real check.
    row = b"".join(
        bytes([x * 255 // WIDTH, 128, 255 - x * 255 // WIDTH, 255]) for x in range(WIDTH)
    )
    background.setPixelData(row * HEIGHT, 0, 0, WIDTH, HEIGHT)
    document.refreshProjection()
    selection = Selection()
    selection.select(*SELECTION, 255)
    document.setSelection(selection)
    state["document"] = document
    state["background_hash"] = hashlib.sha256(
        bytes(background.pixelData(0, 0, WIDTH, HEIGHT))
    ).hexdigest()
    dock = docker_widget()
    step(
        "document",
        layers=[n.name() for n in document.topLevelNodes()],
        docker=dock is not None,
        plugin_actions=[
            a
            for a in ("mrflow_fill_canvas", "mrflow_fill_selection", "mrflow_refine")
            if app.action(a) is not None
        ],
    )
    if dock is None:
        return finish("the MrFlow docker is not registered")
    dock.show()
    dock.raise_()
    state["deadline"] = time.monotonic() + TIMEOUT_S
    QTimer.singleShot(200, wait_connected)


@guarded
def wait_connected() -> None:
    from mrflow_krita.runtime import Runtime

    runtime = Runtime.get()
    controller = runtime.controller
    if not controller.connected:
        if time.monotonic() > state["deadline"]:
            return finish(
                f"never connected: {controller.connection_state}: {controller.connection_detail}"
            )
        QTimer.singleShot(200, wait_connected)
        return
    panel = docker_widget().widget()
    panel.prompt.setPlainText(PROMPT)
    step(
        "connected",
        detail=controller.connection_detail,
        models=[m.name for m in controller.models],
        size_label=panel.size_label.text(),
    )
    Krita.instance().action("mrflow_fill_selection").trigger()
    jobs = list(controller.jobs.values())
    step("triggered", jobs=len(jobs), error=controller.last_error)
    if not jobs:
        return finish(f"Fill selection started no job: {controller.last_error}")
    state["job"] = jobs[-1]
    state["seen_preview"] = False
    QTimer.singleShot(100, wait_result)


@guarded
def wait_result() -> None:
    job = state["job"]
    document = state["document"]
    if job.preview_node is not None and not state["seen_preview"]:
        state["seen_preview"] = True
        names = [n.name() for n in document.topLevelNodes()]
        preview = document.topLevelNodes()[-1]
        step(
            "preview",
            layers=names,
            locked=preview.locked(),
            status=job.status_text,
            active=document.activeNode().name(),
        )
    if not job.state.finished:
        if time.monotonic() > state["deadline"]:
            return finish(f"no result in time: {job.status_text}")
        QTimer.singleShot(100, wait_result)
        return
    step("result", state=job.state.value, error=job.error, seed=job.seed, timings=job.timings)
    if job.state.value != "done":
        return finish(f"job ended as {job.state.value}: {job.error}")
    QTimer.singleShot(300, apply_and_check)


@guarded
def apply_and_check() -> None:
    document = state["document"]
    panel = docker_widget().widget()
    panel.apply.click()  # the docker's own Apply button
    document.waitForDone()
    nodes = document.topLevelNodes()
    background = nodes[0]
    layer = nodes[-1]
    x, y, w, h = SELECTION
    alpha_inside = bytes(layer.pixelData(x + w // 4, y + h // 4, w // 2, h // 2))[3::4]
    alpha_outside = bytes(layer.pixelData(0, 0, WIDTH, 16))[3::4]
    report["layers"] = [n.name() for n in nodes]
    report["active_layer"] = document.activeNode().name()
    report["result_layer"] = {"name": layer.name(), "locked": layer.locked(), "type": layer.type()}
    report["alpha_inside_min"] = min(alpha_inside)
    report["alpha_outside_max"] = max(alpha_outside)
    report["background_untouched"] = (
        hashlib.sha256(bytes(background.pixelData(0, 0, WIDTH, HEIGHT))).hexdigest()
        == state["background_hash"]
    )
    report["history"] = len(panel.controller.history.get(panel._current_key() or "", []))
    report["docker_visible"] = docker_widget().isVisible()
    QApplication.processEvents()
    QTimer.singleShot(500, screenshot)


@guarded
def screenshot() -> None:
    window = Krita.instance().activeWindow().qwindow()
    window.grab().save(str(OUT / "krita-docker.png"))
    report["screenshot"] = str(OUT / "krita-docker.png")
    # Apply is one undo step: Edit > Undo takes exactly the new layer away.
    document = state["document"]
    Krita.instance().action("edit_undo").trigger()
    document.waitForDone()
    report["layers_after_undo"] = [n.name() for n in document.topLevelNodes()]
    # A second Ctrl+Z must not bring back the job's preview layer; redo both to go on.
    Krita.instance().action("edit_undo").trigger()
    document.waitForDone()
    report["layers_after_second_undo"] = [n.name() for n in document.topLevelNodes()]
    for _ in range(2):
        Krita.instance().action("edit_redo").trigger()
        document.waitForDone()
    report["layers_after_redo"] = [n.name() for n in document.topLevelNodes()]
    QTimer.singleShot(100, refine_everything)


@guarded
def refine_everything() -> None:
    """Select All, then Refine: the result must be opaque up to the canvas edge (a feathered
    selection fades out there unless the plugin continues it past the canvas)."""
    from mrflow_krita.runtime import Runtime

    document = state["document"]
    selection = Selection()
    selection.select(0, 0, WIDTH, HEIGHT, 255)
    document.setSelection(selection)
    controller = Runtime.get().controller
    before = set(controller.jobs)
    Krita.instance().action("mrflow_refine").trigger()
    started = [job for key, job in controller.jobs.items() if key not in before]
    step("refine triggered", jobs=len(started), error=controller.last_error)
    if not started:
        return finish(f"Refine started no job: {controller.last_error}")
    state["job"] = started[-1]
    state["deadline"] = time.monotonic() + TIMEOUT_S
    QTimer.singleShot(100, wait_refined)


@guarded
def wait_refined() -> None:
    job = state["job"]
    if not job.state.finished:
        if time.monotonic() > state["deadline"]:
            return finish(f"no refine result in time: {job.status_text}")
        QTimer.singleShot(100, wait_refined)
        return
    if job.state.value != "done":
        return finish(f"the refine job ended as {job.state.value}: {job.error}")
    document = state["document"]
    docker_widget().widget().apply.click()
    document.waitForDone()
    layer = document.topLevelNodes()[-1]
    edges = [
        bytes(layer.pixelData(0, 0, WIDTH, 1))[3::4],  # top row
        bytes(layer.pixelData(0, HEIGHT - 1, WIDTH, 1))[3::4],  # bottom row
        bytes(layer.pixelData(0, 0, 1, HEIGHT))[3::4],  # left column
        bytes(layer.pixelData(WIDTH - 1, 0, 1, HEIGHT))[3::4],  # right column
    ]
    report["select_all_layer"] = layer.name()
    report["select_all_edge_alpha_min"] = min(min(edge) for edge in edges)
    finish()


def on_window() -> None:
    QTimer.singleShot(1500, begin)


Krita.instance().notifier().windowCreated.connect(on_window)
