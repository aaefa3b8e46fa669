"""Per-queue rate limits (asyncio API): the same guarantee as the blocking API."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta

import pytest
import redis

import notifyq.asyncio as anq
from notifyq import ops, rates
from notifyq.asyncio import connection as aconnection
from notifyq.errors import CorruptRecord, ValidationError

from ..rates_check import assert_within_limit, claim_reply, start_times, started_at
from ..support import eventually_async


async def send(payload: dict, job: anq.ActiveJob) -> dict:
    if payload.get("flaky") and job.attempt == 1:
        raise RuntimeError("provider busy")  # its retry is a start too
    return payload


async def completed(queue: anq.Queue) -> int:
    return int((await queue.stats())["totals"].get("completed", 0))


@pytest.fixture
async def other(r: redis.Redis, redis_url: str) -> AsyncIterator[anq.Queue]:
    """A second queue, its keys deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    yield anq.Queue(name, redis_url)
    await aconnection.close_shared()
    keys = list(r.scan_iter(match=f"nq:{{{name}}}:*", count=1000))
    if keys:
        r.delete(*keys)


async def test_several_workers_never_start_more_than_the_limit_in_any_window(
    aqueue: anq.Queue, name: str, r: redis.Redis
) -> None:
    await aqueue.set_rate_limit(4, 0.3)
    jobs = await aqueue.enqueue_many([{"n": i, "flaky": i == 0} for i in range(16)])
    workers = [anq.Worker(aqueue, send, concurrency=8, backoff=(0.01, 0.05)) for _ in range(3)]
    await asyncio.wait_for(asyncio.gather(*(w.run(burst=True) for w in workers)), 60)

    assert [await j.result() for j in jobs] == [{"n": i, "flaky": i == 0} for i in range(16)]
    starts = start_times(r, name)
    assert len(starts) == 17  # 16 jobs, one of them twice
    assert_within_limit(starts, 4, 300)
    assert_within_limit(started_at(r, name, [j.id for j in jobs]), 4, 300)


async def test_a_claim_at_the_limit_gets_what_the_window_allows_the_wait_and_passes_no_wake_up(
    aqueue: anq.Queue, r: redis.Redis
) -> None:
    await aqueue.set_rate_limit(2, timedelta(seconds=10))
    await aqueue.enqueue_many(list(range(5)))
    r.delete(aqueue.keys.wake)

    jobs, refused, wait = await aqueue._run(claim_reply(aqueue.keys, 5))
    assert (len(jobs) // 7, refused) == (2, [])
    assert 0 < wait <= 10_000
    assert r.llen(aqueue.keys.wake) == 0
    jobs, _, wait = await aqueue._run(claim_reply(aqueue.keys, 5))
    assert jobs == [] and 0 < wait <= 10_000

    await aqueue.clear_rate_limit()
    jobs, _, wait = await aqueue._run(claim_reply(aqueue.keys, 1))
    assert (len(jobs) // 7, wait) == (1, 0)
    assert r.llen(aqueue.keys.wake) == 1


async def test_the_limit_is_read_and_shown_in_stats(aqueue: anq.Queue) -> None:
    assert await aqueue.rate_limit() is None
    assert (await aqueue.stats())["rate_limit"] is None
    await aqueue.set_rate_limit(5, 1)
    assert await aqueue.rate_limit() == rates.RateLimit(jobs=5, per=1.0)
    assert (await aqueue.stats())["rate_limit"] == {"jobs": 5, "per": 1.0}
    await aqueue.clear_rate_limit()
    assert await aqueue.rate_limit() is None


async def held(queue: anq.Queue) -> bool:
    """True when a claim on ``queue`` now gets no job because of its rate limit."""
    jobs, _, wait = await queue._run(claim_reply(queue.keys, 1))
    assert jobs == []
    return bool(wait > 0)


async def test_changing_and_clearing_the_limit_takes_effect_while_a_worker_runs(
    aqueue: anq.Queue,
) -> None:
    await aqueue.set_rate_limit(1, 60)
    await aqueue.enqueue_many([{"n": i} for i in range(4)])
    worker = anq.Worker(aqueue, send, concurrency=4)
    task = asyncio.create_task(worker.run())
    try:
        await eventually_async(lambda: _is(completed(aqueue), 1))
        assert await held(aqueue)
        assert await completed(aqueue) + (await aqueue.stats())["active"] == 1

        await aqueue.set_rate_limit(2, 60)  # room for one more start in this minute
        await eventually_async(lambda: _is(completed(aqueue), 2))
        assert await held(aqueue)
        assert await completed(aqueue) + (await aqueue.stats())["active"] == 2

        await aqueue.clear_rate_limit()
        await eventually_async(lambda: _is(completed(aqueue), 4))
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def _is(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def test_a_limited_queue_does_not_starve_the_other_queues_of_its_worker(
    aqueue: anq.Queue, other: anq.Queue
) -> None:
    await aqueue.set_rate_limit(1, 3600)
    await aqueue.enqueue_many([{"n": i} for i in range(3)])
    worker = anq.Worker([aqueue, other], send, concurrency=2)
    task = asyncio.create_task(worker.run())
    try:
        await eventually_async(lambda: _is(completed(aqueue), 1))
        jobs = await other.enqueue_many([{"n": i} for i in range(5)])
        await eventually_async(lambda: _is(completed(other), 5))
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    assert [await j.result() for j in jobs] == [{"n": i} for i in range(5)]
    assert (await aqueue.stats())["pending"] == 2


@pytest.mark.parametrize(
    ("jobs", "per"),
    [(0, 1), (rates.MAX_JOBS + 1, 1), (True, 1), ("5", 1), (5, 0), (5, math.nan), (5, 86_401),
     (5, 0.0001), (5, "1s")],
)  # fmt: skip
async def test_a_bad_limit_is_refused_and_nothing_is_written(
    aqueue: anq.Queue, jobs: object, per: object
) -> None:
    await aqueue.set_rate_limit(7, 2)
    with pytest.raises(ValidationError, match=r"rate limit (jobs|per) must be"):
        await aqueue.set_rate_limit(jobs, per)  # type: ignore[arg-type]
    assert await aqueue.rate_limit() == (7, 2.0)


async def test_a_rate_limit_notifyq_did_not_write_is_refused(
    aqueue: anq.Queue, r: redis.Redis
) -> None:
    await aqueue.enqueue(1)
    r.hset(aqueue.keys.config, "rate_limit", "lots")
    with pytest.raises(CorruptRecord, match="config field rate_limit holds"):
        await aqueue.rate_limit()
    with pytest.raises(CorruptRecord, match="config field rate_limit holds"):
        await aqueue._run(ops.claim(aqueue.keys, "w", 1, 60_000))
    r.hdel(aqueue.keys.config, "rate_limit")
    assert (await aqueue.stats())["pending"] == 1
