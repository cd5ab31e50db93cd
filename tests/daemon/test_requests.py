"""A `generate` message turned into the engine's request: images and LoRA paths."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from mrflow_daemon.server.messages import to_engine_request
from mrflow_protocol import ProtocolError
from mrflow_protocol.messages import Generate, LoraRef
from PIL import Image


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_transparent_pixels_are_read_as_white_and_opaque_ones_unchanged(tmp_path: Path) -> None:
    image = Image.new("RGBA", (32, 16), (0, 0, 0, 0))  # what Krita stores where nothing is
    image.paste((200, 10, 10, 255), (0, 0, 16, 16))
    image.paste((0, 0, 200, 128), (16, 0, 24, 16))
    message = Generate(job_id="j", prompt="x", mode="img2img", image=png(image))
    request = to_engine_request(message, tmp_path)
    assert request.image is not None and request.image.mode == "RGB"
    assert request.image.getpixel((4, 4)) == (200, 10, 10)
    assert request.image.getpixel((20, 4)) == (127, 127, 227)  # half over white
    assert request.image.getpixel((28, 4)) == (255, 255, 255)


def test_a_lora_path_for_an_unknown_user_names_its_field(tmp_path: Path) -> None:
    message = Generate(
        job_id="j", prompt="x", loras=(LoraRef(path="~no-such-user-mrflow/style.safetensors"),)
    )
    with pytest.raises(ProtocolError) as refused:
        to_engine_request(message, tmp_path)
    assert refused.value.code == "invalid_field" and refused.value.field == "loras.0.path"


def test_a_missing_lora_file_names_its_field(tmp_path: Path) -> None:
    message = Generate(job_id="j", prompt="x", loras=(LoraRef(name="nope"),))
    with pytest.raises(ProtocolError) as refused:
        to_engine_request(message, tmp_path)
    assert refused.value.code == "model_not_found" and refused.value.field == "loras.0.name"
