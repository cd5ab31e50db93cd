"""The daemon end to end: a real server on loopback, the tiny FLUX model, real websocket clients."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mrflow_daemon.server.app import Daemon
from mrflow_protocol.messages import (
    Cancel,
    Error,
    GetResult,
    GetStatus,
    Ok,
    Pause,
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
)
from PIL import Image

StartDaemon = Callable[..., Daemon]
Connect = Callable[..., Any]


def test_the_welcome_states_the_size_the_builtin_model_was_trained_for(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    client = connect(start_daemon())
    models = {info.name: info for info in client.welcome.models}
    assert models["builtin"].max_side == 256  # from the shipped weights' card
    assert models["builtin"].refine_sigma == 0.4
    # The test's own tiny model has no card: no size or sigma stated.
    others = [info for name, info in models.items() if name != "builtin"]
    assert [(info.max_side, info.refine_sigma) for info in others] == [(None, None)]


def test_the_welcome_states_the_card_of_a_default_model_given_by_path_or_alias(
    start_daemon: StartDaemon, connect: Connect, daemon_model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "carded"
    shutil.copytree(daemon_model_dir, folder)
    card = {"working_size": [256, 192], "refine_sigma": 0.5}
    (folder / "builtin.json").write_text(json.dumps(card), encoding="utf-8")
    for model, expected in ((str(folder), (256, 0.5)), ("tiny", (256, 0.4))):
        client = connect(start_daemon(model=model))
        models = {info.name: info for info in client.welcome.models}
        assert client.welcome.default_model == model
        assert (models[model].max_side, models[model].refine_sigma) == expected


@pytest.mark.parametrize(
    ("family", "card", "sigma"),
    [
        ("flux", {"refine_sigma": 0.5}, 0.5),
        ("flux", {}, None),
        ("flux-schnell", {"refine_sigma": 0.5}, None),  # the engine ignores a card there too
        (None, {}, None),  # no model folder at all
    ],
)
def test_the_welcome_states_only_a_refine_sigma_the_engine_uses(
    tmp_path: Path, family: str | None, card: dict[str, float], sigma: float | None
) -> None:
    from mrflow_daemon.engine.tiny_model import make_tiny_model
    from mrflow_daemon.server.app import _card_refine_sigma

    folder = tmp_path / "model"
    if family is not None:
        make_tiny_model(folder, family=family)
        (folder / "builtin.json").write_text(json.dumps(card), encoding="utf-8")
    assert _card_refine_sigma(folder) == sigma


def test_a_job_streams_one_preview_per_step_then_stage_images_then_the_result(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    daemon = start_daemon()
    client = connect(daemon)
    assert client.welcome.limits.max_image_side == daemon.config.max_image_side
    assert "paper" in {p.name for p in client.welcome.presets}

    client.generate("job-1", width=64, height=64, steps=3, seed=7)
    events = client.job_events("job-1")

    kinds = [type(e).__name__ for e in events]
    assert isinstance(events[0], Queued) and events[0].position == 0
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.step for p in previews] == [1, 2, 3] and {p.total for p in previews} == {3}
    for preview in previews:
        assert Image.open(io.BytesIO(preview.image)).size == (preview.width, preview.height)
    stage_images = [e for e in events if isinstance(e, StageImage)]
    assert [s.kind for s in stage_images] == ["lowres", "upscaled"]
    assert (stage_images[0].width, stage_images[1].width) == (32, 64)
    last_preview = max(i for i, k in enumerate(kinds) if k == "Preview")
    assert last_preview < kinds.index("StageImage")
    result = events[-1]
    assert isinstance(result, Result), events[-1]
    assert result.seed == 7 and result.preset == "paper"
    assert Image.open(io.BytesIO(result.image)).size == (64, 64)
    assert {"structure", "upscale", "refine", "total", "queued"} <= set(result.timings)
    percents = [e.percent for e in events if isinstance(e, Progress) and e.percent is not None]
    assert percents == sorted(percents) and percents[-1] >= 95


def test_a_finished_job_keeps_its_result_but_not_its_decoded_input(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    daemon = start_daemon()
    client = connect(daemon)
    picture = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(picture, "PNG")
    client.generate("img", mode="img2img", image=picture.getvalue(), strength=0.5, steps=2)
    assert isinstance(client.job_events("img")[-1], Result)
    job = daemon.store.get("img")
    assert job is not None and job.request.image is None and job.request.mask is None
    client.send(GetResult(job_id="img"))  # the result is still there for a late client
    assert isinstance(client.job_events("img")[-1], Result)


def test_two_clients_at_once_each_get_only_their_own_events(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    daemon = start_daemon()
    alice, bob = connect(daemon), connect(daemon)
    alice.generate("alice-1", steps=2)
    bob.generate("bob-1", steps=2)
    alice.generate("alice-2", steps=2)
    alice_events = alice.job_events("alice-1") + alice.job_events("alice-2")
    bob_events = bob.job_events("bob-1")
    assert isinstance(alice_events[-1], Result) and isinstance(bob_events[-1], Result)
    # Nothing about another client's job ever reached either of them.
    assert {e.job_id for e in alice_events + alice.backlog if hasattr(e, "job_id")} <= {
        "alice-1",
        "alice-2",
    }
    assert {e.job_id for e in bob_events + bob.backlog if hasattr(e, "job_id")} == {"bob-1"}


def test_cancel_a_queued_job_at_once_and_a_running_job_between_steps(
    start_daemon: StartDaemon, connect: Connect, gate: Any
) -> None:
    daemon = start_daemon()
    client = connect(daemon)
    client.generate("long", prompt="a long job [hold]", steps=8)
    gate.wait_reached()  # running, held after step 1
    client.generate("waiting", steps=2)
    client.wait_for(lambda m: isinstance(m, Queued) and m.job_id == "waiting")

    client.send(Cancel(job_id="waiting", request_id="c1"))
    cancelled = client.wait_for(lambda m: isinstance(m, Error) and m.job_id == "waiting")
    assert cancelled.code == "cancelled"
    client.wait_for(lambda m: isinstance(m, Ok) and m.request_id == "c1")

    client.send(Cancel(job_id="long"))
    client.wait_for(lambda m: isinstance(m, Ok))
    gate.released.set()
    events = client.job_events("long")
    assert isinstance(events[-1], Error) and events[-1].code == "cancelled"
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.step for p in previews] == [1]  # stopped at the next step
    assert not any(isinstance(e, StageImage) for e in events)
    # The waiting job never ran: no progress of it ever arrived.
    assert not any(isinstance(m, Progress) and m.job_id == "waiting" for m in client.backlog)

    client.generate("after", steps=2)
    assert isinstance(client.job_events("after")[-1], Result)


def test_cancel_all_and_front_insert(start_daemon: StartDaemon, connect: Connect) -> None:
    daemon = start_daemon()
    client = connect(daemon)
    client.send(Pause(request_id="p"))
    client.wait_for(lambda m: isinstance(m, Ok) and m.request_id == "p")
    for job_id in ("a", "b"):
        client.generate(job_id, steps=1)
    client.generate("urgent", steps=1, front=True)
    queued = client.wait_for(lambda m: isinstance(m, Queued) and m.job_id == "urgent")
    assert queued.position == 0
    client.send(Resume())
    results = [client.wait_for(lambda m: isinstance(m, (Result, Error))) for _ in range(3)]
    assert [r.job_id for r in results] == ["urgent", "a", "b"]

    client.send(Pause())
    for job_id in ("x", "y"):
        client.generate(job_id, steps=1)
    client.send(Cancel(all=True, request_id="all"))
    replies: list[Any] = []
    while len(replies) < 3:
        reply = client.recv()
        if (isinstance(reply, Ok) and reply.request_id == "all") or (
            isinstance(reply, Error) and reply.job_id in ("x", "y")
        ):
            replies.append(reply)
    assert isinstance(replies[0], Ok) and replies[0].request_id == "all"  # ok first, then:
    assert {(r.code, r.job_id) for r in replies[1:]} == {("cancelled", "x"), ("cancelled", "y")}


def test_disconnect_during_a_job_then_reconnect_and_fetch_the_result(
    start_daemon: StartDaemon, connect: Connect, gate: Any
) -> None:
    daemon = start_daemon()
    first = connect(daemon)
    first.generate("survivor", prompt="a survivor [hold]", steps=3)
    first.wait_for(lambda m: isinstance(m, Preview) and m.job_id == "survivor")
    first.close()

    second = connect(daemon)
    second.send(GetResult(job_id="survivor"))  # still running: its events now come here
    gate.released.set()
    events = second.job_events("survivor")
    assert [e.step for e in events if isinstance(e, Preview)] == [2, 3]
    assert isinstance(events[-1], Result), events[-1]

    # Once finished, the result (and the stage images) can be fetched again by id.
    third = connect(daemon)
    third.send(GetResult(job_id="survivor"))
    fetched = third.job_events("survivor")
    assert [type(m).__name__ for m in fetched] == ["StageImage", "StageImage", "Result"]
    assert fetched[-1].image == events[-1].image

    third.send(GetResult(job_id="never-was"))
    missing = third.wait_for(lambda m: isinstance(m, Error))
    assert (missing.code, missing.field, missing.job_id) == ("not_found", "job_id", "never-was")


def test_a_second_client_asking_for_a_running_job_does_not_take_it_from_the_first(
    start_daemon: StartDaemon, connect: Connect, gate: Any
) -> None:
    daemon = start_daemon()
    owner = connect(daemon)
    owner.generate("shared", prompt="a shared job [hold]", steps=3)
    owner.wait_for(lambda m: isinstance(m, Preview) and m.job_id == "shared")
    watcher = connect(daemon)  # e.g. `mrflow client result shared` while Krita waits
    watcher.send(GetResult(job_id="shared"))
    gate.released.set()
    for client in (owner, watcher):
        events = client.job_events("shared")
        assert isinstance(events[-1], Result), events[-1]


def test_unload_then_generate_again(start_daemon: StartDaemon, connect: Connect) -> None:
    daemon = start_daemon()
    client = connect(daemon)
    client.generate("before", steps=1)
    assert isinstance(client.job_events("before")[-1], Result)
    client.send(GetStatus(request_id="s1"))
    status = client.wait_for(lambda m: isinstance(m, Status))
    assert status.loaded_model == daemon.config.model and status.state == "idle"

    client.send(UnloadModel(model="not-loaded", request_id="u0"))
    error = client.wait_for(lambda m: isinstance(m, Error) and m.request_id == "u0")
    assert (error.code, error.field) == ("not_found", "model")
    assert daemon.config.model in error.message  # says what is loaded instead
    client.send(UnloadModel(request_id="u"))
    client.wait_for(lambda m: isinstance(m, Ok) and m.request_id == "u")
    client.send(GetStatus())
    assert client.wait_for(lambda m: isinstance(m, Status)).loaded_model is None

    client.generate("after", steps=1)
    events = client.job_events("after")
    assert any(isinstance(e, Progress) and e.stage == "load" for e in events)
    assert isinstance(events[-1], Result)


def test_status_subscribers_see_jobs_start_and_end(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    daemon = start_daemon()
    tray, worker_client = connect(daemon), connect(daemon)
    tray.send(SubscribeStatus(request_id="sub"))
    first = tray.wait_for(lambda m: isinstance(m, Status) and m.request_id == "sub")
    assert first.state == "idle" and first.clients == 2
    worker_client.generate("watched", steps=4)
    assert isinstance(worker_client.job_events("watched")[-1], Result)
    seen = [tray.wait_for(lambda m: isinstance(m, Status) and m.state == "busy")]
    assert all(isinstance(m, Status) for m in tray.backlog)  # no job event leaks to the tray
    tray.backlog.clear()  # statuses from before the job started (queued: still idle)
    while not (isinstance(seen[-1], Status) and seen[-1].state == "idle"):
        seen.append(tray.recv())  # everything the tray gets while the job runs, and its end
    statuses = [m for m in seen if isinstance(m, Status)]
    assert {m.job_id for m in statuses[:-1]} == {"watched"} and statuses[-1].job_id is None
    structure = {m.percent for m in statuses if m.stage == "structure"}
    assert len(structure) >= 4  # each low-res step moves the figure, not only each stage
    assert [m.percent for m in statuses[:-1]] == sorted(m.percent for m in statuses[:-1])
    # The tray never receives the job's own events.
    assert statuses == seen


def test_out_of_memory_fails_that_job_with_a_hint_and_the_next_job_runs(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    daemon = start_daemon()
    client = connect(daemon)
    client.generate("too-big", prompt="a huge mural [oom]", width=128, height=128)
    error = client.job_events("too-big")[-1]
    assert isinstance(error, Error) and error.code == "out_of_memory"
    assert "128x128" in error.message and "--offload" in error.message
    client.generate("fits", steps=1)
    assert isinstance(client.job_events("fits")[-1], Result)


def test_admin_shutdown_cancels_the_running_job_tells_queued_ones_and_stops(
    start_daemon: StartDaemon, connect: Connect, gate: Any
) -> None:
    daemon = start_daemon()
    client = connect(daemon)
    client.generate("running", prompt="interrupted [hold]", steps=5)
    gate.wait_reached()
    client.generate("never-runs", steps=1)
    client.wait_for(lambda m: isinstance(m, Queued) and m.job_id == "never-runs")

    client.send(Shutdown(request_id="bye"))
    client.wait_for(lambda m: isinstance(m, Ok) and m.request_id == "bye")
    error = client.wait_for(lambda m: isinstance(m, Error) and m.job_id == "never-runs")
    assert error.code == "shutting_down"
    gate.released.set()
    error = client.wait_for(lambda m: isinstance(m, Error) and m.job_id == "running")
    assert error.code == "cancelled"
    deadline = time.monotonic() + 30
    while daemon._stopped is not None and not daemon._stopped.is_set():
        assert time.monotonic() < deadline, "the daemon did not stop"
        time.sleep(0.05)


def test_a_job_without_a_model_uses_the_one_used_last(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    daemon = start_daemon(max_resident_models=2)
    client = connect(daemon)
    for job_id, model in (("a", daemon.config.model), ("b", "builtin"), ("c", None)):
        client.generate(job_id, steps=1, model=model)
        result = client.job_events(job_id)[-1]
        assert isinstance(result, Result), result
    assert result.model == "builtin"  # not the default, nor the one loaded first
    client.send(GetStatus(request_id="s"))
    status = client.wait_for(lambda m: isinstance(m, Status) and m.request_id == "s")
    assert status.loaded_model == "builtin"


def test_an_unload_asked_for_while_the_daemon_stops_is_answered_shutting_down(
    start_daemon: StartDaemon, connect: Connect
) -> None:
    daemon = start_daemon()
    client = connect(daemon)
    assert daemon.worker.stop(cancel_running=True, timeout=10)  # the stop has begun
    client.send(UnloadModel(request_id="late"))
    error = client.wait_for(lambda m: isinstance(m, Error) and m.request_id == "late")
    assert error.code == "shutting_down"
