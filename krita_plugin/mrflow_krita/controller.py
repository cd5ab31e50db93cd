"""What the plugin does, without any widget: start jobs, follow them, paint previews, apply.

The docker and the Krita actions call the public methods; the connection feeds `handle()`
with protocol messages on the UI thread; `changed` callbacks tell the docker to redraw.
Only `krita_adapter` touches Krita, and only `images` touches pixels.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from mrflow_protocol import ErrorCode, ProtocolError, encode
from mrflow_protocol import messages as m

from mrflow_krita import images
from mrflow_krita.connection import ConnectionEvent, MessageEvent, NotSent
from mrflow_krita.geometry import Rect, context_rect, feather_radius, generation_size
from mrflow_krita.jobs import HistoryEntry, Job, JobKind, JobState, layer_name, short_prompt
from mrflow_krita.krita_adapter import (
    DocumentAdapter,
    UnsupportedDocument,
    document_by_key,
    open_document_keys,
)
from mrflow_krita.settings import Settings

log = logging.getLogger(__name__)

PREVIEW_PREFIX = "[MrFlow preview]"
STALE_PREFIX = "[MrFlow unapplied]"
PREVIEW_FPS = 6.0


class JobRefused(Exception):
    """A job could not start; the message says why and what to do."""


@dataclass
class JobParams:
    """What the artist chose in the docker for one job."""

    prompt: str
    negative_prompt: str = ""
    model: str | None = None
    preset: str | None = None
    seed: int | None = None
    """None: a random seed (the daemon reports the one it used)."""
    strength: float = 0.6
    guidance: float | None = None
    """None: the model's default guidance."""
    size: tuple[int, int] | None = None
    """An explicit size to generate; None: from the region, rounded to the model's multiple."""


@dataclass
class Plan:
    """Where a job reads and writes, computed before anything is sent (and shown in the docker)."""

    kind: JobKind
    target: Rect
    size: tuple[int, int]
    selection: Rect | None


class Controller:
    def __init__(self, settings: Settings, send: Callable[[m.Message], None]) -> None:
        self.settings = settings
        self._send = send
        self.jobs: dict[str, Job] = {}
        self.history: dict[str, list[HistoryEntry]] = {}
        self.welcome: m.Welcome | None = None
        self.models: tuple[m.ModelInfo, ...] = ()
        self.default_model: str | None = None
        self.connection_state = "disconnected"
        self.connection_detail = ""
        self.last_error = ""
        self.size_multiple = 16
        self._listeners: list[Callable[[], None]] = []

    # --- observers ----------------------------------------------------------------------

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _changed(self) -> None:
        # A listener that fails (a docker whose widgets Qt has already deleted) must not stop
        # the others, nor undo the work that announced the change: it is logged and dropped.
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("a docker could not redraw; it no longer gets updates")
                self.unsubscribe(listener)

    def report_error(self, text: str) -> None:
        log.warning("%s", text)
        self.last_error = text
        self._changed()

    # --- connection -----------------------------------------------------------------------

    def connection_changed(
        self, state: str, detail: str = "", welcome: m.Welcome | None = None
    ) -> None:
        if state == "refused" and "token" in detail:
            detail += f" (the plugin reads {self.settings.token_path()}; see Settings below)"
        self.connection_state, self.connection_detail = state, detail
        if welcome is not None:
            self.welcome = welcome
            self.models, self.default_model = welcome.models, welcome.default_model
            self.last_error = ""
            # Re-attach to jobs that were running when the connection dropped.
            for job in self.active_jobs():
                self._send(m.GetResult(job_id=job.id))
        self._changed()

    @property
    def connected(self) -> bool:
        return self.connection_state == "connected"

    # --- planning and starting jobs -------------------------------------------------------

    def model_max_side(self, model: str | None = None) -> int | None:
        """The longest side the daemon says `model` (default: its default model) was trained
        to generate, or None when it does not say."""
        name = model or self.default_model
        return next((info.max_side for info in self.models if info.name == name), None)

    def plan(
        self,
        document: DocumentAdapter,
        kind: JobKind,
        size: tuple[int, int] | None = None,
        model: str | None = None,
    ) -> Plan:
        """The region and generation size a job of `kind` with `model` would use on `document`
        now. Without an explicit `size`, the target's aspect ratio at the "Longest side" setting,
        capped by what the daemon accepts and by the size the model was trained for."""
        canvas = document.bounds()
        selection = document.selection_bounds()
        if kind is JobKind.FILL_SELECTION:
            if selection is None:
                raise JobRefused("Fill selection needs a selection: select an area first.")
            target = context_rect(selection, canvas)
        elif kind is JobKind.REFINE and selection is not None:
            target = selection
        else:
            target = canvas
        if size is None:
            max_side = self.settings.max_side
            if self.welcome is not None:  # never ask for more than this daemon accepts
                max_side = min(max_side, self.welcome.limits.max_image_side)
            trained = self.model_max_side(model)
            if trained is not None:  # far beyond its training size a model draws noise
                max_side = min(max_side, trained)
            size = generation_size(target.width, target.height, self.size_multiple, max_side)
        return Plan(kind, target, size, selection)

    def start(self, document: DocumentAdapter | None, kind: JobKind, params: JobParams) -> Job:
        """Read the canvas, send a `generate` and return the queued job; raises JobRefused."""
        if document is None:
            raise JobRefused("Open or create a document first.")
        try:
            document.check_supported()
        except UnsupportedDocument as error:
            raise JobRefused(str(error)) from None
        if not self.connected:
            raise JobRefused(
                f"Not connected to the MrFlow daemon. {self.connection_detail}".strip()
            )
        plan = self.plan(document, kind, params.size, params.model)
        width, height = plan.size
        target = plan.target
        image = mask = shape = None
        mode = "txt2img"
        if kind is not JobKind.FILL_CANVAS:
            previews = [
                job.preview_node
                for job in self.jobs.values()
                if job.document_key == document.key and job.preview_node is not None
            ]
            pixels = document.read_canvas(target, hide=previews)
            image = images.bgra_to_png(pixels, target.width, target.height, (width, height))
            mode = "img2img"
        if plan.selection is not None and kind is not JobKind.FILL_CANVAS:
            radius = feather_radius(plan.selection)
            shape = document.read_selection(target, feather=radius)
            if kind is JobKind.FILL_SELECTION:
                hard = document.read_selection(target) or b""
                mask = images.mask_to_png(hard, target.width, target.height, (width, height))
                mode = "inpaint"
        job = Job(
            id=f"krita-{uuid.uuid4().hex[:16]}",
            kind=kind,
            document_key=document.key,
            prompt=params.prompt,
            target=target,
            size=(width, height),
            shape=shape,
            canvas=(document.bounds().width, document.bounds().height),
        )
        request = m.Generate(
            job_id=job.id,
            prompt=params.prompt,
            mode=mode,
            negative_prompt=params.negative_prompt,
            width=width,
            height=height,
            preset=params.preset or None,
            seed=params.seed,
            guidance=params.guidance,
            model=params.model or None,
            # Filling a selection repaints it completely; Refine keeps some of what is there.
            strength={"txt2img": None, "inpaint": 1.0}.get(mode, params.strength),
            image=image,
            mask=mask,
        )
        self._check_frame_size(request)
        try:
            self._send(request)
        except ProtocolError as error:  # e.g. a prompt over the protocol's length limit
            raise JobRefused(f"The request was not sent: {error.message}") from None
        self.jobs[job.id] = job
        self.last_error = ""
        log.info(
            "job %s: %s %dx%d at %s on %s", job.id, kind.value, width, height, target, document.name
        )
        self._changed()
        return job

    def _check_frame_size(self, request: m.Generate) -> None:
        """Refuse a request larger than the daemon accepts: it would answer without the job's
        id (the frame is never decoded), and the job would wait forever."""
        if self.welcome is None:
            return
        limit = self.welcome.limits.max_frame_bytes
        try:
            size = len(encode(request))
        except ProtocolError:
            return  # the connection's own encoding names the bad field
        if size > limit:
            raise JobRefused(
                f"The picture to send is {size / 1e6:.1f} MB and the daemon accepts at most "
                f"{limit / 1e6:.1f} MB per request: make the selection or the Longest side "
                "smaller, or raise max_frame_bytes in the daemon's daemon.toml."
            )

    # --- following jobs ---------------------------------------------------------------------

    def active_jobs(self) -> list[Job]:
        return [job for job in self.jobs.values() if not job.state.finished]

    def waiting_for_decision(self, document_key: str | None = None) -> list[Job]:
        """Finished jobs whose result sits in a preview layer, waiting for Apply or Discard."""
        return [
            job
            for job in self.jobs.values()
            if job.state is JobState.DONE
            and (document_key is None or job.document_key == document_key)
        ]

    def handle(self, message: object) -> None:
        """One message from the daemon (on the UI thread)."""
        job_id = getattr(message, "job_id", None)
        job = self.jobs.get(job_id) if job_id else None
        if isinstance(message, m.Models):
            self.models, self.default_model = message.models, message.default_model
        elif isinstance(message, m.Error):
            self._on_error(message, job)
        elif job is None or job.state.finished:
            return  # another client's job, or a late event of a job we already closed
        elif isinstance(message, m.Queued):
            job.queue_position = message.position
        elif isinstance(message, m.Progress):
            job.state = JobState.RUNNING
            job.stage, job.step, job.total = message.stage, message.step, message.total
            job.percent = message.percent if message.percent is not None else job.percent
            job.eta = message.eta
        elif isinstance(message, m.Preview):
            job.state = JobState.RUNNING
            # A fast GPU sends previews faster than Krita repaints a large layer: paint at most
            # PREVIEW_FPS of them (the stage images and the result are always painted).
            # Timed from the end of the last paint: on a large canvas painting itself can take
            # longer than the interval, and the previews that queued up meanwhile are stale.
            now = time.monotonic()
            if now - job.last_painted >= 1 / PREVIEW_FPS or message.step >= message.total:
                self._show(job, message.image)
                job.last_painted = time.monotonic()
        elif isinstance(message, m.StageImage):
            self._show(job, message.image)
        elif isinstance(message, m.Result):
            self._on_result(job, message)
        self._changed()

    def _on_error(self, error: m.Error, job: Job | None) -> None:
        if job is None or not ErrorCode.ends_the_job(error.code):  # not about the job's fate
            self.last_error = _readable(error)
            log.warning("daemon error: %s", self.last_error)
            return
        if job.state.finished:  # a late error (a cancel racing the result) changes nothing
            log.info("job %s: late %s ignored (%s)", job.id, error.code, job.state.value)
            return
        if error.code == "cancelled":
            job.state = JobState.CANCELLED
        else:
            job.state, job.error = JobState.FAILED, _readable(error)
            self.last_error = job.error
            log.warning("job %s failed: %s", job.id, job.error)
        self._remove_preview(job)

    def _shaped(self, job: Job, encoded: bytes) -> bytes:
        """An image from the daemon as BGRA over the job's target, shaped by its selection."""
        target = job.target
        pixels = images.decode_to_bgra(encoded, target.width, target.height)
        if job.shape is not None:
            pixels = images.multiply_alpha(pixels, job.shape, target.width, target.height)
        return pixels

    def _show(self, job: Job, encoded: bytes) -> None:
        document = document_by_key(job.document_key)
        if document is None or _resized_since(document, job.canvas) or not document.supported:
            return  # closed, cropped / resized, or converted: previews would land wrong
        try:
            pixels = self._shaped(job, encoded)
        except images.ImageDecodeError as error:
            log.warning("job %s: %s", job.id, error)
            return
        if job.preview_node is None or not document.paint_preview(
            job.preview_node, job.target, pixels
        ):
            name = f"{PREVIEW_PREFIX} {short_prompt(job.prompt)}"
            job.preview_node = document.create_preview_layer(name, job.target, pixels)

    def _on_result(self, job: Job, result: m.Result) -> None:
        job.result_png, job.seed, job.timings = result.image, result.seed, dict(result.timings)
        job.state, job.percent, job.eta = JobState.DONE, 100.0, 0.0
        self._show(job, result.image)
        entry = HistoryEntry(
            job_id=job.id,
            kind=job.kind,
            prompt=job.prompt,
            seed=result.seed,
            target=job.target,
            shape=job.shape,
            result_png=result.image,
            thumbnail_png=images.thumbnail_png(result.image),
            timings=dict(result.timings),
            model=result.model or "",
            preset=result.preset or "",
            canvas=job.canvas,
        )
        self.history.setdefault(job.document_key, []).insert(0, entry)
        log.info("job %s done: seed %s, timings %s", job.id, result.seed, result.timings)

    # --- the artist's decisions -----------------------------------------------------------

    def cancel(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.state.finished:
            return
        self._send(m.Cancel(job_id=job_id))
        # The daemon confirms with an error "cancelled"; stop showing the job now anyway.
        job.state = JobState.CANCELLED
        self._remove_preview(job)
        self._changed()

    def cancel_all(self, document_key: str | None = None) -> None:
        for job in self.active_jobs():
            if document_key is None or job.document_key == document_key:
                self.cancel(job.id)

    def apply(self, job_id: str) -> str | None:
        """Turn a finished job's preview into a normal layer; returns the new node's id."""
        job = self.jobs.get(job_id)
        if job is None or job.state is not JobState.DONE or job.result_png is None:
            return None
        document = document_by_key(job.document_key)
        if document is None or self._refuse_if_changed(document, job.canvas):
            return None
        name = layer_name(job.prompt, job.seed or 0)
        pixels = self._shaped(job, job.result_png)
        # The preview becomes the layer: the step that added it is the job's one undo step.
        node = None
        if job.preview_node is not None:
            node = document.finish_preview(job.preview_node, name, job.target, pixels)
            job.preview_node = None
        if node is None:  # the artist deleted the preview layer
            node = document.add_result_layer(name, job.target, pixels)
        job.state = JobState.APPLIED
        self._changed()
        return node

    def discard(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.state is not JobState.DONE:
            return
        job.state = JobState.DISCARDED
        self._remove_preview(job)
        self._changed()

    def apply_history(self, document_key: str, entry: HistoryEntry) -> str | None:
        """Apply a result from the history again, as a new layer."""
        document = document_by_key(document_key)
        if document is None or self._refuse_if_changed(document, entry.canvas):
            return None
        target = entry.target
        pixels = images.decode_to_bgra(entry.result_png, target.width, target.height)
        if entry.shape is not None:
            pixels = images.multiply_alpha(pixels, entry.shape, target.width, target.height)
        node = document.add_result_layer(layer_name(entry.prompt, entry.seed), target, pixels)
        self._changed()
        return node

    def _refuse_if_changed(self, document: DocumentAdapter, canvas: tuple[int, int]) -> bool:
        """True (and the reason shown) when the result can no longer be placed as it was made."""
        try:
            document.check_supported()  # converted to another colour space since the start
        except UnsupportedDocument as error:
            self.report_error(f"It was not applied: {error} The result is kept in the history.")
            return True
        size = _resized_since(document, canvas)
        if size is not None:
            self.report_error(
                f"The canvas is {size[0]} x {size[1]} now and was {canvas[0]} x {canvas[1]} when "
                "this picture was made, so it would land in the wrong place: it was not applied. "
                "Undo the crop or resize to apply it, or generate again."
            )
        return size is not None

    def delete_history(self, document_key: str, job_id: str) -> None:
        entries = self.history.get(document_key, [])
        self.history[document_key] = [entry for entry in entries if entry.job_id != job_id]
        self._changed()

    def _remove_preview(self, job: Job) -> None:
        if job.preview_node is None:
            return
        document = document_by_key(job.document_key)
        if document is not None:
            # Named for what happened: an undo of this removal brings back an ordinary layer.
            word = {JobState.DISCARDED: "discarded", JobState.CANCELLED: "cancelled"}.get(
                job.state, "failed"
            )
            document.retire_preview(job.preview_node, f"[MrFlow {word}] {short_prompt(job.prompt)}")
        job.preview_node = None

    # --- documents ------------------------------------------------------------------------

    def documents_changed(self) -> None:
        """Cancel the jobs and forget the history of documents that were closed, and turn
        preview layers no job follows into ordinary layers."""
        open_keys = open_document_keys()
        self._release_stale_previews(open_keys)
        gone = {job.document_key for job in self.jobs.values()} | set(self.history)
        gone -= open_keys
        if not gone:
            return
        for job in self.active_jobs():
            if job.document_key in gone:
                log.info("document of job %s was closed: cancelling it", job.id)
                self._send(m.Cancel(job_id=job.id))
                job.state = JobState.CANCELLED
        for key in gone:
            self.history.pop(key, None)
        self.jobs = {key: job for key, job in self.jobs.items() if job.document_key not in gone}
        self._changed()

    def _release_stale_previews(self, keys: set[str]) -> None:
        # A locked preview no job follows: a document saved with a preview on it and opened
        # again, or a preview the artist removed with Ctrl+Z and brought back with redo.
        for key in keys:
            document = document_by_key(key)
            if document is None:
                continue
            live = {
                job.preview_node
                for job in self.jobs.values()
                if job.document_key == key and job.preview_node is not None
            }
            count = document.release_stale_previews(PREVIEW_PREFIX, STALE_PREFIX, live)
            if count:
                log.info("%s: %d preview layer(s) no job follows unlocked", key, count)

    # --- events from the connection thread (already on the UI thread) ---------------------

    def on_connection_event(self, event: object) -> None:
        """Entry point from the connection; a failure here is logged, shown, and survived."""
        try:
            self._dispatch(event)
        except Exception as error:
            log.exception("could not handle %r", event)
            self.report_error(
                f"Internal error while handling a daemon message: {error} (see the log)"
            )

    def _dispatch(self, event: object) -> None:
        if isinstance(event, ConnectionEvent):
            self.connection_changed(event.state, event.detail, event.welcome)
        elif isinstance(event, MessageEvent):
            self.handle(event.message)
        elif isinstance(event, NotSent):
            job = self.jobs.get(getattr(event.message, "job_id", None) or "")
            if job is not None and isinstance(event.message, m.Generate):
                job.state, job.error = JobState.FAILED, "the connection to the daemon was lost"
                self.last_error = job.error
                self._changed()


def _resized_since(document: DocumentAdapter, canvas: tuple[int, int]) -> tuple[int, int] | None:
    """The document's size if it is no longer `canvas` (cropped, resized, scaled), else None."""
    bounds = document.bounds()
    size = (bounds.width, bounds.height)
    return size if canvas != (0, 0) and size != canvas else None


def _readable(error: m.Error) -> str:
    text = error.message or error.code
    if error.field and error.field not in text:
        text += f" (field: {error.field})"
    return text
