"""One example of every message, with real (tiny) images: for tests, fuzzers and the spec.

`docs/protocol.md` shows these same examples; `tests/protocol` round-trips them
and mutates them. Images are built with the standard library only (zlib), so
this module needs nothing but the protocol package.
"""

from __future__ import annotations

import struct
import zlib

from mrflow_protocol.limits import Limits
from mrflow_protocol.messages import (
    Cancel,
    Error,
    Generate,
    GetResult,
    GetStatus,
    Hello,
    ListModels,
    LoadModel,
    LoraRef,
    MemoryInfo,
    Message,
    ModelInfo,
    Models,
    Ok,
    Pause,
    Ping,
    Pong,
    PresetInfo,
    Preview,
    Progress,
    Queued,
    Result,
    Resume,
    Shutdown,
    StageImage,
    Status,
    SubscribeStatus,
    UnloadModel,
    Welcome,
)
from mrflow_protocol.version import PROTOCOL_VERSION


def solid_png(width: int, height: int, rgb: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    """A valid 8-bit RGB PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width  # filter byte 0 (None), then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


JOB = "5f0c2a7e9b1d4c3f8e6a2b7c9d0e1f2a"
IMAGE = solid_png(64, 48)
MASK = solid_png(64, 48, (255, 255, 255))
MEMORY = MemoryInfo(used=9_663_676_416, total=25_757_220_864)
MODELS = (
    ModelInfo("flux-dev", "flux-dev", loaded=True, description="FLUX.1-dev, bf16"),
    ModelInfo(
        "builtin", "flux-dev", description="built-in shapes model", max_side=256, refine_sigma=0.4
    ),
)
PRESETS = (
    PresetInfo("paper", "MrFlow reference: 12 low-res steps + 1 refine step, sigma 0.12", True, 12),
    PresetInfo("native", "the unmodified pipeline", False, None, 0, 0.0, 1),
)


def examples() -> list[Message]:
    """One instance of every message type (two of some, for their variants)."""
    return [
        Hello(client="krita 5.2.2 / mrflow-krita 0.1.0", protocol=PROTOCOL_VERSION, token="Zm9v…"),
        Welcome(
            daemon_version="0.1.0",
            protocol=PROTOCOL_VERSION,
            device="cuda:0 NVIDIA GeForce RTX 4090",
            memory=MEMORY,
            models=MODELS,
            default_model="flux-dev",
            presets=PRESETS,
            default_preset="paper",
            limits=Limits(),
            features=("previews", "stage_images", "get_result", "cancel_all", "front_insert"),
        ),
        Generate(
            job_id=JOB,
            prompt="a lighthouse on a cliff at dusk, oil painting",
            negative_prompt="blurry",
            width=1024,
            height=768,
            preset="paper",
            seed=1234,
            loras=(LoraRef(name="impasto", weight=0.8),),
        ),
        Generate(
            job_id="inpaint-7",
            prompt="a red kite in the sky",
            mode="inpaint",
            width=64,
            height=48,
            steps=20,
            refine_sigma=0.18,
            strength=0.9,
            image=IMAGE,
            mask=MASK,
            front=True,
        ),
        Cancel(job_id=JOB, request_id="r1"),
        Cancel(all=True),
        GetResult(job_id=JOB),
        Queued(job_id=JOB, position=2),
        Progress(job_id=JOB, stage="structure", step=3, total=12, percent=21.5, eta=2.4),
        Preview(job_id=JOB, step=3, total=12, image=IMAGE, format="png", width=64, height=48),
        StageImage(job_id=JOB, kind="lowres", image=IMAGE, width=64, height=48),
        Result(
            job_id=JOB,
            image=IMAGE,
            width=64,
            height=48,
            seed=1234,
            timings={"structure": 1.91, "upscale": 0.12, "refine": 0.31, "total": 2.71},
            model="flux-dev",
            preset="paper",
        ),
        Error(
            code="invalid_field",
            message="width is 99999; allowed: 16 to 16384",
            field="width",
            job_id=JOB,
        ),
        ListModels(request_id="r2"),
        Models(models=MODELS, default_model="flux-dev", request_id="r2"),
        LoadModel(model="flux-dev", request_id="r3"),
        UnloadModel(request_id="r4"),
        SubscribeStatus(request_id="r5"),
        GetStatus(),
        Status(
            state="busy",
            job_id=JOB,
            stage="structure",
            percent=21.5,
            queue_length=1,
            loaded_model="flux-dev",
            memory=MEMORY,
            clients=2,
        ),
        Pause(),
        Resume(),
        Shutdown(request_id="r6"),
        Ok(request="pause"),
        Ping(request_id="r7"),
        Pong(request_id="r7"),
    ]
