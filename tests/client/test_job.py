"""The job handle on its own: event order, outcomes, timeouts, a lost connection."""

from __future__ import annotations

import threading

import pytest
from mrflow_daemon.client import ConnectionLost, Job, JobCancelled, JobFailed
from mrflow_protocol import Error, Progress, Queued, Result
from mrflow_protocol.examples import IMAGE

RESULT = Result(job_id="j", image=IMAGE, width=64, height=48, seed=3)


def make_job() -> tuple[Job, list[str]]:
    cancelled: list[str] = []
    return Job("j", cancelled.append), cancelled


def test_events_end_with_the_result() -> None:
    job, _ = make_job()
    job._push(Queued(job_id="j", position=0))
    job._push(Progress(job_id="j", stage="structure", step=1, total=2))
    job._push(RESULT)
    assert [type(e) for e in job] == [Queued, Progress, Result]
    assert job.done and job.wait(timeout=0) is RESULT


def test_wait_skips_unread_events_across_threads() -> None:
    job, _ = make_job()
    feeder = threading.Timer(
        0.05, lambda: (job._push(Queued(job_id="j", position=1)), job._push(RESULT))
    )
    feeder.start()
    assert job.wait(timeout=5) is RESULT
    feeder.join()


@pytest.mark.parametrize(
    ("code", "kind"), [("cancelled", JobCancelled), ("out_of_memory", JobFailed)]
)
def test_an_error_ends_the_job_and_is_raised(code: str, kind: type[JobFailed]) -> None:
    job, _ = make_job()
    job._push(Error(code=code, message="m", job_id="j"))
    with pytest.raises(kind) as info:
        job.wait(timeout=0)
    assert (info.value.code, info.value.job_id) == (code, "j")
    assert isinstance(info.value, JobCancelled) == (code == "cancelled")


def test_timeouts() -> None:
    job, _ = make_job()
    with pytest.raises(TimeoutError, match="job j"):
        job.wait(timeout=0.05)
    with pytest.raises(TimeoutError):
        next(job.events(timeout=0.05))


def test_a_lost_connection_is_raised_to_every_reader() -> None:
    job, _ = make_job()
    job._push(Queued(job_id="j", position=0))
    job._lose("the connection closed")
    events = job.events(timeout=1)
    assert isinstance(next(events), Queued)
    with pytest.raises(ConnectionLost, match="the connection closed"):
        next(events)
    with pytest.raises(ConnectionLost):
        job.wait(timeout=1)


def test_cancel_asks_only_while_the_job_is_open() -> None:
    job, cancelled = make_job()
    job.cancel()
    job._push(RESULT)
    job.cancel()
    assert cancelled == ["j"]
