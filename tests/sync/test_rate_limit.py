"""Per-queue rate limits (blocking API): at most N starts in any window, across workers."""

from __future__ import annotations

import math
import os
import pathlib
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

import notifyq
from notifyq import ops, rates
from notifyq.errors import CorruptRecord, ValidationError

from ..rates_check import assert_within_limit, claim_reply, start_times, started_at
from ..support import eventually, running

ROOT = pathlib.Path(__file__).resolve().parents[2]

HANDLERS = textwrap.dedent(
    """
    def send(payload, job):
        if payload.get("flaky") and job.attempt == 1:
            raise RuntimeError("provider busy")
        return payload
    """
)


def send(payload: dict, job: notifyq.ActiveJob) -> dict:
    if payload.get("flaky") and job.attempt == 1:
        raise RuntimeError("provider busy")  # its retry is a start too
    return payload


@pytest.fixture
def other(r: redis.Redis, redis_url: str) -> Iterator[notifyq.Queue]:
    """A second queue, its keys deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    yield notifyq.Queue(name, redis_url)
    keys = list(r.scan_iter(match=f"nq:{{{name}}}:*", count=1000))
    if keys:
        r.delete(*keys)


def test_workers_in_two_processes_never_start_more_than_the_limit_in_any_window(
    queue: notifyq.Queue, name: str, redis_url: str, r: redis.Redis, tmp_path: pathlib.Path
) -> None:
    queue.set_rate_limit(3, 0.4)
    jobs = queue.enqueue_many([{"n": i, "flaky": i == 0} for i in range(15)])
    (tmp_path / "rate_handlers.py").write_text(HANDLERS)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "notifyq", "--url", redis_url, "worker", "rate_handlers:send",
            "-q", name, "-c", "4", "--burst"]  # fmt: skip
    other_process = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        settings = {"concurrency": 4, "backoff": (0.01, 0.05)}
        with (
            running(notifyq.Worker(queue, send, **settings)),
            running(notifyq.Worker(queue, send, **settings)),
        ):
            eventually(lambda: queue.stats()["totals"].get("completed", 0) == 15, timeout=60)
    finally:
        try:
            _, errors = other_process.communicate(timeout=30)  # a burst worker: it ends
        finally:
            if other_process.poll() is None:
                other_process.kill()
                other_process.communicate(timeout=10)
    assert other_process.returncode == 0, errors
    assert [j.result() for j in jobs] == [{"n": i, "flaky": i == 0} for i in range(15)]

    starts = start_times(r, name)
    assert len(starts) == 16  # 15 jobs, one of them twice
    assert_within_limit(starts, 3, 400)
    assert_within_limit(started_at(r, name, [j.id for j in jobs]), 3, 400)


def test_a_claim_at_the_limit_gets_what_the_window_allows_the_wait_and_passes_no_wake_up(
    queue: notifyq.Queue, r: redis.Redis
) -> None:
    queue.set_rate_limit(2, timedelta(seconds=10))
    queue.enqueue_many(list(range(5)))
    r.delete(queue.keys.wake)

    jobs, refused, wait = queue._run(claim_reply(queue.keys, 5))
    assert (len(jobs) // 7, refused) == (2, [])
    assert 0 < wait <= 10_000  # ms until the oldest start leaves the window
    assert rates.wait_of([jobs, refused, wait]) == wait / 1000
    assert r.llen(queue.keys.wake) == 0  # 3 jobs wait, but no other worker is woken for them
    assert r.zcard(queue.keys.starts) == 2

    jobs, _, wait = queue._run(claim_reply(queue.keys, 5))
    assert jobs == [] and 0 < wait <= 10_000
    assert queue.stats()["pending"] == 3

    queue.clear_rate_limit()
    assert r.exists(queue.keys.starts) == 0
    jobs, _, wait = queue._run(claim_reply(queue.keys, 1))
    assert (len(jobs) // 7, wait) == (1, 0)
    assert r.llen(queue.keys.wake) == 1  # unlimited: the wake-up goes on to the next worker


def test_the_limit_is_read_and_shown_in_stats(queue: notifyq.Queue) -> None:
    assert queue.rate_limit() is None and queue.stats()["rate_limit"] is None
    queue.set_rate_limit(5, 1)
    assert queue.rate_limit() == (5, 1.0)
    assert queue.rate_limit() == rates.RateLimit(jobs=5, per=1.0)
    assert queue.stats()["rate_limit"] == {"jobs": 5, "per": 1.0}
    queue.set_rate_limit(100, timedelta(minutes=1))
    assert queue.stats()["rate_limit"] == {"jobs": 100, "per": 60.0}
    queue.clear_rate_limit()
    assert queue.rate_limit() is None


def held(queue: notifyq.Queue) -> bool:
    """True when a claim on ``queue`` now gets no job because of its rate limit."""
    jobs, _, wait = queue._run(claim_reply(queue.keys, 1))
    assert jobs == []
    return bool(wait > 0)


def test_changing_and_clearing_the_limit_takes_effect_while_a_worker_runs(
    queue: notifyq.Queue, start_worker: object
) -> None:
    queue.set_rate_limit(1, 60)
    queue.enqueue_many([{"n": i} for i in range(4)])
    start_worker(send, concurrency=4)  # type: ignore[operator]
    done = lambda: queue.stats()["totals"].get("completed", 0)  # noqa: E731
    eventually(lambda: done() == 1)
    assert held(queue) and done() + queue.stats()["active"] == 1

    queue.set_rate_limit(2, 60)  # room for one more start in this minute
    eventually(lambda: done() == 2)
    assert held(queue) and done() + queue.stats()["active"] == 2

    queue.clear_rate_limit()
    eventually(lambda: done() == 4)


def test_a_limited_queue_does_not_starve_the_other_queues_of_its_worker(
    queue: notifyq.Queue, other: notifyq.Queue
) -> None:
    queue.set_rate_limit(1, 3600)
    queue.enqueue_many([{"n": i} for i in range(3)])
    worker = notifyq.Worker([queue, other], send, concurrency=2)
    with running(worker):
        eventually(lambda: queue.stats()["totals"].get("completed", 0) == 1)
        jobs = other.enqueue_many([{"n": i} for i in range(5)])
        eventually(lambda: other.stats()["totals"].get("completed", 0) == 5)
    assert [j.result() for j in jobs] == [{"n": i} for i in range(5)]
    assert queue.stats()["pending"] == 2


BAD_LIMITS = {
    "no-jobs": (0, 1), "too-many-jobs": (rates.MAX_JOBS + 1, 1), "jobs-bool": (True, 1),
    "jobs-text": ("5", 1), "jobs-float": (5.0, 1), "per-zero": (5, 0), "per-negative": (5, -1),
    "per-nan": (5, math.nan), "per-inf": (5, math.inf), "per-too-long": (5, 86_401),
    "per-below-a-ms": (5, 0.0001), "per-text": (5, "1s"), "per-bool": (5, True),
    "per-none": (5, None), "per-negative-timedelta": (5, timedelta(seconds=-1)),
}  # fmt: skip


@pytest.mark.parametrize(("jobs", "per"), BAD_LIMITS.values(), ids=BAD_LIMITS.keys())
def test_a_bad_limit_is_refused_and_nothing_is_written(
    queue: notifyq.Queue, r: redis.Redis, jobs: object, per: object
) -> None:
    queue.set_rate_limit(7, 2)
    with pytest.raises(ValidationError, match=r"rate limit (jobs|per) must be"):
        queue.set_rate_limit(jobs, per)  # type: ignore[arg-type]
    assert queue.rate_limit() == (7, 2.0)


@pytest.mark.parametrize("value", ["lots", "5/0", "0/1000", "5/1000/2", "-5/1000", "5 per 1"])
def test_a_rate_limit_notifyq_did_not_write_is_refused_not_read_as_no_limit(
    queue: notifyq.Queue, r: redis.Redis, value: str
) -> None:
    queue.enqueue(1)
    r.hset(queue.keys.config, "rate_limit", value)
    with pytest.raises(CorruptRecord, match="config field rate_limit holds"):
        queue.rate_limit()
    with pytest.raises(CorruptRecord, match="config field rate_limit holds"):
        queue.stats()
    with pytest.raises(CorruptRecord, match="config field rate_limit holds"):
        queue._run(ops.claim(queue.keys, "w", 1, 60_000))
    r.hdel(queue.keys.config, "rate_limit")
    assert queue.stats()["pending"] == 1
