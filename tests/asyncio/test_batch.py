"""Batch handlers, asyncio worker: the same rules as the blocking one (tests/sync), with
``async def`` batch handlers run as one task per batch."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

import notifyq.asyncio as anq
from notifyq.errors import JobCancelled, JobFailed, ValidationError

FAST = {"backoff": (0.01, 0.05), "lease": 0.6}  # quick retries, housekeeping every 0.2 s


async def events(aqueue: anq.Queue, job: anq.Job) -> list[dict[str, Any]]:
    """The job's events, from the queue's stream."""
    client: aioredis.Redis = aqueue.client
    out = [json.loads(fields[b"e"]) for _, fields in await client.xrange(aqueue.keys.events)]
    return [e for e in out if e["id"] == job.id]


async def test_batches_never_exceed_batch_size_and_each_job_has_its_own_outcome(
    aqueue: anq.Queue,
) -> None:
    batches: list[list[str]] = []

    async def handle(jobs: list[anq.ActiveJob]) -> list[int]:
        batches.append([j.id for j in jobs])
        await jobs[0].set_progress("sending")
        return [j.payload * 10 for j in jobs]

    jobs = await aqueue.enqueue_many(list(range(12)))
    await anq.Worker(aqueue, handle, batch_size=5, batch_wait=0.2).run(burst=True)

    assert all(1 <= len(b) <= 5 for b in batches), batches
    assert sorted(i for b in batches for i in b) == sorted(j.id for j in jobs)
    for n, job in enumerate(jobs):
        assert await job.result() == n * 10
        completed = [e for e in await events(aqueue, job) if e["type"] == "completed"]
        assert [e["result"] for e in completed] == [n * 10]


async def test_a_partial_batch_is_handled_once_batch_wait_passes(aqueue: anq.Queue) -> None:
    calls: list[list[str]] = []

    async def handle(jobs: list[anq.ActiveJob]) -> list[str]:
        calls.append([j.id for j in jobs])
        return [f"order {j.payload} sent" for j in jobs]

    worker = anq.Worker(aqueue, handle, batch_size=10, batch_wait=0.3)
    running = asyncio.ensure_future(worker.run())
    job = await aqueue.enqueue(7)
    assert await job.wait(timeout=15) == "order 7 sent"
    worker.stop()
    await running
    assert calls == [[job.id]]


async def test_a_raised_exception_retries_every_job_of_the_batch(aqueue: anq.Queue) -> None:
    calls: list[list[tuple[str, int]]] = []

    async def handle(jobs: list[anq.ActiveJob]) -> list[str]:
        calls.append([(j.id, j.attempt) for j in jobs])
        if any(j.attempt == 1 for j in jobs):
            raise ConnectionError("remote order system is down")
        return [f"sent on attempt {j.attempt}" for j in jobs]

    jobs = await aqueue.enqueue_many(["a", "b", "c"])
    await anq.Worker(aqueue, handle, batch_size=3, **FAST).run(burst=True)

    assert calls[0] == [(j.id, 1) for j in jobs]
    for job in jobs:
        assert await job.result() == "sent on attempt 2"
        kinds = [e["type"] for e in await events(aqueue, job)]
        assert kinds.count("retrying") == 1 and kinds.count("completed") == 1


async def test_an_exception_item_fails_only_its_job(aqueue: anq.Queue) -> None:
    def handle(jobs: list[anq.ActiveJob]) -> list[Any]:  # a plain function: run in a thread
        return [ValueError("unknown article") if j.payload == "bad" else "ok" for j in jobs]

    good = await aqueue.enqueue_many(["x", "y"])
    bad = await aqueue.enqueue("bad", max_attempts=1)
    await anq.Worker(aqueue, handle, batch_size=5, batch_wait=0, **FAST).run(burst=True)

    assert [await j.result() for j in good] == ["ok", "ok"]
    assert await bad.status() == "dead"
    with pytest.raises(JobFailed, match="ValueError: unknown article"):
        await bad.result()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ([1], r"ValueError: batch handler returned 1 results for 3 jobs"),
        ("ok", r"TypeError: batch handler returned str, not a list of 3 results"),
    ],
    ids=["short", "not-a-list"],
)
async def test_a_wrong_reply_fails_every_job_with_a_clear_error(
    aqueue: anq.Queue, reply: object, error: str
) -> None:
    async def handle(jobs: list[anq.ActiveJob]) -> object:
        return reply

    jobs = await aqueue.enqueue_many([1, 2, 3], max_attempts=1)
    await anq.Worker(aqueue, handle, batch_size=3, **FAST).run(burst=True)
    for job in jobs:
        assert await job.status() == "dead"
        with pytest.raises(JobFailed, match=error):
            await job.result()


async def test_a_batch_past_its_time_limit_is_stopped_and_every_job_fails(
    aqueue: anq.Queue,
) -> None:
    stopped = asyncio.Event()

    async def stuck(jobs: list[anq.ActiveJob]) -> list[str]:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return ["late"] * len(jobs)

    jobs = await aqueue.enqueue_many([1, 2], max_attempts=1)
    slow = await aqueue.enqueue(3, max_attempts=1, timeout=0.3)  # the smallest limit wins
    await anq.Worker(aqueue, stuck, batch_size=3, timeout=60, **FAST).run(burst=True)
    assert stopped.is_set()
    for job in [*jobs, slow]:
        with pytest.raises(JobFailed, match=r"TimeoutError: job exceeded its timeout of 0\.3s"):
            await job.result()


async def test_cancelling_one_job_of_a_running_batch_flags_it_alone(aqueue: anq.Queue) -> None:
    started = asyncio.Event()

    async def handle(jobs: list[anq.ActiveJob]) -> list[Any]:
        started.set()
        async with asyncio.timeout(15):
            while not any(j.cancelled for j in jobs):
                await asyncio.sleep(0.01)
        return [JobCancelled(j.id) if j.cancelled else "sent" for j in jobs]

    jobs = await aqueue.enqueue_many(["a", "b", "c"])
    worker = anq.Worker(aqueue, handle, batch_size=3, **FAST)
    running = asyncio.ensure_future(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    assert await jobs[1].cancel() == "requested"
    with pytest.raises(JobCancelled):
        await jobs[1].wait(timeout=15)
    assert [await jobs[0].wait(timeout=15), await jobs[2].wait(timeout=15)] == ["sent", "sent"]
    worker.stop()
    await running


async def test_stopping_releases_the_jobs_of_the_batch_being_filled(aqueue: anq.Queue) -> None:
    calls: list[int] = []

    async def handle(jobs: list[anq.ActiveJob]) -> list[None]:
        calls.append(len(jobs))
        return [None] * len(jobs)

    worker = anq.Worker(aqueue, handle, batch_size=5, batch_wait=60)
    running = asyncio.ensure_future(worker.run())
    job = await aqueue.enqueue("held")
    async with asyncio.timeout(10):
        while await job.status() != "active":  # claimed, waiting for more
            await asyncio.sleep(0.01)
    worker.stop()
    await running
    assert calls == []
    assert await job.status() == "queued" and (await job.info())["attempt"] == 0


async def test_graceful_stop_releases_a_batch_that_outlives_the_grace(aqueue: anq.Queue) -> None:
    started = asyncio.Event()

    async def long(jobs: list[anq.ActiveJob]) -> list[None]:
        started.set()
        await asyncio.sleep(30)
        return [None] * len(jobs)

    jobs = await aqueue.enqueue_many([1, 2])
    worker = anq.Worker(aqueue, long, batch_size=2, grace=0.2)
    running = asyncio.ensure_future(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    worker.stop()
    await running
    assert [await j.status() for j in jobs] == ["queued", "queued"]


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"batch_size": 0}, "batch_size must be an integer from 1 to 500, not 0"),
        ({"batch_size": "5"}, "batch_size must be an integer"),
        ({"batch_size": 5, "batch_wait": -0.5}, "batch_wait must be >= 0"),
        ({"batch_size": 5, "batch_wait": float("inf")}, "batch_wait must be a number"),
        ({"batch_wait": 1.0}, "batch_wait is for batch handlers: give batch_size too"),
    ],
    ids=["size-0", "size-text", "wait-negative", "wait-inf", "wait-alone"],
)
async def test_a_batch_worker_refuses_bad_batch_settings(
    redis_url: str, settings: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValidationError, match=words):
        anq.Worker("q", lambda jobs: jobs, url=redis_url, **settings)


async def test_batch_mode_runs_one_batch_at_a_time_unless_told(redis_url: str) -> None:
    assert anq.Worker("q", len, url=redis_url, batch_size=5).concurrency == 1
    assert anq.Worker("q", len, url=redis_url, batch_size=5, concurrency=3).concurrency == 3
