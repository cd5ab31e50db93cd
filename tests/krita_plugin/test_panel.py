"""The docker's widget, driven through its buttons (Qt offscreen; fake Krita underneath)."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator

import pytest
from fake_krita import Krita, Selection
from mrflow_krita.jobs import JobKind, JobState
from mrflow_krita.qt import QtWidgets
from mrflow_protocol import messages as m
from PIL import Image


@pytest.fixture(scope="module")
def app() -> QtWidgets.QApplication:
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def panel(app: QtWidgets.QApplication, krita: Krita) -> Iterator:
    from mrflow_krita.panel import MrFlowPanel
    from mrflow_krita.runtime import Runtime

    krita.writeSetting("mrflow", "daemon_url", f"ws://127.0.0.1:{_closed_port()}")
    krita.writeSetting("mrflow", "max_side", "256")
    runtime = Runtime()
    widget = MrFlowPanel(runtime)
    yield widget
    runtime.shutdown()
    widget.deleteLater()


def pump(app: QtWidgets.QApplication, until, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        if until():
            return
        time.sleep(0.02)
    raise AssertionError("the panel did not reach the expected state")


def welcome() -> m.Welcome:
    return m.Welcome(
        daemon_version="0.1.0",
        device="cpu",
        models=(m.ModelInfo(name="builtin", loaded=True), m.ModelInfo(name="flux-schnell")),
        default_model="builtin",
        presets=(m.PresetInfo(name="paper"), m.PresetInfo(name="turbo")),
        default_preset="paper",
    )


def png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (0, 200, 0)).save(out, "PNG")
    return out.getvalue()


def test_the_panel_says_when_the_daemon_is_down(app: QtWidgets.QApplication, panel) -> None:  # type: ignore[no-untyped-def]
    pump(app, lambda: "mrflow serve" in panel.connection_label.text())
    assert panel.runtime.controller.connection_state == "disconnected"


def test_generate_fills_the_selection_and_apply_makes_a_layer(
    app: QtWidgets.QApplication, panel, krita: Krita
) -> None:  # type: ignore[no-untyped-def]
    controller = panel.runtime.controller
    sent: list[m.Message] = []
    controller._send = sent.append  # what the connection would carry
    controller.connection_changed("connected", "", welcome())
    assert [panel.model.itemData(i) for i in range(panel.model.count())] == [
        "builtin",
        "flux-schnell",
    ]
    assert panel.preset.currentData() == "paper"
    panel.preset.setCurrentIndex(panel.preset.findData("turbo"))

    document = krita.createDocument(200, 100, "doc", "RGBA", "U8", "", 72.0)
    selection = Selection()
    selection.select(50, 20, 100, 60, 255)
    document.setSelection(selection)
    panel._refresh_size()
    assert panel.size_label.text() == "256 × 160 (from selection)"

    panel.prompt.setPlainText("a red barn")
    panel.generate.click()
    (request,) = sent
    assert (
        isinstance(request, m.Generate) and request.mode == "inpaint" and request.preset == "turbo"
    )
    assert panel.seed.text() == str(request.seed)  # the random seed is shown, ready to copy
    job = next(iter(controller.jobs.values()))
    assert job.kind is JobKind.FILL_SELECTION
    assert panel.queue_label.text().startswith("1 queued") and panel.cancel.isEnabled()

    controller.handle(m.Progress(job_id=job.id, stage="upscale", percent=60.0, eta=2.0))
    assert panel.progress.value() == 60 and "upscaling" in panel.progress.format()
    controller.handle(
        m.Result(job_id=job.id, image=png((256, 160)), width=256, height=160, seed=99)
    )
    assert panel.apply.isEnabled() and panel.history.count() == 1
    panel.apply.click()
    assert job.state is JobState.APPLIED
    assert document.topLevelNodes()[-1].name() == "[MrFlow] a red barn (99)"
    assert not panel.apply.isEnabled()


def test_guidance_is_the_models_default_until_set(
    app: QtWidgets.QApplication, panel, krita: Krita
) -> None:  # type: ignore[no-untyped-def]
    controller = panel.runtime.controller
    sent: list[m.Message] = []
    controller._send = sent.append
    controller.connection_changed("connected", "", welcome())
    krita.createDocument(64, 64, "doc", "RGBA", "U8", "", 72.0)
    panel.prompt.setPlainText("a red circle")
    assert panel.guidance.text() == "model default"
    panel.generate.click()
    panel.guidance.setValue(1.0)  # true CFG off on the built-in model
    panel.generate.click()
    assert [r.guidance for r in sent if isinstance(r, m.Generate)] == [None, 1.0]
    panel._save_settings()
    assert panel.runtime.settings.guidance == 1.0


def test_the_size_line_also_gives_refines_size_when_it_differs(
    app: QtWidgets.QApplication, panel, krita: Krita
) -> None:  # type: ignore[no-untyped-def]
    from mrflow_krita.krita_adapter import DocumentAdapter

    panel.runtime.controller.connection_changed("connected", "", welcome())
    document = krita.createDocument(1000, 1000, "doc", "RGBA", "U8", "", 72.0)
    selection = Selection()
    selection.select(100, 100, 120, 40, 255)  # a thin strip: Fill adds context around it
    document.setSelection(selection)
    panel._refresh_size()
    refine = panel.runtime.controller.plan(DocumentAdapter(document), JobKind.REFINE)
    assert panel.size_label.text().endswith(f"; Refine {refine.size[0]} × {refine.size[1]}")


def test_unsupported_documents_show_a_message_in_the_docker(
    app: QtWidgets.QApplication, panel, krita: Krita
) -> None:  # type: ignore[no-untyped-def]
    controller = panel.runtime.controller
    controller._send = lambda message: None
    controller.connection_changed("connected", "", welcome())
    krita.createDocument(64, 64, "gray", "GRAYA", "U16", "", 72.0)
    panel.prompt.setPlainText("x")
    panel.generate.click()
    assert "GRAYA U16" in panel.error_label.text() and "RGBA 8-bit" in panel.error_label.text()
    assert not controller.jobs


def test_an_empty_prompt_is_asked_for(app: QtWidgets.QApplication, panel, krita: Krita) -> None:  # type: ignore[no-untyped-def]
    panel.runtime.controller.connection_changed("connected", "", welcome())
    krita.createDocument(64, 64, "doc", "RGBA", "U8", "", 72.0)
    panel.generate.click()
    assert "Write a prompt" in panel.error_label.text()
