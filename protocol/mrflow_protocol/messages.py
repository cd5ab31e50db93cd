"""Every message of protocol 1.x: one frozen dataclass each.

A message's `type` is its wire name; `sender` says who may send it ("client"
or "daemon"). Field annotations carry the allowed values (see `fields.py`);
a field with a default is optional on the wire, a field without one is
required. `check()` adds the rules that involve several fields.

Job messages carry the client-generated `job_id`. Other requests may carry a
`request_id`, echoed in the reply (and in an `error` about that request), so a
client with several requests in flight can match replies to requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from mrflow_protocol.errors import ErrorCode, ProtocolError
from mrflow_protocol.fields import (
    Bytes64,
    Count,
    ImageBytes,
    Items,
    JobId,
    Name,
    Percent,
    Range,
    RequestId,
    Seconds,
    ShortName,
    Side,
    Text,
    Version,
    readable_id,
)
from mrflow_protocol.images import IMAGE_FORMATS, png_size, sniff_format
from mrflow_protocol.limits import Limits
from mrflow_protocol.version import PROTOCOL_VERSION

CLIENT = "client"
DAEMON = "daemon"

MODES: tuple[str, ...] = ("txt2img", "img2img", "inpaint")
STAGE_IMAGE_KINDS: tuple[str, ...] = ("lowres", "upscaled")
STATES: tuple[str, ...] = ("idle", "busy", "paused")
"""Known `status.state` values. A newer daemon may add states; show unknown ones as they are."""

Png = Annotated[bytes, ImageBytes(("png",))]
AnyImage = Annotated[bytes, ImageBytes(IMAGE_FORMATS)]


class Message:
    """Base of all known messages."""

    type: ClassVar[str]
    sender: ClassVar[str]

    def check(self) -> None:
        """Rules between fields; raises ProtocolError. Single-field rules live in annotations."""


def _refuse(field_name: str, message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_FIELD, message, field_name)


def _check_stated_size(image: bytes, width: int, height: int) -> None:
    """A PNG's header must agree with the width and height stated next to it."""
    size = png_size(image)
    if size is not None and size != (width, height):
        raise _refuse(
            "width", f"width/height say {width}x{height} but the PNG is {size[0]}x{size[1]}"
        )


# --- nested records ----------------------------------------------------------------------


@dataclass(frozen=True)
class LoraRef:
    """A LoRA to apply for one job: an installed one by `name`, or a file by `path` (not both)."""

    name: Name | None = None
    path: Annotated[str, Text(1, 4096)] | None = None
    weight: Annotated[float, Range(-10, 10)] = 1.0


@dataclass(frozen=True)
class MemoryInfo:
    """Device memory in bytes (for CPU: the process's resident memory against system RAM)."""

    used: Bytes64
    total: Bytes64


@dataclass(frozen=True)
class ModelInfo:
    name: Name
    family: ShortName | None = None
    """"flux-dev", "flux-schnell", "qwen-image", ...; None until the daemon has looked."""
    loaded: bool = False
    description: Annotated[str, Text(0, 1000)] = ""
    max_side: Side | None = None
    """The longest side (px) the model was trained to generate; None: not stated. A client sizes
    its requests to it (the built-in model: 256). Since 1.1."""
    refine_sigma: Annotated[float, Range(0, 1)] | None = None
    """The refine sigma this model uses in every staged preset instead of the preset's own (its
    card's: the built-in model's 0.4), lowered for img2img and inpaint to where `strength`
    starts; a request's `refine_sigma` still wins. None: not stated (always so before 1.2),
    else each preset's `refine_sigma`. Since 1.2."""


@dataclass(frozen=True)
class PresetInfo:
    name: Name
    description: Annotated[str, Text(0, 1000)] = ""
    staged: bool = True
    steps: Count | None = None
    refine_steps: Count = 1
    refine_sigma: Annotated[float, Range(0, 1)] = 0.12
    scale: Annotated[int, Range(1, 16)] = 2


# --- handshake ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello(Message):
    """First message of every connection. The token is the content of the user's token file."""

    type: ClassVar[str] = "hello"
    sender: ClassVar[str] = CLIENT

    client: Annotated[str, Text(1, 64)]
    """A name for logs and the tray: "krita 5.2.2 / mrflow-krita 0.1.0"."""
    protocol: Version = PROTOCOL_VERSION
    token: Annotated[str, Text(0, 256)] = ""


@dataclass(frozen=True)
class Welcome(Message):
    type: ClassVar[str] = "welcome"
    sender: ClassVar[str] = DAEMON

    daemon_version: Annotated[str, Text(1, 64)]
    protocol: Version = PROTOCOL_VERSION
    device: Annotated[str, Text(0, 256)] = ""
    """Human-readable: "cuda:0 NVIDIA GeForce RTX 4090", "cpu"."""
    memory: MemoryInfo | None = None
    models: Annotated[tuple[ModelInfo, ...], Items(10_000)] = ()
    default_model: Name | None = None
    presets: Annotated[tuple[PresetInfo, ...], Items(1000)] = ()
    default_preset: Name | None = None
    limits: Limits = field(default_factory=Limits)
    features: Annotated[tuple[ShortName, ...], Items(1000)] = ()
    """Optional capabilities by name ("previews", "stage_images", "get_result", "cancel_all", ...)."""


# --- jobs: client to daemon --------------------------------------------------------------


@dataclass(frozen=True)
class Generate(Message):
    """Queue one generation. Events for it carry the same `job_id`."""

    type: ClassVar[str] = "generate"
    sender: ClassVar[str] = CLIENT

    job_id: JobId
    prompt: Annotated[str, Text(0, 100_000)]
    mode: Annotated[str, Text(choices=MODES)] = "txt2img"
    negative_prompt: Annotated[str, Text(0, 100_000)] = ""
    width: Annotated[int, Range(16, 16384)] = 1024
    height: Annotated[int, Range(16, 16384)] = 1024
    preset: Name | None = None
    """None: the daemon's default preset (see `welcome.default_preset`)."""
    # Overrides of the preset; None keeps the preset's (or the model family's) value.
    steps: Annotated[int, Range(1, 1000)] | None = None
    refine_steps: Annotated[int, Range(0, 100)] | None = None
    refine_sigma: Annotated[float, Range(0, 1)] | None = None
    scale: Annotated[int, Range(1, 8)] | None = None
    guidance: Annotated[float, Range(0, 100)] | None = None
    seed: Annotated[int, Range(0, 2**64 - 1)] | None = None
    """None: a random seed, reported in `result.seed`."""
    model: Name | None = None
    """None: the loaded model (of several, the one used last), else the daemon's default model."""
    loras: Annotated[tuple[LoraRef, ...], Items(64)] = ()
    strength: Annotated[float, Range(0, 1)] | None = None
    """img2img / inpaint: how much of the input to change (None: the engine's default, 0.6)."""
    image: Png | None = None
    """img2img / inpaint: the input image."""
    mask: Png | None = None
    """inpaint: white = regenerate, black = keep; same size as `image`."""
    front: bool = False
    """Put the job at the front of the queue instead of the back."""
    previews: bool = True
    """Send a `preview` per low-res step (False: progress only)."""

    def check(self) -> None:
        if self.mode == "txt2img":
            if self.image is not None:
                raise _refuse("image", "image is for img2img and inpaint; mode is txt2img")
            if self.mask is not None:
                raise _refuse("mask", "mask is for inpaint; mode is txt2img")
        else:
            if self.image is None:
                raise ProtocolError(
                    ErrorCode.MISSING_FIELD, f"mode {self.mode} needs an input image", "image"
                )
            if self.mode == "inpaint" and self.mask is None:
                raise ProtocolError(ErrorCode.MISSING_FIELD, "mode inpaint needs a mask", "mask")
            if self.mode == "img2img" and self.mask is not None:
                raise _refuse("mask", "a mask needs mode inpaint; mode is img2img")
        for index, lora in enumerate(self.loras):
            if (lora.name is None) == (lora.path is None):
                raise _refuse(f"loras.{index}", "a LoRA needs exactly one of name or path")


@dataclass(frozen=True)
class Cancel(Message):
    """Cancel one job by id (whichever connection submitted it: every client holds the
    user's token), or all unfinished jobs of this connection (`all: true`)."""

    type: ClassVar[str] = "cancel"
    sender: ClassVar[str] = CLIENT

    job_id: JobId | None = None
    all: bool = False
    request_id: RequestId | None = None

    def check(self) -> None:
        if (self.job_id is None) == (not self.all):
            raise _refuse("job_id", "cancel needs either job_id or all: true (not both)")


@dataclass(frozen=True)
class GetResult(Message):
    """Fetch a finished job's result after a reconnect (or re-attach to a running job)."""

    type: ClassVar[str] = "get_result"
    sender: ClassVar[str] = CLIENT

    job_id: JobId


# --- jobs: daemon to client --------------------------------------------------------------


@dataclass(frozen=True)
class Queued(Message):
    """The job was accepted (and again whenever its place changes)."""

    type: ClassVar[str] = "queued"
    sender: ClassVar[str] = DAEMON

    job_id: JobId
    position: Count
    """Jobs ahead of this one: 0 = it runs next."""


@dataclass(frozen=True)
class Progress(Message):
    type: ClassVar[str] = "progress"
    sender: ClassVar[str] = DAEMON

    job_id: JobId
    stage: ShortName
    """The engine stage: load, text_encode, structure, decode_lowres, upscale, encode, refine,
    decode (open set: show unknown ones as they are)."""
    step: Count = 0
    """Steps done in this stage (0 when the stage has no steps)."""
    total: Count = 0
    percent: Percent | None = None
    """The whole job's progress."""
    eta: Seconds | None = None
    """Seconds until the result, as estimated by the daemon."""


@dataclass(frozen=True)
class Preview(Message):
    """A cheap picture of the low-res stage after one of its steps."""

    type: ClassVar[str] = "preview"
    sender: ClassVar[str] = DAEMON

    job_id: JobId
    step: Count
    total: Count
    image: AnyImage
    format: Annotated[str, Text(choices=IMAGE_FORMATS)]
    width: Side
    height: Side

    def check(self) -> None:
        found = sniff_format(self.image)
        if found != self.format:
            raise _refuse("format", f"format says {self.format} but image holds {found} bytes")
        _check_stated_size(self.image, self.width, self.height)


@dataclass(frozen=True)
class StageImage(Message):
    """A decoded image at a stage boundary: "lowres" (stage 1) and "upscaled" (after the GAN)."""

    type: ClassVar[str] = "stage_image"
    sender: ClassVar[str] = DAEMON

    job_id: JobId
    kind: ShortName
    image: Png
    width: Side
    height: Side

    def check(self) -> None:
        _check_stated_size(self.image, self.width, self.height)


@dataclass(frozen=True)
class Result(Message):
    """The finished image. The job is over after this (or after an `error` with its job_id)."""

    type: ClassVar[str] = "result"
    sender: ClassVar[str] = DAEMON

    job_id: JobId
    image: Png
    width: Side
    height: Side
    seed: Annotated[int, Range(0, 2**64 - 1)]
    timings: Annotated[dict[str, float], Items(64)] = field(default_factory=dict)
    """Seconds per stage (keys as in `progress.stage`) plus "total" and "queued"."""
    model: Name | None = None
    preset: Name | None = None

    def check(self) -> None:
        _check_stated_size(self.image, self.width, self.height)


@dataclass(frozen=True)
class Error(Message):
    """A request failed or was refused. With a `job_id`, that job is over."""

    type: ClassVar[str] = "error"
    sender: ClassVar[str] = DAEMON

    code: ShortName
    """A stable code from `ErrorCode`; treat a code you do not know like "internal"."""
    message: Annotated[str, Text(0, 10_000)]
    field: Annotated[str, Text(1, 256)] | None = None
    job_id: JobId | None = None
    request_id: RequestId | None = None

    def to_exception(self) -> ProtocolError:
        return ProtocolError(
            self.code, self.message, self.field, job_id=self.job_id, request_id=self.request_id
        )


# --- models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListModels(Message):
    type: ClassVar[str] = "list_models"
    sender: ClassVar[str] = CLIENT

    request_id: RequestId | None = None


@dataclass(frozen=True)
class Models(Message):
    type: ClassVar[str] = "models"
    sender: ClassVar[str] = DAEMON

    models: Annotated[tuple[ModelInfo, ...], Items(10_000)] = ()
    default_model: Name | None = None
    request_id: RequestId | None = None


@dataclass(frozen=True)
class LoadModel(Message):
    """Load a model now (it stays resident); answered with `ok` once loaded."""

    type: ClassVar[str] = "load_model"
    sender: ClassVar[str] = CLIENT

    model: Name
    request_id: RequestId | None = None


@dataclass(frozen=True)
class UnloadModel(Message):
    """Free a model's memory (None: every loaded model); answered with `ok`."""

    type: ClassVar[str] = "unload_model"
    sender: ClassVar[str] = CLIENT

    model: Name | None = None
    request_id: RequestId | None = None


# --- daemon control ----------------------------------------------------------------------


@dataclass(frozen=True)
class SubscribeStatus(Message):
    """Start (`subscribe: true`) or stop receiving `status` whenever the daemon's state changes.

    Either way it is answered at once with the current `status`."""

    type: ClassVar[str] = "subscribe_status"
    sender: ClassVar[str] = CLIENT

    subscribe: bool = True
    request_id: RequestId | None = None


@dataclass(frozen=True)
class GetStatus(Message):
    """One `status` now."""

    type: ClassVar[str] = "get_status"
    sender: ClassVar[str] = CLIENT

    request_id: RequestId | None = None


@dataclass(frozen=True)
class Status(Message):
    type: ClassVar[str] = "status"
    sender: ClassVar[str] = DAEMON

    state: ShortName
    """idle | busy | paused (open set)."""
    job_id: JobId | None = None
    """The running job (any client's)."""
    stage: ShortName | None = None
    percent: Percent | None = None
    queue_length: Count = 0
    """Jobs waiting (not counting the running one)."""
    loaded_model: Name | None = None
    memory: MemoryInfo | None = None
    clients: Count = 0
    request_id: RequestId | None = None


@dataclass(frozen=True)
class Pause(Message):
    """Stop starting queued jobs (the running one finishes); answered with `ok`."""

    type: ClassVar[str] = "pause"
    sender: ClassVar[str] = CLIENT

    request_id: RequestId | None = None


@dataclass(frozen=True)
class Resume(Message):
    type: ClassVar[str] = "resume"
    sender: ClassVar[str] = CLIENT

    request_id: RequestId | None = None


@dataclass(frozen=True)
class Shutdown(Message):
    """Stop the daemon (admin): answered with `ok`, then every connection closes."""

    type: ClassVar[str] = "shutdown"
    sender: ClassVar[str] = CLIENT

    request_id: RequestId | None = None


@dataclass(frozen=True)
class Ok(Message):
    """A request without a richer reply succeeded."""

    type: ClassVar[str] = "ok"
    sender: ClassVar[str] = DAEMON

    request: ShortName
    """The `type` of the request answered."""
    request_id: RequestId | None = None


@dataclass(frozen=True)
class Ping(Message):
    type: ClassVar[str] = "ping"
    sender: ClassVar[str] = CLIENT

    request_id: RequestId | None = None


@dataclass(frozen=True)
class Pong(Message):
    type: ClassVar[str] = "pong"
    sender: ClassVar[str] = DAEMON

    request_id: RequestId | None = None


# --- anything else -----------------------------------------------------------------------


@dataclass(frozen=True)
class Unknown:
    """A message whose `type` this peer does not know (sent by a newer peer).

    Answer it with an `unknown_type` error (see `unknown_type_error`), never crash."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def job_id(self) -> str | None:
        """The frame's `job_id` when it is a valid id (to route the error reply)."""
        return readable_id(self.fields.get("job_id"))

    @property
    def request_id(self) -> str | None:
        return readable_id(self.fields.get("request_id"))


CLIENT_MESSAGES: tuple[type[Message], ...] = (
    Hello,
    Generate,
    Cancel,
    GetResult,
    ListModels,
    LoadModel,
    UnloadModel,
    SubscribeStatus,
    GetStatus,
    Pause,
    Resume,
    Shutdown,
    Ping,
)
DAEMON_MESSAGES: tuple[type[Message], ...] = (
    Welcome,
    Queued,
    Progress,
    Preview,
    StageImage,
    Result,
    Error,
    Models,
    Status,
    Ok,
    Pong,
)
MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.type: cls for cls in CLIENT_MESSAGES + DAEMON_MESSAGES
}

JOB_EVENTS: tuple[type[Message], ...] = (Queued, Progress, Preview, StageImage, Result, Error)
"""What a job's submitter receives about it, in that order (error may end a job at any point)."""
