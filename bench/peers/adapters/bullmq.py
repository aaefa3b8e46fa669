"""BullMQ's Python port: ``Queue.add()``, a ``Worker`` and ``QueueEvents``.

The Python package has no worker CLI, so the worker is a ``bullmq.Worker`` in a process
of its own (``python -m adapters.harness worker bullmq``), with BullMQ's default
concurrency of 1. The port has no ``Job.waitUntilFinished``; ``wait`` does what that
method does in BullMQ for Node: listen for the job's ``completed``/``failed`` events on a
``QueueEvents`` (XREAD BLOCK on the queue's event stream), then check whether the job has
already finished, so that an event sent before the listener was added is not waited for.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bullmq import Job, Queue, QueueEvents, Worker

from .base import (
    QUEUE,
    About,
    Adapter,
    WaitTimeout,
    handle,
    harness_worker,
    payload,
    until_stopped,
    url,
)

BATCH = 1000


async def process(job: Job, token: str) -> dict[str, Any]:
    return handle(job.data)


async def run_worker() -> None:
    worker = Worker(QUEUE, process, {"connection": url()})
    await until_stopped()
    await worker.close()


class Peer(Adapter):
    about = About(
        name="bullmq",
        package="bullmq",
        concurrency="1 (the default)",
        wait="QueueEvents 'completed:<id>' (XREAD BLOCK on the event stream), then a "
        "state check: BullMQ's waitUntilFinished, which the Python port lacks",
        worker="bullmq.Worker in a process of its own (the Python port has no CLI)",
        fill="Queue.addBulk (1,000 jobs a call)",
        keeps="the job hash (data, returnvalue, times), no TTL; events in a stream (10,000)",
        job_keys=(f"bull:{QUEUE}:[0-9]*",),
        notes=("completed jobs are kept (removeOnComplete is off by default)",),
    )

    async def setup(self) -> None:
        self.q = Queue(QUEUE, {"connection": url()})
        self.events: QueueEvents | None = None

    async def close(self) -> None:
        if self.events is not None:
            await self.events.close()
        await self.q.close()

    def worker_command(self) -> list[str]:
        return harness_worker("bullmq")

    async def enqueue(self, i: int) -> Job:
        return await self.q.add("order", payload(i))

    async def fill(self, n: int) -> list[Job]:
        jobs: list[Job] = []
        for start in range(0, n, BATCH):
            batch = range(start, min(n, start + BATCH))
            jobs += await self.q.addBulk([{"name": "order", "data": payload(i)} for i in batch])
        return jobs

    def completed(self, jobs: list[Job]) -> int:
        return int(self.r.zcard(f"bull:{QUEUE}:completed"))

    async def result(self, job: Job) -> Any:
        found = await Job.fromId(self.q, job.id)
        return None if found is None else found.returnvalue

    async def wait(self, job: Job, timeout: float) -> Any:
        if self.events is None:
            self.events = QueueEvents(QUEUE, {"connection": url()})
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def completed(args: dict[str, Any], event_id: str) -> None:
            if not done.done():
                done.set_result(args["returnvalue"])

        def failed(args: dict[str, Any], event_id: str) -> None:
            if not done.done():
                done.set_exception(RuntimeError(f"job {job.id} failed: {args}"))

        self.events.on(f"completed:{job.id}", completed)
        self.events.on(f"failed:{job.id}", failed)
        try:
            if await self.q.getJobState(job.id) == "completed":
                return await self.result(job)
            return await asyncio.wait_for(done, timeout)
        except TimeoutError as exc:
            raise WaitTimeout(f"no result for {job.id} within {timeout:g} s") from exc
        finally:
            self.events.off(f"completed:{job.id}", completed)
            self.events.off(f"failed:{job.id}", failed)
