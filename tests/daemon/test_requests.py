"""Turning messages into engine requests (images, LoRA paths), and the writer's last resort."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from mrflow_daemon.server.messages import to_engine_request
from mrflow_protocol import ProtocolError, decode, encode
from mrflow_protocol.messages import Error, Generate, LoraRef, Result
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


def test_sixteen_bit_grey_images_and_masks_are_scaled_not_clipped(tmp_path: Path) -> None:
    import numpy as np

    grey = Image.fromarray(np.array([[0, 128, 32768, 65535]], dtype=np.uint16))  # mode I;16
    message = Generate(
        job_id="j", prompt="x", mode="inpaint", image=png(grey), mask=png(grey), width=4, height=1
    )
    request = to_engine_request(message, tmp_path)
    assert request.image is not None and request.mask is not None
    assert [request.image.getpixel((x, 0)) for x in range(4)] == [
        (0, 0, 0),
        (0, 0, 0),
        (128, 128, 128),  # half of full scale, not clipped to white
        (255, 255, 255),
    ]
    assert [request.mask.getpixel((x, 0)) for x in range(4)] == [0, 0, 128, 255]


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


def test_a_message_the_daemon_cannot_encode_ends_its_job_with_an_internal_error() -> None:
    from mrflow_daemon.server.session import _bug_report

    bad = Result(job_id="j7", image=b"", width=1, height=1, seed=0, model="m" * 300)
    with pytest.raises(ProtocolError) as failed:
        encode(bad)
    reply = decode(_bug_report(bad, failed.value))
    assert isinstance(reply, Error) and (reply.code, reply.job_id) == ("internal", "j7")
    assert "daemon bug" in reply.message
