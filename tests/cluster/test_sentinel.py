"""Sentinel: ``redis+sentinel://`` URLs against a real primary, two replicas and three
sentinels that the test starts; the primary is SIGKILLed and the sentinels promote a
replica, to which the other replica then attaches."""

from __future__ import annotations

import asyncio
import pathlib
import threading
import time
from collections.abc import Iterator

import pytest

import notifyq
import notifyq.asyncio as anq
from notifyq import connection
from notifyq.asyncio.connection import close_shared

from ..servers import Sentinels, running_sentinels, wait_until
from ..support import running


@pytest.fixture
def setup(tmp_path: pathlib.Path) -> Iterator[Sentinels]:
    with running_sentinels(tmp_path, replicas=2, sentinels=3) as s:  # one left after a failover
        yield s
    connection.close_shared()


def test_jobs_flow_through_the_sentinels_and_across_a_failover(setup: Sentinels) -> None:
    queue = notifyq.Queue("sentinel", setup.url(), replicas=1)
    before = setup.primary_port()
    acked: list[notifyq.Job] = []
    with running(notifyq.Worker(queue, lambda p: p * 2, lease=1.0)):
        assert queue.enqueue(21).wait(timeout=10) == 42
        stats = queue.keys.stats
        assert setup.primary.client().hget(stats, "completed") == "1"  # on the primary named
        setup.primary.kill()
        wait_until(lambda: setup.primary_port() != before, "the sentinels promote the replica")
        deadline = time.monotonic() + 30
        while len(acked) < 20:  # the client follows the sentinels to the new primary
            try:
                acked.append(queue.enqueue(len(acked), idempotency_key=f"k{len(acked)}"))
            except (notifyq.RedisUnavailable, notifyq.NotReplicated):
                assert time.monotonic() < deadline, "no enqueue after the failover"
                threading.Event().wait(0.1)
        assert [j.wait(timeout=30) for j in acked] == [2 * i for i in range(20)]
    [promoted] = [r for r in setup.replicas if r.port == setup.primary_port()]
    assert promoted.client().hget(stats, "completed") == "21"  # the first one was replicated


def test_asyncio_queue_worker_and_wait_through_the_sentinels(setup: Sentinels) -> None:
    async def main() -> list[int]:
        queue = anq.Queue("sentinel-async", setup.url())

        async def double(p: int) -> int:
            return p * 2

        jobs = await queue.enqueue_many(list(range(50)))
        await anq.Worker(queue, double).run(burst=True)
        try:
            return [await j.wait(timeout=10) for j in jobs]
        finally:
            await close_shared()

    assert asyncio.run(main()) == [2 * i for i in range(50)]
    stats = anq.Queue("sentinel-async", setup.url()).keys.stats
    assert setup.primary.client().hget(stats, "completed") == "50"  # on the primary named
