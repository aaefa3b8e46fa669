"""The asyncio listener: async receivers awaited, named replay, isolation, kills."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import redis

import notifyq.asyncio as anq
from notifyq import Event, signals

from ..support import blocked_read, server_of


@pytest.fixture
async def completions(aqueue: anq.Queue) -> AsyncIterator[list[Event]]:
    got: list[Event] = []

    async def receiver(sender: str, event: Event) -> None:
        await asyncio.sleep(0)  # a real coroutine: the listener must await it
        got.append(event)

    signals.completed.connect(receiver, sender=aqueue.name, weak=False)
    yield got
    signals.completed.disconnect(receiver)


async def until(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def complete_all(queue: anq.Queue, n: int) -> list[anq.Job]:
    jobs = await queue.enqueue_many(list(range(n)))
    await anq.Worker(queue, lambda p: p, concurrency=16).run(burst=True)
    return jobs


async def test_async_receivers_are_awaited(aqueue: anq.Queue, completions: list[Event]) -> None:
    async with anq.Listener(aqueue):
        jobs = await complete_all(aqueue, 5)
        await until(lambda: len(completions) == 5)
    assert {e.job_id for e in completions} == {j.id for j in jobs}
    assert {e.result for e in completions} == set(range(5))


async def test_raising_async_receiver_is_isolated(
    aqueue: anq.Queue, completions: list[Event], caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(sender: str, event: Event) -> None:
        raise RuntimeError("async receiver bug")

    signals.completed.connect(broken, sender=aqueue.name, weak=False)
    try:
        async with anq.Listener(aqueue):
            await complete_all(aqueue, 3)
            await until(lambda: len(completions) == 3)
    finally:
        signals.completed.disconnect(broken)
    assert "async receiver bug" in caplog.text


async def test_named_listener_replays_after_restart(
    aqueue: anq.Queue, completions: list[Event]
) -> None:
    async with anq.Listener(aqueue, "reports"):
        first = await complete_all(aqueue, 200)
        await until(lambda: len(completions) == 200)
    missed = await complete_all(aqueue, 300)  # nobody listening
    async with anq.Listener(aqueue, "reports"):
        await until(lambda: len(completions) == 500)
    counts = Counter(e.job_id for e in completions)
    assert set(counts) == {j.id for j in first + missed}
    assert max(counts.values()) == 1


async def test_a_read_whose_reply_was_lost_is_delivered_at_once(
    aqueue: anq.Queue, r: redis.Redis, completions: list[Event]
) -> None:
    """As for the blocking listener: the events of a group read whose reply the killed
    connection never carried are read again as the listener reconnects."""
    listener = await anq.Listener(aqueue, "lost-reply", block=2.0, claim_after=60.0).start()
    try:
        server = server_of(r, aqueue.name)  # the node holding the queue, on a cluster
        [conn] = await asyncio.to_thread(blocked_read, server, listener.label)
        event = {"v": 1, "type": "completed", "queue": aqueue.name, "id": "lost", "attempt": 1,
                 "ts": 1, "seq": 1, "result": None}  # fmt: skip
        pipe = server.pipeline(transaction=False)
        pipe.xadd(aqueue.keys.events, {"e": json.dumps(event)})  # the blocked read gets it...
        pipe.execute_command("CLIENT", "KILL", "ID", conn["id"])  # ...and dies before replying
        assert pipe.execute()[1] == 1
        await until(lambda: len(completions) == 1, timeout=10)
    finally:
        await listener.stop()
    assert completions[0].job_id == "lost"


async def test_named_listener_survives_killed_connections(
    aqueue: anq.Queue, r: redis.Redis, completions: list[Event]
) -> None:
    listener = await anq.Listener(aqueue, "killed").start()
    jobs = await aqueue.enqueue_many(list(range(2000)))
    worker = anq.Worker(aqueue, lambda p: p, concurrency=32)
    running = asyncio.ensure_future(worker.run(burst=True))
    for at in (400, 1200):
        await until(lambda at=at: len(completions) >= at)
        server = server_of(r, aqueue.name)
        killed = [c for c in server.client_list() if c["name"] == listener.label]
        assert killed  # the listener's connection is on the queue's server
        for c in killed:
            server.client_kill_filter(_id=c["id"])
    await running
    await until(lambda: {e.job_id for e in completions} == {j.id for j in jobs})
    await listener.stop()
