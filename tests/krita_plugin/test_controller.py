"""The plugin's behaviour on a fake Krita document: requests, previews, apply, history, errors."""

from __future__ import annotations

import io
import random
from dataclasses import replace

import pytest
from fake_krita import Document, Krita, Selection
from mrflow_krita.controller import PREVIEW_PREFIX, Controller, JobParams, JobRefused
from mrflow_krita.jobs import JobKind, JobState
from mrflow_krita.krita_adapter import DocumentAdapter
from mrflow_krita.settings import Settings
from mrflow_protocol import messages as m
from PIL import Image

RED_BGRA = bytes([0, 0, 255, 255])


def png(color: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def welcome() -> m.Welcome:
    return m.Welcome(
        daemon_version="test",
        models=(m.ModelInfo(name="builtin", family="flux-dev", loaded=True),),
        default_model="builtin",
        presets=(m.PresetInfo(name="paper"), m.PresetInfo(name="turbo")),
        default_preset="paper",
    )


class Sent(list):
    def of(self, kind: type) -> list:
        return [message for message in self if isinstance(message, kind)]


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def controller(krita: Krita, sent: Sent) -> Controller:
    controller = Controller(Settings(max_side=256), sent.append)
    controller.connection_changed("connected", "connected", welcome())
    return controller


def painted_document(
    krita: Krita, width: int = 96, height: int = 64, model: str = "RGBA"
) -> Document:
    document = krita.createDocument(width, height, "test", model, "U8", "", 72.0)
    background = document.topLevelNodes()[0]
    background.setPixelData(RED_BGRA * (width * height), 0, 0, width, height)
    return document


def select(document: Document, x: int, y: int, w: int, h: int) -> None:
    selection = Selection()
    selection.select(x, y, w, h, 255)
    document.setSelection(selection)


def finish(
    controller: Controller,
    job_id: str,
    color: tuple[int, int, int],
    size: tuple[int, int],
    seed: int = 7,
) -> None:
    controller.handle(
        m.Progress(job_id=job_id, stage="structure", step=1, total=2, percent=10, eta=3.0)
    )
    controller.handle(
        m.Preview(
            job_id=job_id,
            step=1,
            total=2,
            image=png((0, 0, 255), (size[0] // 2, size[1] // 2)),
            format="png",
            width=size[0] // 2,
            height=size[1] // 2,
        )
    )
    controller.handle(
        m.Result(
            job_id=job_id,
            image=png(color, size),
            width=size[0],
            height=size[1],
            seed=seed,
            timings={"total": 1.5},
        )
    )


def test_fill_canvas_sends_txt2img_at_the_model_multiple(
    krita: Krita, controller: Controller, sent: Sent
) -> None:
    document = painted_document(krita, 100, 60)
    job = controller.start(
        DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("a lighthouse", seed=5)
    )
    (request,) = sent.of(m.Generate)
    assert request.mode == "txt2img" and request.image is None and request.mask is None
    assert request.prompt == "a lighthouse" and request.seed == 5 and request.job_id == job.id
    # 100x60 is smaller than the 256 minimum side: scaled up to 256 wide, rounded to 16.
    assert (request.width, request.height) == (256, 160)
    assert job.target.width == 100 and job.target.height == 60


def test_previews_go_to_a_locked_layer_on_top_and_the_user_keeps_their_layer(
    krita: Krita, controller: Controller
) -> None:
    document = painted_document(krita)
    background = document.topLevelNodes()[0]
    job = controller.start(DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("sky"))
    controller.handle(m.Queued(job_id=job.id, position=1))
    assert job.status_text == "queued (1 ahead)"
    controller.handle(m.Progress(job_id=job.id, stage="structure", step=1, total=4, eta=12.0))
    assert job.state is JobState.RUNNING and job.status_text == "structure 1/4 · 12 s left"
    controller.handle(
        m.Preview(
            job_id=job.id,
            step=1,
            total=4,
            image=png((0, 255, 0), (16, 16)),
            format="png",
            width=16,
            height=16,
        )
    )
    top = document.topLevelNodes()[-1]
    assert top.name().startswith(PREVIEW_PREFIX) and top.locked()
    assert document.activeNode() is background  # the user's active layer is given back
    # The 16x16 preview is scaled over the whole 96x64 target: green everywhere.
    assert top.pixelData(95, 63, 1, 1) == bytes([0, 255, 0, 255])
    controller.handle(
        m.StageImage(
            job_id=job.id,
            kind="upscaled",
            image=png((255, 255, 255), (32, 32)),
            width=32,
            height=32,
        )
    )
    assert top.pixelData(0, 0, 1, 1) == bytes([255, 255, 255, 255])
    assert len(document.topLevelNodes()) == 2  # the same preview layer, repainted


def test_apply_makes_one_named_undoable_layer_and_leaves_the_users_layer_alone(
    krita: Krita, controller: Controller
) -> None:
    document = painted_document(krita)
    background = document.topLevelNodes()[0]
    before = background.pixelData(0, 0, 96, 64)
    undo_steps = len(document._undo_stack)
    job = controller.start(DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("blue sea"))
    finish(controller, job.id, (0, 0, 255), (256, 176), seed=42)
    assert job.state is JobState.DONE and job.seed == 42
    controller.apply(job.id)
    names = [node.name() for node in document.topLevelNodes()]
    assert names == ["Background", "[MrFlow] blue sea (42)"]
    result = document.topLevelNodes()[-1]
    assert not result.locked() and result.pixelData(10, 10, 1, 1) == bytes([255, 0, 0, 255])
    assert document.activeNode() is result  # like any new layer in Krita
    assert background.pixelData(0, 0, 96, 64) == before
    # The whole job is one undo step (the preview became the layer): Ctrl+Z right after Apply
    # takes exactly the new layer away, and no second Ctrl+Z brings a stale preview back.
    assert len(document._undo_stack) == undo_steps + 1
    document.undo()
    assert [node.name() for node in document.topLevelNodes()] == ["Background"]
    assert len(document._undo_stack) == undo_steps
    assert job.state is JobState.APPLIED


def test_apply_after_the_artist_deleted_the_preview_adds_a_new_layer(
    krita: Krita, controller: Controller
) -> None:
    document = painted_document(krita)
    job = controller.start(DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("a kite"))
    finish(controller, job.id, (0, 0, 255), (256, 176), seed=3)
    document.topLevelNodes()[-1].remove()  # the preview layer, deleted by hand
    controller.apply(job.id)
    (_, result) = document.topLevelNodes()
    assert result.name() == "[MrFlow] a kite (3)" and not result.locked()
    assert result.pixelData(10, 10, 1, 1) == bytes([255, 0, 0, 255])


def test_undoing_a_discard_brings_back_an_ordinary_layer_not_a_preview(
    krita: Krita, controller: Controller
) -> None:
    document = painted_document(krita)
    job = controller.start(DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("a boat"))
    finish(controller, job.id, (0, 0, 255), (256, 176))
    controller.discard(job.id)
    assert [node.name() for node in document.topLevelNodes()] == ["Background"]
    document.undo()  # Ctrl+Z after Discard
    back = document.topLevelNodes()[-1]
    assert back.name() == "[MrFlow discarded] a boat" and not back.locked()
    running = controller.start(
        DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("a ship\n  at sea")
    )
    controller.handle(preview(running.id, 1, 2, (0, 0, 0)))
    assert document.topLevelNodes()[-1].name() == "[MrFlow preview] a ship at sea"  # one line
    controller.cancel(running.id)
    document.undo()  # Ctrl+Z after Cancel
    assert document.topLevelNodes()[-1].name() == "[MrFlow cancelled] a ship at sea"


def test_fill_selection_sends_context_image_and_mask_and_shapes_the_result(
    krita: Krita, controller: Controller, sent: Sent
) -> None:
    document = painted_document(krita, 128, 96)
    select(document, 40, 30, 40, 32)
    job = controller.start(
        DocumentAdapter(document), JobKind.FILL_SELECTION, JobParams("a cat", strength=0.9)
    )
    (request,) = sent.of(m.Generate)
    assert request.mode == "inpaint" and request.strength == 1.0  # a fill repaints completely
    # Context: the selection grown by max(32, 25%) and clipped to the canvas.
    assert (job.target.x, job.target.y, job.target.width, job.target.height) == (8, 0, 104, 94)
    image, mask = decode(request.image), decode(request.mask)
    assert image.size == mask.size == (request.width, request.height)
    assert image.convert("RGB").getpixel((5, 5)) == (255, 0, 0)  # the red canvas is the context
    sx, sy = request.width / 104, request.height / 94  # mask is scaled with the image
    assert mask.getpixel((int(60 * sx), int(46 * sy))) == 255  # centre of the selection
    assert mask.getpixel((int(5 * sx), int(5 * sy))) == 0
    finish(controller, job.id, (0, 255, 0), (request.width, request.height))
    controller.apply(job.id)
    layer = document.topLevelNodes()[-1]
    assert layer.name() == "[MrFlow] a cat (7)"
    centre = layer.pixelData(60, 46, 1, 1)
    assert centre == bytes([0, 255, 0, 255])
    assert layer.pixelData(10, 5, 1, 1)[3] == 0  # outside the selection: transparent
    edge_alpha = layer.pixelData(40, 46, 1, 1)[3]
    assert 0 < edge_alpha < 255  # feathered edge
    assert layer.pixelData(0, 0, 128, 96).count(0) > 0
    assert document.selection().pixelData(40, 30, 1, 1) == b"\xff"  # user's selection unchanged
    assert document.selection().pixelData(38, 46, 1, 1) == b"\x00"


def test_fill_selection_without_a_selection_is_refused(
    krita: Krita, controller: Controller, sent: Sent
) -> None:
    document = painted_document(krita)
    with pytest.raises(JobRefused, match="needs a selection"):
        controller.start(DocumentAdapter(document), JobKind.FILL_SELECTION, JobParams("x"))
    assert not sent


def test_refine_reads_the_selection_bounds_with_strength(
    krita: Krita, controller: Controller, sent: Sent
) -> None:
    document = painted_document(krita, 128, 96)
    select(document, 16, 16, 64, 48)
    job = controller.start(
        DocumentAdapter(document), JobKind.REFINE, JobParams("sharper", strength=0.3)
    )
    (request,) = sent.of(m.Generate)
    assert request.mode == "img2img" and request.strength == 0.3 and request.mask is None
    assert (job.target.x, job.target.y, job.target.width, job.target.height) == (16, 16, 64, 48)
    assert decode(request.image).size == (request.width, request.height) == (256, 192)


def test_non_rgba_documents_get_a_clear_message(
    krita: Krita, controller: Controller, sent: Sent
) -> None:
    document = krita.createDocument(32, 32, "cmyk", "CMYKA", "U8", "", 72.0)
    with pytest.raises(JobRefused, match=r"CMYKA U8.*RGBA 8-bit"):
        controller.start(DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("x"))
    assert not sent


def test_no_connection_refuses_with_the_reason(krita: Krita, sent: Sent) -> None:
    controller = Controller(Settings(), sent.append)
    controller.connection_changed(
        "disconnected", "MrFlow daemon not reachable. Start it with `mrflow serve`."
    )
    document = painted_document(krita)
    with pytest.raises(JobRefused, match="mrflow serve"):
        controller.start(DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("x"))


def test_daemon_error_fails_the_job_and_removes_its_preview(
    krita: Krita, controller: Controller
) -> None:
    document = painted_document(krita)
    job = controller.start(DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("x"))
    controller.handle(preview(job.id, 1, 2, (0, 0, 0)))
    assert len(document.topLevelNodes()) == 2
    controller.handle(
        m.Error(code="out_of_memory", message="the GPU ran out of memory", job_id=job.id)
    )
    assert job.state is JobState.FAILED and "ran out of memory" in controller.last_error
    assert [node.name() for node in document.topLevelNodes()] == ["Background"]
    controller.handle(m.Error(code="invalid_field", message="9 is below 16", field="width"))
    assert controller.last_error == "9 is below 16 (field: width)"


def test_cancel_and_discard(krita: Krita, controller: Controller, sent: Sent) -> None:
    document = painted_document(krita)
    adapter = DocumentAdapter(document)
    first = controller.start(adapter, JobKind.FILL_CANVAS, JobParams("one"))
    controller.handle(preview(first.id, 1, 2, (0, 0, 0)))
    controller.cancel(first.id)
    assert sent.of(m.Cancel)[0].job_id == first.id and first.state is JobState.CANCELLED
    assert len(document.topLevelNodes()) == 1
    controller.handle(m.Progress(job_id=first.id, stage="refine"))  # late event: ignored
    assert first.state is JobState.CANCELLED
    second = controller.start(adapter, JobKind.FILL_CANVAS, JobParams("two"))
    finish(controller, second.id, (1, 2, 3), (64, 64))
    assert len(document.topLevelNodes()) == 2
    controller.discard(second.id)
    assert second.state is JobState.DISCARDED and len(document.topLevelNodes()) == 1


def test_a_job_reads_the_canvas_without_other_jobs_previews(
    krita: Krita, controller: Controller, sent: Sent
) -> None:
    document = painted_document(krita)
    adapter = DocumentAdapter(document)
    fill = controller.start(adapter, JobKind.FILL_CANVAS, JobParams("green"))
    finish(controller, fill.id, (0, 255, 0), (64, 64))  # waiting for Apply, on top
    refine = controller.start(adapter, JobKind.REFINE, JobParams("sharper"))
    (_, request) = sent.of(m.Generate)
    assert request.job_id == refine.id
    # The user's red picture, not the green preview waiting for Apply above it.
    assert decode(request.image).convert("RGB").getpixel((10, 10)) == (255, 0, 0)
    assert all(node.visible() for node in document.topLevelNodes())  # shown again


def test_a_selection_reaching_the_canvas_edge_does_not_fade_out_along_it(
    krita: Krita, controller: Controller, sent: Sent
) -> None:
    document = painted_document(krita, 96, 64)
    select(document, 0, 0, 96, 64)  # Select All
    job = controller.start(DocumentAdapter(document), JobKind.REFINE, JobParams("x"))
    assert job.shape is not None and set(job.shape) == {255}  # fully opaque, edges too
    select(document, 0, 16, 40, 32)  # touches the left edge only
    job = controller.start(DocumentAdapter(document), JobKind.REFINE, JobParams("x"))
    assert job.shape is not None
    width = job.target.width
    row = job.shape[(32 - job.target.y) * width : (33 - job.target.y) * width]
    assert row[0] == 255 and row[-1] < 255  # hard at the canvas edge, soft where it ends


def test_a_request_over_the_daemons_frame_limit_is_refused_not_left_queued(
    krita: Krita, sent: Sent
) -> None:
    from mrflow_protocol.limits import Limits

    controller = Controller(Settings(max_side=256), sent.append)
    small = replace(welcome(), limits=Limits(max_frame_bytes=65_536))
    controller.connection_changed("connected", "connected", small)
    document = painted_document(krita, 256, 256)
    noise = random.Random(1).randbytes(256 * 256 * 4)
    document.topLevelNodes()[0].setPixelData(noise, 0, 0, 256, 256)  # a PNG that stays large
    with pytest.raises(JobRefused, match=r"MB and the daemon accepts at most 0\.1 MB"):
        controller.start(DocumentAdapter(document), JobKind.REFINE, JobParams("x"))
    assert not sent and not controller.jobs


def test_a_result_is_not_placed_on_a_canvas_cropped_since_the_job_started(
    krita: Krita, controller: Controller, sent: Sent
) -> None:
    document = painted_document(krita, 96, 64)
    job = controller.start(DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("x"))
    document.resizeImage(16, 0, 80, 64)  # the artist crops while it runs
    finish(controller, job.id, (1, 2, 3), (96, 64))
    assert len(document.topLevelNodes()) == 1  # no preview painted at the old coordinates
    assert controller.apply(job.id) is None and job.state is JobState.DONE
    assert "80 x 64 now and was 96 x 64" in controller.last_error
    (entry,) = controller.history[DocumentAdapter(document).key]
    assert controller.apply_history(DocumentAdapter(document).key, entry) is None
    document.resizeImage(-16, 0, 96, 64)  # undone: the size is back, it can be applied
    assert controller.apply(job.id) is not None and len(document.topLevelNodes()) == 2


def test_a_late_error_leaves_a_finished_result_alone(
    krita: Krita, controller: Controller, sent: Sent
) -> None:
    document = painted_document(krita)
    job = controller.start(DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("one"))
    finish(controller, job.id, (1, 2, 3), (64, 64))
    controller.handle(m.Error(code="cancelled", message="cancelled", job_id=job.id))
    assert job.state is JobState.DONE and len(document.topLevelNodes()) == 2
    assert controller.apply(job.id) is not None


def test_a_broken_listener_does_not_stop_the_others_or_the_job(
    krita: Krita, controller: Controller, sent: Sent
) -> None:
    calls: list[str] = []

    def deleted_docker() -> None:  # what PyQt raises for a widget Qt has deleted
        raise RuntimeError("wrapped C/C++ object of type MrFlowPanel has been deleted")

    controller.subscribe(deleted_docker)
    controller.subscribe(lambda: calls.append("live"))
    job = controller.start(
        DocumentAdapter(painted_document(krita)), JobKind.FILL_CANVAS, JobParams("x")
    )
    assert job.id in controller.jobs and calls == ["live"]
    controller.handle(m.Progress(job_id=job.id, stage="structure"))
    assert calls == ["live", "live"]  # the broken one was dropped, not called again


def test_history_apply_again_and_delete(krita: Krita, controller: Controller) -> None:
    document = painted_document(krita)
    adapter = DocumentAdapter(document)
    job = controller.start(adapter, JobKind.FILL_CANVAS, JobParams("hills"))
    finish(controller, job.id, (0, 128, 0), (64, 64), seed=11)
    (entry,) = controller.history[adapter.key]
    assert (entry.prompt, entry.seed, entry.total_seconds) == ("hills", 11, 1.5)
    assert decode(entry.thumbnail_png).size[0] <= 96
    controller.discard(job.id)
    controller.apply_history(adapter.key, entry)
    assert document.topLevelNodes()[-1].name() == "[MrFlow] hills (11)"
    controller.delete_history(adapter.key, entry.job_id)
    assert controller.history[adapter.key] == []


def test_closing_a_document_cancels_its_jobs(
    krita: Krita, controller: Controller, sent: Sent
) -> None:
    kept, closed = painted_document(krita), painted_document(krita)
    keep_job = controller.start(DocumentAdapter(kept), JobKind.FILL_CANVAS, JobParams("a"))
    close_job = controller.start(DocumentAdapter(closed), JobKind.FILL_CANVAS, JobParams("b"))
    closed.close()
    controller.documents_changed()
    assert [c.job_id for c in sent.of(m.Cancel)] == [close_job.id]
    assert keep_job.id in controller.jobs and close_job.id not in controller.jobs


def test_a_reopened_documents_stale_preview_becomes_an_ordinary_layer(
    krita: Krita, controller: Controller
) -> None:
    live_document = painted_document(krita)
    job = controller.start(DocumentAdapter(live_document), JobKind.FILL_CANVAS, JobParams("live"))
    finish(controller, job.id, (0, 0, 255), (256, 176))
    # A document saved with a preview on it, opened again: nothing follows that layer.
    reopened = painted_document(krita)
    stale = reopened.createNode("[MrFlow preview] a lighthouse", "paintlayer")
    group = reopened.createNode("sketches", "grouplayer")
    reopened.rootNode().addChildNode(group, None)
    group.addChildNode(stale, None)
    stale.setLocked(True)
    controller.documents_changed()
    assert stale.name() == "[MrFlow unapplied] a lighthouse" and not stale.locked()
    live = live_document.topLevelNodes()[-1]  # a job's own preview is left alone
    assert live.name().startswith("[MrFlow preview]") and live.locked()
    # A live preview removed with Ctrl+Z and brought back with redo: the job has moved on to a
    # new preview layer, and the old one is released on the next look.
    job2 = controller.start(DocumentAdapter(reopened), JobKind.FILL_CANVAS, JobParams("b"))
    controller.handle(preview(job2.id, 1, 2, (0, 0, 0)))
    first_preview = reopened.topLevelNodes()[-1]
    reopened.undo()  # Ctrl+Z takes the preview away; the result makes a new preview layer
    finish(controller, job2.id, (0, 255, 0), (256, 176))
    reopened.rootNode().addChildNode(first_preview, None)  # redo brings the old one back
    controller.documents_changed()
    assert first_preview.name() == "[MrFlow unapplied] b" and not first_preview.locked()
    assert reopened.topLevelNodes()[-2].name() == "[MrFlow preview] b"  # the live one


def test_a_job_in_a_copy_of_a_document_lands_in_the_copy(
    krita: Krita, controller: Controller
) -> None:
    original = painted_document(krita)
    copy = original.clone()  # Create Copy From Current Image: every uuid copied, root's too
    krita.add_document(copy)
    assert copy.rootNode().uniqueId().toString() == original.rootNode().uniqueId().toString()
    assert DocumentAdapter(copy).key != DocumentAdapter(original).key
    job = controller.start(DocumentAdapter(copy), JobKind.FILL_CANVAS, JobParams("variation"))
    finish(controller, job.id, (0, 0, 255), (256, 176), seed=5)
    controller.apply(job.id)
    assert [n.name() for n in copy.topLevelNodes()] == ["Background", "[MrFlow] variation (5)"]
    assert [n.name() for n in original.topLevelNodes()] == ["Background"]
    original.close()
    controller.documents_changed()  # closing the original leaves the copy's history alone
    assert [e.job_id for e in controller.history[DocumentAdapter(copy).key]] == [job.id]


def test_a_document_converted_during_a_job_gets_no_pixels_and_a_reason(
    krita: Krita, controller: Controller
) -> None:
    document = painted_document(krita)
    job = controller.start(DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("fog"))
    document.setColorSpace("RGBA", "U16", "")  # converted to 16-bit while it ran
    finish(controller, job.id, (0, 0, 255), (256, 176))
    assert [n.name() for n in document.topLevelNodes()] == ["Background"]  # no preview written
    assert controller.apply(job.id) is None and job.state is JobState.DONE
    assert "RGBA U16" in controller.last_error and "not applied" in controller.last_error
    entry = controller.history[DocumentAdapter(document).key][0]
    assert controller.apply_history(DocumentAdapter(document).key, entry) is None
    document.setColorSpace("RGBA", "U8", "")  # converted back: it can be applied
    assert controller.apply(job.id) is not None
    assert document.topLevelNodes()[-1].name().startswith("[MrFlow] fog")


def test_reconnecting_reattaches_to_unfinished_jobs(
    krita: Krita, controller: Controller, sent: Sent
) -> None:
    job = controller.start(
        DocumentAdapter(painted_document(krita)), JobKind.FILL_CANVAS, JobParams("a")
    )
    controller.connection_changed("disconnected", "daemon down")
    assert not controller.connected
    controller.connection_changed("connected", "", welcome())
    assert [g.job_id for g in sent.of(m.GetResult)] == [job.id]
    controller.handle(m.Error(code="not_found", message="no job with that id", job_id=job.id))
    assert job.state is JobState.FAILED


def preview(job_id: str, step: int, total: int, color: tuple[int, int, int]) -> m.Preview:
    """An 8 x 8 one-colour preview of step `step` of `total`."""
    return m.Preview(
        job_id=job_id,
        step=step,
        total=total,
        image=png(color, (8, 8)),
        format="png",
        width=8,
        height=8,
    )


def test_fast_previews_are_thinned_out_but_the_last_step_is_shown(
    krita: Krita, controller: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mrflow_krita.controller as module

    monkeypatch.setattr(module.time, "monotonic", lambda: 100.0)  # all three arrive at once
    document = painted_document(krita)
    job = controller.start(DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("x"))

    controller.handle(preview(job.id, 1, 3, (255, 0, 0)))
    layer = document.topLevelNodes()[-1]
    assert layer.pixelData(0, 0, 1, 1) == bytes([0, 0, 255, 255])
    controller.handle(preview(job.id, 2, 3, (0, 255, 0)))  # right after the first: skipped
    assert layer.pixelData(0, 0, 1, 1) == bytes([0, 0, 255, 255])
    controller.handle(preview(job.id, 3, 3, (0, 0, 255)))  # the last step: always painted
    assert layer.pixelData(0, 0, 1, 1) == bytes([255, 0, 0, 255])


def test_previews_that_queued_up_during_a_slow_paint_are_skipped(
    krita: Krita, controller: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mrflow_krita.controller as module

    clock = [100.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: clock[0])
    paint = DocumentAdapter.create_preview_layer

    def slow_paint(self: DocumentAdapter, *args: object) -> str:
        clock[0] += 1.0  # a huge canvas: painting takes a second
        return paint(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(DocumentAdapter, "create_preview_layer", slow_paint)
    document = painted_document(krita)
    job = controller.start(DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("x"))
    for step, color in ((1, (255, 0, 0)), (2, (0, 255, 0))):
        controller.handle(preview(job.id, step, 9, color))
    # Step 2 arrived while step 1 was being painted: stale, not painted.
    assert document.topLevelNodes()[-1].pixelData(0, 0, 1, 1) == bytes([0, 0, 255, 255])


def test_a_request_the_protocol_refuses_is_not_queued(krita: Krita, sent: Sent) -> None:
    from mrflow_krita.connection import Connection

    link = Connection("ws://127.0.0.1:9", lambda: None, "test", lambda event: None)
    controller = Controller(Settings(), link.send)  # encodes (validates) like the real plugin
    controller.connection_changed("connected")
    document = painted_document(krita)
    with pytest.raises(JobRefused, match="not sent: prompt has 100001 characters"):
        controller.start(DocumentAdapter(document), JobKind.FILL_CANVAS, JobParams("x" * 100_001))
    assert not controller.jobs


def test_sizes_stay_within_the_daemons_limit(krita: Krita, sent: Sent) -> None:
    controller = Controller(Settings(max_side=2048), sent.append)
    limited = m.Welcome(daemon_version="t", limits=m.Limits(max_image_side=512))
    controller.connection_changed("connected", "", limited)
    plan = controller.plan(DocumentAdapter(painted_document(krita, 1600, 800)), JobKind.FILL_CANVAS)
    assert plan.size == (512, 256)


def test_sizes_stay_within_the_size_the_model_was_trained_for(krita: Krita, sent: Sent) -> None:
    controller = Controller(Settings(max_side=1024), sent.append)
    models = (
        m.ModelInfo(name="builtin", max_side=256),
        m.ModelInfo(name="flux-dev"),  # states no size: the settings decide
    )
    controller.connection_changed(
        "connected", "", m.Welcome(daemon_version="t", models=models, default_model="builtin")
    )
    document = DocumentAdapter(painted_document(krita, 1600, 800))
    assert controller.plan(document, JobKind.FILL_CANVAS).size == (256, 128)
    assert controller.plan(document, JobKind.FILL_CANVAS, model="flux-dev").size == (1024, 512)
    # An explicit size is the user's choice, as asked.
    assert controller.plan(document, JobKind.FILL_CANVAS, (640, 320)).size == (640, 320)
    controller.start(document, JobKind.FILL_CANVAS, JobParams("a red circle on the left"))
    (request,) = sent.of(m.Generate)
    assert (request.width, request.height) == (256, 128)


def test_a_refused_token_names_the_token_file(tmp_path, sent: Sent) -> None:  # type: ignore[no-untyped-def]
    controller = Controller(Settings(token_file=str(tmp_path / "token")), sent.append)
    controller.connection_changed(
        "refused", "a wrong token: send the content of the daemon's token file"
    )
    assert str(tmp_path / "token") in controller.connection_detail and not controller.connected
