"""Fair turns between groups, asyncio API: the same behaviour as tests/sync/test_groups.py,
through ``notifyq.asyncio``'s Queue and Worker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

import notifyq.asyncio as anq
from notifyq.errors import ValidationError
from notifyq.keys import UNGROUPED

from ..rotation import assert_rotation_sound


async def served(aqueue: anq.Queue) -> list[Any]:
    order: list[Any] = []
    await anq.Worker(aqueue, order.append, concurrency=1).run(burst=True)
    return order


async def test_a_flood_in_one_group_does_not_starve_another(
    aqueue: anq.Queue, r: redis.Redis
) -> None:
    order: list[str] = []
    first_started, go_on = asyncio.Event(), asyncio.Event()

    async def handler(payload: str) -> None:
        order.append(payload)
        if payload == "a0":
            first_started.set()
            await asyncio.wait_for(go_on.wait(), 30)

    await aqueue.enqueue("a0", group="a")
    run = asyncio.create_task(anq.Worker(aqueue, handler, concurrency=1).run(burst=True))
    await asyncio.wait_for(first_started.wait(), 30)
    await aqueue.enqueue_many([f"a{i}" for i in range(1, 200)], group="a")
    await aqueue.enqueue_many([f"b{i}" for i in range(3)], group="b")
    assert_rotation_sound(r, aqueue.keys)
    go_on.set()
    await asyncio.wait_for(run, 60)

    after = order[1:]
    assert [after.index(f"b{i}") for i in range(3)] == [1, 3, 5]
    assert [p for p in order if p[0] == "a"] == [f"a{i}" for i in range(200)]
    assert [p for p in order if p[0] == "b"] == ["b0", "b1", "b2"]
    assert assert_rotation_sound(r, aqueue.keys) == []


async def test_jobs_without_a_group_take_a_turn_like_a_group(
    aqueue: anq.Queue, r: redis.Redis
) -> None:
    await aqueue.pause()
    await aqueue.enqueue_many(["u0", "u1"])
    await aqueue.enqueue_many(["g0", "g1"], group="g")
    await aqueue.enqueue("h0", group="h")
    await aqueue.enqueue("high", priority="high")
    assert assert_rotation_sound(r, aqueue.keys) == [UNGROUPED, "g", "h"]
    await aqueue.resume()
    assert await served(aqueue) == ["high", "u0", "g0", "h0", "u1", "g1"]


async def test_group_in_the_record_stats_cancel_and_refusals(
    aqueue: anq.Queue, r: redis.Redis
) -> None:
    [a0, a1] = await aqueue.enqueue_many(["a0", "a1"], group="a")
    b0 = await aqueue.enqueue("b0", group="b")
    assert (await a0.info())["group"] == "a"
    s = await aqueue.stats()
    assert (s["pending"], s["pending_grouped"], s["groups"]) == (3, 3, 2)
    assert await b0.cancel() == "cancelled"
    assert assert_rotation_sound(r, aqueue.keys) == [UNGROUPED, "a"]
    s = await aqueue.stats()
    assert (s["pending"], s["pending_grouped"], s["groups"]) == (2, 2, 1)
    with pytest.raises(ValidationError, match="invalid group"):
        await aqueue.enqueue(1, group="no spaces")
    with pytest.raises(ValidationError, match="priority normal only"):
        await aqueue.enqueue_many([1], group="a", priority="high")
    assert await served(aqueue) == ["a0", "a1"]
    assert assert_rotation_sound(r, aqueue.keys) == []
    assert (await a1.info())["state"] == "completed"


async def test_a_requeued_dead_letter_goes_back_to_its_group(
    aqueue: anq.Queue, r: redis.Redis
) -> None:
    def boom(payload: str) -> None:
        raise ValueError(payload)

    dead = await aqueue.enqueue("d", group="a", max_attempts=1)
    await anq.Worker(aqueue, boom, concurrency=1).run(burst=True)
    assert await dead.status() == "dead"
    await aqueue.enqueue_many(["b0", "b1"], group="b")
    await aqueue.requeue(dead.id)
    assert assert_rotation_sound(r, aqueue.keys) == [UNGROUPED, "b", "a"]
    assert await served(aqueue) == ["b0", "d", "b1"]
    assert assert_rotation_sound(r, aqueue.keys) == []
