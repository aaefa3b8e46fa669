"""The asyncio Queue and Job: the same behaviour as the blocking API, awaited."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

import notifyq.asyncio as anq
from notifyq.errors import (
    JobCancelled,
    JobFailed,
    JobNotFound,
    ResultNotReady,
    ResultTimeout,
    SerializationError,
)
from notifyq.hub import HUB_CLIENT_NAME

from ..support import channels, server_of


async def test_enqueue_result_and_wait(aqueue: anq.Queue, r: redis.Redis) -> None:
    job = await aqueue.enqueue({"n": 2})
    assert await job.status() == "queued"
    with pytest.raises(ResultNotReady):
        await job.result()
    await anq.Worker(aqueue, lambda p: p["n"] * 2).run(burst=True)
    assert await job.wait(timeout=5) == 4
    assert await job.result() == 4
    assert json.loads(r.get(aqueue.keys.result(job.id)))["result"] == 4


async def test_bad_payload_and_unknown_job(aqueue: anq.Queue) -> None:
    with pytest.raises(SerializationError):
        await aqueue.enqueue({1, 2})
    with pytest.raises(JobNotFound):
        await aqueue.job("missing")
    with pytest.raises(JobNotFound):
        await anq.Job(aqueue, "missing").wait(timeout=2)


async def test_idempotency_under_concurrent_enqueues(aqueue: anq.Queue) -> None:
    jobs = await asyncio.gather(*(aqueue.enqueue(i, idempotency_key="k") for i in range(200)))
    assert len({j.id for j in jobs}) == 1
    assert (await aqueue.stats())["pending"] == 1


async def test_wait_times_out_and_the_job_goes_on(aqueue: anq.Queue) -> None:
    job = await aqueue.enqueue(1)
    with pytest.raises(ResultTimeout):
        await job.wait(timeout=0.1)
    assert await job.status() == "queued"


async def test_cancel_and_dead_letters(aqueue: anq.Queue) -> None:
    job = await aqueue.enqueue(1)
    assert await job.cancel() == "cancelled"
    with pytest.raises(JobCancelled):
        await job.wait(timeout=2)

    async def boom(payload: int) -> None:
        raise KeyError(payload)

    dead = await aqueue.enqueue(2, max_attempts=1)
    await anq.Worker(aqueue, boom).run(burst=True)
    with pytest.raises(JobFailed, match="KeyError"):
        await dead.wait(timeout=2)
    assert [d["id"] for d in await aqueue.dead_letters()] == [dead.id]
    await aqueue.requeue(dead.id)
    await anq.Worker(aqueue, lambda p: p).run(burst=True)
    assert await dead.result() == 2
    assert await aqueue.purge_dead() == 0


async def test_ten_thousand_waits_share_one_connection(aqueue: anq.Queue, r: redis.Redis) -> None:
    """10,000 concurrent waits: one pub/sub connection, no subscription left afterwards."""

    server = server_of(r, aqueue.name)

    def hubs() -> list[dict]:  # this loop's hub; other tests' blocking hubs may be connected
        return [
            c
            for c in server.client_list()
            if c["name"] == HUB_CLIENT_NAME and c["id"] not in before
        ]

    before = {c["id"] for c in server.client_list()}
    jobs = await aqueue.enqueue_many([{"i": i} for i in range(10_000)])
    waits = [asyncio.ensure_future(j.wait(timeout=120)) for j in jobs]
    pattern = f"nq:{{{aqueue.name}}}:done:*"

    async def subscribed() -> int:
        return len(channels(r, aqueue.name, pattern))

    while await subscribed() < 10_000:  # every wait has subscribed before any job runs
        await asyncio.sleep(0.05)
    [hub] = hubs()
    assert int(hub["sub"]) + int(hub.get("ssub", 0)) == 10_000  # ssub: shard channels

    async def handler(payload: dict) -> int:
        return payload["i"]

    worker = anq.Worker(aqueue, handler, concurrency=200)
    running = asyncio.ensure_future(worker.run(burst=True))
    assert await asyncio.gather(*waits) == list(range(10_000))
    await running
    for _ in range(200):  # unsubscribes are sent right after the waits return
        if not channels(r, aqueue.name, pattern):
            break
        await asyncio.sleep(0.01)
    assert channels(r, aqueue.name, pattern) == []
    assert [c["id"] for c in hubs()] == [hub["id"]]


async def test_wait_survives_a_killed_pubsub_connection(aqueue: anq.Queue, r: redis.Redis) -> None:
    server = server_of(r, aqueue.name)
    before = {c["id"] for c in server.client_list()}  # other tests' blocking hubs may be there
    job = await aqueue.enqueue("x")
    waiting = asyncio.ensure_future(job.wait(timeout=30))
    channel = aqueue.keys.done_channel(job.id)
    while not channels(r, aqueue.name, channel):
        await asyncio.sleep(0.01)
    hubs = server.client_list()
    [hub] = [c for c in hubs if c["name"] == HUB_CLIENT_NAME and c["id"] not in before]
    server.client_kill_filter(_id=hub["id"])
    # complete while the hub is away: only the re-check after reconnecting can see it
    await anq.Worker(aqueue, lambda p: p + "!").run(burst=True)
    assert await waiting == "x!"
