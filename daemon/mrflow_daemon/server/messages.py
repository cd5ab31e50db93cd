"""Between the wire and the engine: protocol requests in, engine events and results out.

`to_engine_request` turns a validated `Generate` into the engine's
`GenerationRequest` (decoding the input images); `JobReporter` turns one
job's engine events into `progress`, `preview`, `stage_image` and `result`
messages. Image encoding happens here, on the worker thread, so the event
loop only ever moves finished bytes.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

from mrflow_protocol.errors import ErrorCode, ProtocolError
from mrflow_protocol.messages import (
    Generate,
    Message,
    PresetInfo,
    Preview,
    Progress,
    Result,
    StageImage,
)
from PIL import Image

from mrflow_daemon.engine import events as engine_events
from mrflow_daemon.engine.presets import DEFAULT_PRESET, PRESETS
from mrflow_daemon.engine.request import GenerationRequest, LoraSpec, eight_bit, input_rgb
from mrflow_daemon.engine.result import GenerationResult
from mrflow_daemon.server.jobs import Job

# Where each stage starts on the job's 0-100 % scale, for a staged (MrFlow) job. Stage 1 is
# most of the work on every size we measured; the refine step is the one full-size step.
STAGED_PROGRESS: dict[str, tuple[float, float]] = {
    "load": (0.0, 0.0),
    "text_encode": (0.0, 5.0),
    "structure": (5.0, 65.0),
    "decode_lowres": (65.0, 68.0),
    "upscale": (68.0, 75.0),
    "encode": (75.0, 80.0),
    "refine": (80.0, 95.0),
    "decode": (95.0, 100.0),
}
NATIVE_PROGRESS: dict[str, tuple[float, float]] = {
    "load": (0.0, 0.0),
    "text_encode": (0.0, 3.0),
    "structure": (3.0, 95.0),
    "decode": (95.0, 100.0),
}

RESULT_PNG_COMPRESSION = 3  # zlib level: results are sent once, over loopback; speed matters more


def preset_infos() -> tuple[PresetInfo, ...]:
    return tuple(
        PresetInfo(
            name=p.name,
            description=p.description,
            staged=p.staged,
            steps=p.steps,
            refine_steps=p.refine_steps,
            refine_sigma=p.refine_sigma,
            scale=p.scale,
        )
        for p in PRESETS.values()
    )


def _open_image(data: bytes, field_name: str, mode: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"{field_name} could not be decoded as a PNG ({type(exc).__name__}: {exc})",
            field_name,
        ) from None
    return input_rgb(image) if mode == "RGB" else eight_bit(image).convert(mode)


def to_engine_request(message: Generate, lora_dir: Path) -> GenerationRequest:
    """The engine's request for a `generate` message; bad images or LoRAs name their field."""
    image = _open_image(message.image, "image", "RGB") if message.image is not None else None
    mask = _open_image(message.mask, "mask", "L") if message.mask is not None else None
    if image is not None and mask is not None and image.size != mask.size:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"mask is {mask.width}x{mask.height}; allowed: the image's size, "
            f"{image.width}x{image.height}",
            "mask",
        )
    loras = []
    for index, lora in enumerate(message.loras):
        if lora.path is not None:
            where = f"loras.{index}.path"
            try:
                path = Path(lora.path).expanduser()
            except RuntimeError as exc:  # "~someone/..." for a user this machine does not know
                raise ProtocolError(
                    ErrorCode.INVALID_FIELD, f"{where}: {exc}; give an absolute path", where
                ) from None
        else:
            path = lora_dir / f"{lora.name}.safetensors"
            where = f"loras.{index}.name"
        if not path.is_file():
            raise ProtocolError(
                ErrorCode.MODEL_NOT_FOUND, f"{where}: there is no LoRA file at {path}", where
            )
        loras.append(LoraSpec(path=path, weight=lora.weight))
    request = GenerationRequest(
        prompt=message.prompt,
        width=message.width,
        height=message.height,
        negative_prompt=message.negative_prompt,
        preset=message.preset or DEFAULT_PRESET,
        steps=message.steps,
        refine_steps=message.refine_steps,
        refine_sigma=message.refine_sigma,
        scale=message.scale,
        guidance=message.guidance,
        seed=message.seed,
        image=image,
        mask=mask,
        loras=loras,
        return_stages=True,
    )
    if message.strength is not None:
        request.strength = message.strength
    return request


def encode_image(image: Image.Image, fmt: str, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", compress_level=RESULT_PNG_COMPRESSION)
    elif fmt == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="WEBP", quality=quality)
    return buffer.getvalue()


@dataclass
class JobReporter:
    """Turns one job's engine events into protocol messages, with percent and ETA."""

    job: Job
    previews: bool = True
    preview_format: str = "jpeg"
    preview_quality: int = 85
    stage_images: list[StageImage] = field(default_factory=list)
    """Kept for a client that fetches the job again after a reconnect."""
    last_percent: float = 0.0
    _stage: str = "load"
    _started: float = field(default_factory=time.monotonic)

    @property
    def _weights(self) -> dict[str, tuple[float, float]]:
        preset = PRESETS.get(self.job.request.preset)
        return STAGED_PROGRESS if preset is None or preset.staged else NATIVE_PROGRESS

    def percent(self, stage: str, step: int = 0, total: int = 0) -> float:
        start, end = self._weights.get(stage, (0.0, 0.0))
        fraction = step / total if total else 0.0
        return round(start + (end - start) * min(fraction, 1.0), 2)

    def _progress(self, stage: str, step: int = 0, total: int = 0) -> Progress:
        percent = self.percent(stage, step, total)
        self.last_percent = percent
        elapsed = time.monotonic() - self._started
        # Linear extrapolation from what is done; only once there is something to extrapolate.
        eta = round(elapsed * (100.0 - percent) / percent, 2) if percent >= 5.0 else None
        return Progress(
            job_id=self.job.job_id, stage=stage, step=step, total=total, percent=percent, eta=eta
        )

    @property
    def stage(self) -> str:
        return self._stage

    def on_event(self, event: engine_events.Event) -> list[Message]:
        """The messages for one engine event (often one, sometimes none or two)."""
        job_id = self.job.job_id
        if isinstance(event, engine_events.StageStarted):
            self._stage = event.stage.value
            return [self._progress(self._stage)]
        if isinstance(event, engine_events.StepPreview):
            out: list[Message] = []
            if self.previews:
                data = encode_image(event.image, self.preview_format, self.preview_quality)
                out.append(
                    Preview(
                        job_id=job_id,
                        step=event.step,
                        total=event.total,
                        image=data,
                        format=self.preview_format,
                        width=event.image.width,
                        height=event.image.height,
                    )
                )
            out.append(self._progress(event.stage.value, event.step, event.total))
            return out
        if isinstance(event, engine_events.StepProgress):
            return [self._progress(event.stage.value, event.step, event.total)]
        if isinstance(event, engine_events.StageImage):
            stage_image = StageImage(
                job_id=job_id,
                kind=event.kind,
                image=encode_image(event.image, "png"),
                width=event.image.width,
                height=event.image.height,
            )
            self.stage_images.append(stage_image)
            return [stage_image]
        return []  # StageFinished, Finished: the result message comes from `result()`

    def result(self, result: GenerationResult) -> Result:
        timings = {key: round(float(value), 4) for key, value in result.timings.items()}
        if self.job.started_at is not None:
            timings["queued"] = round(self.job.started_at - self.job.submitted_at, 4)
        return Result(
            job_id=self.job.job_id,
            image=encode_image(result.image, "png"),
            width=result.image.width,
            height=result.image.height,
            seed=result.seed,
            timings=timings,
            model=self.job.model,
            preset=self.job.request.preset,
        )
