"""The worker registry through the asyncio API: ``await Queue.workers()``."""

from __future__ import annotations

import asyncio

import notifyq.asyncio as anq

from ..support import eventually_async


async def test_a_running_worker_lists_its_job_then_leaves(aqueue: anq.Queue) -> None:
    gate, started = asyncio.Event(), asyncio.Event()

    async def held(payload: int, job: anq.ActiveJob) -> int:
        started.set()
        await gate.wait()
        return payload + 1

    worker = anq.Worker(aqueue, held, lease=1.0)
    running = asyncio.create_task(worker.run())
    try:
        job = await aqueue.enqueue(1)
        await asyncio.wait_for(started.wait(), 10)

        async def listed() -> bool:
            return any(j["id"] == job.id for w in await aqueue.workers() for j in w["jobs"])

        await eventually_async(listed)
        [me] = await aqueue.workers()
        assert (me["id"], me["alive"], me["queues"], me["running"]) == (
            worker.id,
            True,
            [aqueue.name],
            1,
        )
        assert me["jobs"][0]["attempt"] == 1
        gate.set()
        assert await job.wait(timeout=10) == 2
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    assert await aqueue.workers() == []
