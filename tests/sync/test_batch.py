"""Batch handlers, blocking worker: ``Worker(queue, handler, batch_size=N, batch_wait=S)``
calls ``handler(jobs)``; each job keeps its own result, events, retries and dead letter."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import notifyq
from notifyq import Queue
from notifyq.errors import JobCancelled, JobFailed, ValidationError

from ..support import eventually, running, spawner

PROC_WORKER = pathlib.Path(__file__).parent / "proc_batch_worker.py"
FAST = {"backoff": (0.01, 0.05), "lease": 0.6}  # quick retries, housekeeping every 0.2 s


def events(r: redis.Redis, queue: Queue, job: notifyq.Job) -> list[dict[str, Any]]:
    """The job's events, from the queue's stream."""
    out = [json.loads(fields[b"e"]) for _, fields in r.xrange(queue.keys.events)]
    return [e for e in out if e["id"] == job.id]


def test_batches_never_exceed_batch_size_and_each_job_has_its_own_outcome(
    queue: Queue, r: redis.Redis
) -> None:
    batches: list[list[str]] = []

    def handle(jobs: list[notifyq.ActiveJob]) -> list[int]:
        batches.append([j.id for j in jobs])
        return [j.payload * 10 for j in jobs]

    jobs = queue.enqueue_many(list(range(12)))
    notifyq.Worker(queue, handle, batch_size=5, batch_wait=0.2).run(burst=True)

    assert all(1 <= len(b) <= 5 for b in batches), batches
    assert sorted(i for b in batches for i in b) == sorted(j.id for j in jobs)
    for n, job in enumerate(jobs):
        assert job.result() == n * 10
        completed = [e for e in events(r, queue, job) if e["type"] == "completed"]
        assert [e["result"] for e in completed] == [n * 10]


def test_a_partial_batch_is_handled_once_batch_wait_passes(
    queue: Queue, start_worker: Callable
) -> None:
    calls: list[list[str]] = []

    def handle(jobs: list[notifyq.ActiveJob]) -> list[str]:
        calls.append([j.id for j in jobs])
        return [f"order {j.payload} sent" for j in jobs]

    start_worker(handle, batch_size=10, batch_wait=0.3)
    job = queue.enqueue(7)
    assert job.wait(timeout=15) == "order 7 sent"
    assert calls == [[job.id]]


def test_a_raised_exception_retries_every_job_of_the_batch(queue: Queue, r: redis.Redis) -> None:
    calls: list[list[tuple[str, int]]] = []

    def handle(jobs: list[notifyq.ActiveJob]) -> list[str]:
        calls.append([(j.id, j.attempt) for j in jobs])
        if any(j.attempt == 1 for j in jobs):
            raise ConnectionError("remote order system is down")
        return [f"sent on attempt {j.attempt}" for j in jobs]

    jobs = queue.enqueue_many(["a", "b", "c"])
    notifyq.Worker(queue, handle, batch_size=3, **FAST).run(burst=True)

    assert calls[0] == [(j.id, 1) for j in jobs]  # one batch of the three, which failed
    for job in jobs:
        assert job.result() == "sent on attempt 2"
        kinds = [e["type"] for e in events(r, queue, job)]
        assert kinds.count("retrying") == 1 and kinds.count("completed") == 1
        failed = next(e for e in events(r, queue, job) if e["type"] == "failed")
        assert failed["error"]["type"] == "ConnectionError"


def test_an_exception_item_fails_only_its_job(queue: Queue) -> None:
    def handle(jobs: list[notifyq.ActiveJob]) -> list[Any]:
        return [ValueError("unknown article") if j.payload == "bad" else "ok" for j in jobs]

    good = queue.enqueue_many(["x", "y"])
    bad = queue.enqueue("bad", max_attempts=1)
    notifyq.Worker(queue, handle, batch_size=5, batch_wait=0, **FAST).run(burst=True)

    assert [j.result() for j in good] == ["ok", "ok"]
    assert bad.status() == "dead"
    with pytest.raises(JobFailed, match="ValueError: unknown article"):
        bad.result()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ([1], r"ValueError: batch handler returned 1 results for 3 jobs"),
        ({"a": 1}, r"TypeError: batch handler returned dict, not a list of 3 results"),
    ],
    ids=["short", "not-a-list"],
)
def test_a_wrong_reply_fails_every_job_with_a_clear_error(
    queue: Queue, reply: object, error: str
) -> None:
    jobs = queue.enqueue_many([1, 2, 3], max_attempts=1)
    notifyq.Worker(queue, lambda jobs: reply, batch_size=3, **FAST).run(burst=True)
    for job in jobs:
        assert job.status() == "dead"
        with pytest.raises(JobFailed, match=error):
            job.result()


def test_a_batch_past_its_time_limit_fails_every_job(queue: Queue) -> None:
    release = threading.Event()

    def stuck(jobs: list[notifyq.ActiveJob]) -> list[str]:
        release.wait(10)
        return ["late"] * len(jobs)

    jobs = queue.enqueue_many([1, 2], max_attempts=1)
    slow = queue.enqueue(3, max_attempts=1, timeout=0.3)  # the smallest limit wins
    worker = notifyq.Worker(queue, stuck, batch_size=3, timeout=60, **FAST)
    with running(worker):
        for job in [*jobs, slow]:
            with pytest.raises(JobFailed, match=r"TimeoutError: job exceeded its timeout of 0\.3s"):
                job.wait(timeout=15)
        release.set()


def test_cancelling_one_job_of_a_running_batch_flags_it_alone(queue: Queue) -> None:
    started, seen = threading.Event(), threading.Event()

    def handle(jobs: list[notifyq.ActiveJob]) -> list[Any]:
        started.set()
        eventually(lambda: any(j.cancelled for j in jobs))
        seen.set()
        return [JobCancelled(j.id) if j.cancelled else "sent" for j in jobs]

    jobs = queue.enqueue_many(["a", "b", "c"])
    worker = notifyq.Worker(queue, handle, batch_size=3, **FAST)
    with running(worker):
        assert started.wait(10)
        assert jobs[1].cancel() == "requested"
        with pytest.raises(JobCancelled):
            jobs[1].wait(timeout=15)
        assert [jobs[0].wait(timeout=15), jobs[2].wait(timeout=15)] == ["sent", "sent"]
    assert seen.is_set()


def test_stopping_releases_the_jobs_of_the_batch_being_filled(queue: Queue) -> None:
    calls: list[int] = []
    worker = notifyq.Worker(queue, lambda jobs: calls.append(len(jobs)), batch_size=5,
                            batch_wait=60)  # fmt: skip
    with running(worker):
        job = queue.enqueue("held")
        eventually(lambda: job.status() == "active")  # claimed, waiting for more
    assert calls == []
    assert job.status() == "queued" and job.info()["attempt"] == 0


def test_graceful_stop_releases_a_batch_that_outlives_the_grace(queue: Queue) -> None:
    started, release = threading.Event(), threading.Event()

    def long(jobs: list[notifyq.ActiveJob]) -> list[str]:
        started.set()
        release.wait(10)
        return ["late"] * len(jobs)

    jobs = queue.enqueue_many([1, 2])
    try:
        with running(notifyq.Worker(queue, long, batch_size=2, grace=0.2)):
            assert started.wait(10)
    finally:
        release.set()
    assert [j.status() for j in jobs] == ["queued", "queued"]


@pytest.fixture
def spawn(queue: Queue, tmp_path: pathlib.Path) -> Iterator[Callable[[str], subprocess.Popen]]:
    with spawner(PROC_WORKER, queue.url, queue.name) as start:
        yield lambda flavour: start(flavour, str(tmp_path))


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_sigkilled_batch_worker_jobs_are_completed_once_by_another(
    queue: Queue, r: redis.Redis, spawn: Callable, tmp_path: pathlib.Path, flavour: str
) -> None:
    jobs = queue.enqueue_many(["o1", "o2", "o3"])
    proc = spawn(flavour)
    eventually(lambda: all((tmp_path / f"{j.id}.started").exists() for j in jobs), timeout=20)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert [j.status() for j in jobs] == ["active"] * 3  # the dead worker's leases hold

    seen: list[str] = []

    def handle(batch: list[notifyq.ActiveJob]) -> list[list[Any]]:
        seen.extend(j.id for j in batch)
        return [[j.payload, j.attempt] for j in batch]

    with running(notifyq.Worker(queue, handle, batch_size=3, batch_wait=0.2, lease=1.0)):
        assert [j.wait(timeout=20) for j in jobs] == [["o1", 2], ["o2", 2], ["o3", 2]]
    assert sorted(seen) == sorted(j.id for j in jobs)
    for job in jobs:
        assert [e["type"] for e in events(r, queue, job)].count("completed") == 1


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"batch_size": 0}, "batch_size must be an integer from 1 to 500, not 0"),
        ({"batch_size": 501}, "batch_size must be an integer from 1 to 500"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"batch_size": True}, "batch_size must be an integer"),
        ({"batch_size": 5, "batch_wait": -1}, "batch_wait must be >= 0"),
        ({"batch_size": 5, "batch_wait": float("nan")}, "batch_wait must be a number"),
        ({"batch_size": 5, "batch_wait": "2s"}, "batch_wait must be a number"),
        ({"batch_wait": 1.0}, "batch_wait is for batch handlers: give batch_size too"),
    ],
    ids=["size-0", "size-big", "size-float", "size-bool", "wait-negative", "wait-nan",
         "wait-text", "wait-alone"],
)  # fmt: skip
def test_a_batch_worker_refuses_bad_batch_settings(
    redis_url: str, settings: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValidationError, match=words):
        notifyq.Worker("q", lambda jobs: jobs, url=redis_url, **settings)


def test_batch_mode_runs_one_batch_at_a_time_unless_told(redis_url: str) -> None:
    assert notifyq.Worker("q", len, url=redis_url, batch_size=5).concurrency == 1
    assert notifyq.Worker("q", len, url=redis_url, batch_size=5, concurrency=3).concurrency == 3
