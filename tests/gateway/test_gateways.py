"""Gateways keep no state of their own: several side by side on one Redis serve the same
jobs to their own clients."""

from __future__ import annotations

from collections.abc import Callable

import redis

import notifyq.asyncio as anq

from .conftest import ConnectFactory, GatewayFactory, job_token, stream_events


async def test_two_gateways_deliver_the_same_events_of_one_job(
    gateway: GatewayFactory,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    r: redis.Redis,
    start_worker: Callable[..., anq.Worker],
) -> None:
    async def handler(payload: int, job: anq.ActiveJob) -> int:
        await job.set_progress("half")
        return payload + 1

    job = await aqueue.enqueue(41)
    one, two = await gateway(), await gateway()
    assert one.port != two.port
    clients = [await client(one), await client(two)]
    states = [await c.follow(job_token(name, job.id), name, job.id) for c in clients]
    assert states[0] == states[1]

    start_worker(handler)
    got = [await c.until_done(job.id) for c in clients]
    for c in clients:
        await c.quiet()
    assert got[0] == got[1] == stream_events(r, name, after=states[0]["event_id"])
    assert [e["type"] for e in got[0]] == ["started", "progress", "completed"]
    assert got[0][-1]["result"] == 42
