"""The worker registry: a worker lists itself and its jobs while it runs, leaves when it
stops, and shows as lost (then goes away) when it is killed."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest
import redis

import notifyq
from notifyq import Queue
from notifyq.errors import CorruptRecord

from ..support import counting_logs, eventually, running, running_async, spawner

PROC_WORKER = pathlib.Path(__file__).parent / "proc_worker.py"


def listed(queue: Queue, job: notifyq.Job) -> Callable[[], bool]:
    """True once some worker of ``queue`` lists ``job`` as running."""
    return lambda: any(j["id"] == job.id for w in queue.workers() for j in w["jobs"])


@pytest.mark.parametrize("flavour", ["threads", "asyncio"])
def test_a_running_worker_lists_itself_and_its_job_and_leaves_when_stopped(
    queue: Queue, flavour: str
) -> None:
    gate, started = threading.Event(), threading.Event()

    def held(payload: str) -> str:
        started.set()
        assert gate.wait(30)
        return payload

    worker: notifyq.Worker | notifyq.asyncio.Worker
    if flavour == "threads":
        worker = notifyq.Worker(queue, held, lease=1.0, concurrency=2)
        run = running(worker)
    else:
        worker = notifyq.asyncio.Worker(queue.name, held, url=queue.url, lease=1.0, concurrency=2)
        run = running_async(worker)
    with run:
        job = queue.enqueue("x")
        assert started.wait(10)
        eventually(listed(queue, job))
        [me] = queue.workers()
        assert (me["id"], me["queue"], me["queues"], me["pid"]) == (
            worker.id,
            queue.name,
            [queue.name],
            os.getpid(),
        )
        assert me["alive"] is True and me["host"] and me["concurrency"] == 2
        assert me["running"] == 1 and me["started_at"] <= me["last_beat"]
        [running_job] = me["jobs"]
        assert (running_job["id"], running_job["attempt"], running_job["queue"]) == (
            job.id,
            1,
            queue.name,
        )
        assert running_job["started_at"] == job.info()["started_at"]
        gate.set()
        assert job.wait(timeout=10) == "x"
        eventually(lambda: queue.workers()[0]["processed"] == 1 and not queue.workers()[0]["jobs"])
    assert queue.workers() == []  # a clean stop deletes the entry


def test_failures_are_counted(queue: Queue, start_worker: Callable) -> None:
    def handler(payload: str) -> str:
        if payload == "bad":
            raise ValueError("bad payload")
        return payload

    worker = start_worker(handler, lease=1.0)
    queue.enqueue("bad", max_attempts=2)
    queue.enqueue("good")
    eventually(lambda: queue.stats()["dead"] == 1)
    eventually(lambda: [(w["processed"], w["failures"]) for w in queue.workers()] == [(3, 2)])
    assert worker.failures == 2


@pytest.mark.standalone(reason="a worker of several queues blocks on all their wake lists at once")
def test_a_worker_of_two_queues_is_in_both_registries(queue: Queue, name: str) -> None:
    other = Queue(f"{name}-b", queue.url)
    worker = notifyq.Worker([queue, other], lambda p: p, lease=1.0)
    try:
        with running(worker):
            eventually(lambda: bool(queue.workers()) and bool(other.workers()))
            assert queue.workers()[0]["queues"] == [queue.name, other.name]
            assert other.workers()[0]["id"] == worker.id
        assert queue.workers() == other.workers() == []
    finally:
        other.client.delete(other.keys.workers, other.keys.worker(worker.id))


@pytest.fixture
def spawn(queue: Queue, tmp_path: pathlib.Path) -> Iterator[Callable[[str], subprocess.Popen]]:
    with spawner(PROC_WORKER, queue.url, queue.name) as start:
        yield lambda mode: start(mode, str(tmp_path))


@pytest.mark.parametrize("mode", ["block", "async-block"])
def test_a_sigkilled_worker_shows_as_lost_then_goes_away(
    queue: Queue, spawn: Callable, mode: str
) -> None:
    proc = spawn(mode)
    job = queue.enqueue("work")
    eventually(listed(queue, job), timeout=20)
    [entry] = queue.workers()
    assert entry["pid"] == proc.pid and entry["alive"] is True
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    eventually(lambda: [w["alive"] for w in queue.workers()] == [False], timeout=20)
    eventually(lambda: queue.workers() == [], timeout=30)  # its entry expired by itself


def test_a_registry_key_of_another_type_is_named_and_the_worker_works_on(
    queue: Queue, r: redis.Redis, start_worker: Callable
) -> None:
    r.set(queue.keys.workers, "not a zset")
    with counting_logs(f"{queue.keys.workers} holds a string") as logged:
        start_worker(lambda p: p * 2, lease=1.0)
        assert queue.enqueue(21).wait(timeout=10) == 42
        eventually(lambda: logged.count >= 1)
    with pytest.raises(CorruptRecord, match="wrong type"):
        queue.workers()
    r.delete(queue.keys.workers)
    eventually(lambda: len(queue.workers()) == 1)  # its next beat registers it again
