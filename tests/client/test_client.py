"""The reference client library against a real daemon on loopback (tiny model, tiny sizes)."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from mrflow_daemon.client import (
    AuthenticationError,
    Client,
    ConnectionLost,
    DaemonUnavailable,
    JobCancelled,
    RequestError,
    connect,
)
from mrflow_protocol import Error, Preview, Progress, Queued, Result, StageImage, Status
from PIL import Image

from .conftest import UNTIL_CANCELLED

if TYPE_CHECKING:
    from .conftest import LiveDaemon


SMALL = {"width": 64, "height": 64, "steps": 3, "seed": 7}


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


@pytest.fixture
def client(live_daemon: LiveDaemon) -> Client:
    with connect(live_daemon.url, live_daemon.token, "pytest") as client:
        yield client  # type: ignore[misc]


def test_handshake_reports_the_daemon(client: Client) -> None:
    welcome = client.welcome
    assert welcome.protocol[0] == 1
    assert welcome.limits.max_frame_bytes > 0
    assert {preset.name for preset in welcome.presets} >= {"paper", "native"}
    assert client.ping() < 5.0


def test_a_job_streams_its_events_in_order(client: Client) -> None:
    job = client.generate("a red fox in the snow", **SMALL)
    events = list(job.events(timeout=120))
    assert isinstance(events[0], Queued)
    assert isinstance(events[-1], Result)
    assert all(getattr(e, "job_id", None) == job.job_id for e in events)
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.step for p in previews] == [1, 2, 3]
    kinds = [e.kind for e in events if isinstance(e, StageImage)]
    assert kinds == ["lowres", "upscaled"]
    # Previews come before the stage images, which come before the result.
    order = [type(e) for e in events if isinstance(e, (Preview, StageImage, Result))]
    assert order == [Preview] * 3 + [StageImage] * 2 + [Result]
    assert any(isinstance(e, Progress) and e.stage == "refine" for e in events)
    result = job.wait(timeout=1)
    assert png_size(result.image) == (64, 64) == (result.width, result.height)
    assert result.seed == 7 and result.timings["total"] > 0


def test_iterating_a_job_already_waited_for_ends_instead_of_blocking(client: Client) -> None:
    job = client.generate("a red fox in the snow", **SMALL)
    job.wait(timeout=120)
    assert list(job.events(timeout=1)) == []  # everything up to the result was read by wait()
    assert list(job) == []


def test_a_bad_id_is_a_request_error_naming_the_field(client: Client) -> None:
    with pytest.raises(RequestError) as info:
        client.cancel("bad id!")
    assert (info.value.code, info.value.field) == ("invalid_field", "job_id")


def test_images_png_cannot_hold_are_converted(client: Client) -> None:
    from mrflow_daemon.client.images import to_png

    buffer = io.BytesIO()
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(buffer, "JPEG")
    png = to_png(buffer.getvalue())
    assert Image.open(io.BytesIO(png)).mode == "RGB"


def test_threads_share_one_client_and_get_only_their_own_jobs(client: Client) -> None:
    results: dict[str, Result] = {}
    errors: list[BaseException] = []

    def submit(prompt: str) -> None:
        try:
            job = client.generate(prompt, previews=False, **SMALL)
            for event in job.events(timeout=120):
                assert event.job_id == job.job_id  # type: ignore[union-attr]
                assert not isinstance(event, Preview)
            results[job.job_id] = job.wait()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(f"cat {i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    assert not errors
    assert len(results) == 2


def test_cancel_a_running_job(client: Client) -> None:
    job = client.generate(f"a slow painting {UNTIL_CANCELLED}", width=64, height=64, steps=40)
    for event in job.events(timeout=120):
        if isinstance(event, Preview):  # it is running
            job.cancel()
            break
    with pytest.raises(JobCancelled) as info:
        job.wait(timeout=120)
    assert info.value.code == "cancelled" and info.value.job_id == job.job_id
    assert isinstance(job.error, Error)


def test_get_result_after_a_reconnect(live_daemon: LiveDaemon) -> None:
    with connect(live_daemon.url, live_daemon.token) as first:
        job = first.generate("a lighthouse", **SMALL)
        assert isinstance(next(iter(job)), Queued)
    # The first connection is gone; the job went on without it.
    with connect(live_daemon.url, live_daemon.token) as second:
        result = second.get_result(job.job_id).wait(timeout=120)
    assert result.job_id == job.job_id and png_size(result.image) == (64, 64)


def test_unknown_job_is_not_found(client: Client) -> None:
    with pytest.raises(RequestError) as info:
        client.get_result("never-submitted").wait(timeout=30)
    assert info.value.code == "not_found"


def test_status_pause_resume_and_subscription(client: Client) -> None:
    seen: list[Status] = []
    arrived = threading.Event()

    def on_status(status: Status) -> None:
        seen.append(status)
        if status.state == "paused":
            arrived.set()

    first = client.subscribe_status(on_status)
    assert first.state in ("idle", "busy") and first.clients >= 1
    client.pause()
    try:
        assert arrived.wait(10), f"no paused status pushed: {seen}"
        assert client.status().state == "paused"
    finally:
        client.resume()
    assert client.status().state in ("idle", "busy")
    client.unsubscribe_status(on_status)


def test_models(client: Client) -> None:
    models = client.models()
    names = {info.name for info in models.models}
    assert models.default_model in names and "builtin" in names  # the daemon's tiny model too
    assert models.default_model.endswith("tiny-flux") and len(names) == 2


def test_requests_over_the_daemons_limits_are_refused_before_sending(client: Client) -> None:
    side = client.limits.max_image_side
    with pytest.raises(RequestError) as info:
        client.generate("too big", width=side + 16, height=64)
    assert (info.value.code, info.value.field) == ("too_large", "width")
    with pytest.raises(RequestError) as info:
        client.generate("bad", width=64, height=64, mode="inpaint", image=_png(64, 64))
    assert (info.value.code, info.value.field) == ("missing_field", "mask")


def test_inpaint_through_the_client(client: Client, tmp_path: Path) -> None:
    image = tmp_path / "in.jpg"
    Image.new("RGB", (64, 64), (10, 120, 200)).save(image)  # a JPEG: the client converts it
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    job = client.generate("a kite", image=image, mask=mask, **SMALL)
    result = job.wait(timeout=120)
    with Image.open(io.BytesIO(result.image)) as out:
        assert out.size == (64, 64)
        # Outside the mask the input comes back unchanged (up to the PNG/JPEG round trip).
        r, g, b = out.convert("RGB").getpixel((2, 2))  # type: ignore[misc]
    assert abs(r - 10) < 12 and abs(g - 120) < 12 and abs(b - 200) < 12


def test_wrong_token_is_refused(live_daemon: LiveDaemon) -> None:
    with pytest.raises(AuthenticationError) as info:
        connect(live_daemon.url, "not-the-token")
    assert info.value.code == "unauthorized"
    assert "token" in str(info.value)


def test_token_comes_from_the_token_file(live_daemon: LiveDaemon) -> None:
    with connect(live_daemon.url, token_file=live_daemon.token_file) as client:
        assert client.ping() >= 0


def test_missing_token_file_says_how_to_create_it(tmp_path: Path, closed_port_url: str) -> None:
    with pytest.raises(AuthenticationError, match="mrflow serve"):
        connect(closed_port_url, token_file=tmp_path / "nope")


def test_no_daemon_says_how_to_start_one(closed_port_url: str) -> None:
    with pytest.raises(DaemonUnavailable) as info:
        connect(closed_port_url, "token", timeout=5)
    assert f"no MrFlow daemon at {closed_port_url}" in str(info.value)
    assert "mrflow serve" in str(info.value)


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def test_cancel_of_an_unknown_job_is_not_found(live_daemon: LiveDaemon) -> None:
    with (
        connect(live_daemon.url, live_daemon.token, timeout=3) as client,
        pytest.raises(RequestError) as info,
    ):
        client.cancel("never-submitted")
    assert (info.value.code, info.value.field) == ("not_found", "job_id")


def test_closing_the_client_during_a_job_raises_connection_lost_and_the_job_goes_on(
    live_daemon: LiveDaemon,
) -> None:
    client = connect(live_daemon.url, live_daemon.token)
    job = client.generate(
        f"a long one {UNTIL_CANCELLED}", width=64, height=64, steps=30, previews=False
    )
    assert isinstance(next(iter(job)), Queued)
    client.close()
    with pytest.raises(ConnectionLost):
        job.wait(timeout=30)
    with connect(live_daemon.url, live_daemon.token) as other:
        again = other.get_result(job.job_id)  # still known to the daemon
        other.cancel(job.job_id)  # do not keep the shared worker busy
        with pytest.raises(JobCancelled):
            again.wait(timeout=120)
