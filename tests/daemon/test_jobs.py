"""The job queue and the result store, without a server: FIFO, front-insert, limits, retention."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from mrflow_daemon.engine.request import GenerationRequest
from mrflow_daemon.server.jobs import Job, JobQueue, JobRefused, JobState, JobStore


def job(job_id: str, owner: str = "a") -> Job:
    return Job(job_id=job_id, owner=owner, request=GenerationRequest("p"), model="builtin")


def test_fifo_with_front_insert_and_positions() -> None:
    queue = JobQueue(max_total=10, max_per_client=10)
    for name in ("one", "two"):
        queue.submit(job(name))
    queue.submit(job("urgent"), front=True)
    assert [queue.position(n) for n in ("urgent", "one", "two")] == [1, 2, 3]
    taken = [queue.take(), queue.take(), queue.take()]
    assert [j.job_id for j in taken if j] == ["urgent", "one", "two"]


def test_per_client_limit_counts_the_running_job() -> None:
    queue = JobQueue(max_total=10, max_per_client=2)
    queue.submit(job("a1"))
    queue.submit(job("a2"))
    with pytest.raises(JobRefused) as refused:
        queue.submit(job("a3"))
    assert refused.value.code == "queue_full" and "at most 2" in refused.value.message
    queue.submit(job("b1", owner="b"))  # another client is not affected
    running = queue.take()
    assert running is not None and running.job_id == "a1"
    with pytest.raises(JobRefused):
        queue.submit(job("a3"))  # a1 runs, a2 waits: still two
    queue.done(running)
    queue.submit(job("a3"))


def test_total_limit() -> None:
    queue = JobQueue(max_total=1, max_per_client=5)
    queue.submit(job("x", owner="a"))
    with pytest.raises(JobRefused, match="queue is full"):
        queue.submit(job("y", owner="b"))


def test_remove_and_pause() -> None:
    queue = JobQueue(max_total=10, max_per_client=10)
    queue.submit(job("one"))
    queue.submit(job("two"))
    removed = queue.remove("one")
    assert removed is not None and removed.job_id == "one"
    assert queue.remove("one") is None
    queue.set_paused(True)
    # Paused: take() waits (once) and then yields with nothing, though "two" is queued.
    assert queue.take(should_yield=iter([False, True]).__next__) is None
    queue.set_paused(False)
    taken = queue.take(should_yield=iter([False, True]).__next__)
    assert taken is not None and taken.job_id == "two"


def test_take_blocks_until_a_job_arrives_and_close_wakes_it() -> None:
    queue = JobQueue(max_total=10, max_per_client=10)
    got: list[Job | None] = []
    taker = threading.Thread(target=lambda: got.append(queue.take()))
    taker.start()
    time.sleep(0.05)
    queue.submit(job("late"))
    taker.join(5)
    assert got and got[0] is not None and got[0].job_id == "late"

    # A taker blocked on an empty queue: close() wakes it, with nothing.
    got.clear()
    taker = threading.Thread(target=lambda: got.append(queue.take()))
    taker.start()
    time.sleep(0.05)
    assert taker.is_alive()  # waiting
    queue.submit(job("left"))  # taken by it, or handed back by close(): never lost
    taker.join(5)
    blocked = threading.Thread(target=lambda: got.append(queue.take()))
    blocked.start()
    time.sleep(0.05)
    assert [j.job_id for j in queue.close()] == []
    blocked.join(5)
    assert not blocked.is_alive() and got[-1] is None
    assert queue.take() is None
    with pytest.raises(JobRefused, match="shutting down"):
        queue.submit(job("after"))


def test_store_refuses_duplicates_and_forgets_after_retention() -> None:
    store = JobStore(retention_s=60, max_finished=10)
    first = job("same")
    store.add(first)
    with pytest.raises(JobRefused) as refused:
        store.add(job("same"))
    assert refused.value.code == "duplicate_job" and refused.value.field == "job_id"
    first.state, first.finished_at = JobState.DONE, time.monotonic()
    assert store.get("same") is first
    first.finished_at -= 61  # its minute of retention is over (no sleeping, no race)
    assert store.get("same") is None
    store.add(job("same"))  # the id is free again


def test_store_keeps_only_the_newest_finished_results() -> None:
    store = JobStore(retention_s=100, max_finished=2)
    for index in range(4):
        finished = job(f"j{index}")
        finished.state, finished.finished_at = JobState.DONE, time.monotonic() + index
        store.add(finished)
    running = job("running")
    running.state = JobState.RUNNING
    store.add(running)
    store.prune()
    assert sorted(j.job_id for j in store.all()) == ["j2", "j3", "running"]


def test_loads_asked_for_while_the_worker_stops_are_refused_not_run() -> None:
    from mrflow_daemon.server.worker import GenerationWorker, ShuttingDownError

    ran: list[str] = []
    worker = GenerationWorker(JobQueue(max_total=10, max_per_client=10), None, None)  # type: ignore[arg-type]
    worker.start()
    assert worker.call(lambda: ran.append("before")).result(5) is None
    assert worker.stop(cancel_running=True, timeout=5)
    late = worker.call(lambda: ran.append("after"))  # the thread is gone: answered at once
    with pytest.raises(ShuttingDownError, match="shutting down"):
        late.result(0)
    assert ran == ["before"] and late.exception().code == "shutting_down"  # type: ignore[union-attr]


def test_a_job_taken_just_as_the_worker_stops_is_cancelled_not_run() -> None:
    from mrflow_daemon.server.worker import GenerationWorker

    class Sink:
        def __init__(self) -> None:
            self.events: list[str] = []

        def job_cancelled(self, job: Job) -> None:
            self.events.append(f"cancelled {job.job_id}")

        def __getattr__(self, name: str) -> Any:
            return lambda *args: self.events.append(name)

    sink = Sink()
    worker = GenerationWorker(JobQueue(max_total=10, max_per_client=10), None, sink)  # type: ignore[arg-type]
    worker._stopping.set()  # stop() ran after take() handed the job out, before `running` was set
    job = Job("late", "client", GenerationRequest("x"), "model")
    worker._run_job(job)
    assert sink.events == ["cancelled late"] and job.cancel_token.cancelled
