"""streaQ: enqueueing a task, ``Task.result(timeout=...)`` and the ``streaq run`` CLI.

The producer connects with ``async with worker`` as streaQ's docs show. ``result()``
subscribes to the task's channel, then reads the result key. The worker runs with
streaQ's defaults (16 concurrent tasks); its CLI has no option to log less than one line
per task start and end.
"""

from __future__ import annotations

from typing import Any

from streaq import Worker
from streaq.task import Task

from .base import (
    QUEUE,
    About,
    Adapter,
    KeyProgress,
    WaitTimeout,
    console_script,
    handle,
    payload,
    url,
)

BATCH = 1000

worker = Worker(redis_url=url(), queue_name=QUEUE)


@worker.task()
async def order_task(order: dict[str, Any]) -> dict[str, Any]:
    return handle(order)


class Peer(Adapter):
    about = About(
        name="streaq",
        package="streaq",
        concurrency="16 tasks (the default)",
        wait="Task.result(timeout=...): SUBSCRIBE to the task's channel, then GET its result",
        worker="streaq run adapters.streaq:worker",
        fill="Worker.enqueue_many (pipelines of 1,000)",
        keeps="a result key (result, times; no payload) for 5 min",
        job_keys=(f"streaq:{QUEUE}:task:*",),
        notes=("the worker logs two INFO lines per task (no CLI option to quiet it)",),
    )

    async def setup(self) -> None:
        await worker.__aenter__()

    async def close(self) -> None:
        await worker.__aexit__(None, None, None)

    def worker_command(self) -> list[str]:
        return [console_script("streaq"), "run", "adapters.streaq:worker"]

    async def enqueue(self, i: int) -> Task[Any, Any]:
        return await order_task.enqueue(payload(i))

    async def fill(self, n: int) -> list[Task[Any, Any]]:
        tasks = [order_task.enqueue(payload(i)) for i in range(n)]
        for start in range(0, n, BATCH):
            await worker.enqueue_many(tasks[start : start + BATCH])
        self.progress = KeyProgress(self.r, [worker.results_key + task.id for task in tasks])
        return tasks

    def completed(self, tasks: list[Task[Any, Any]]) -> int:
        return self.progress()

    async def result(self, task: Task[Any, Any]) -> Any:
        # Task.result() would wait; the stored result is read and decoded the worker's way
        if (raw := await worker.redis.get(worker.results_key + task.id)) is None:
            return None
        return (await worker.deserialize(raw))["r"]

    async def wait(self, task: Task[Any, Any], timeout: float) -> Any:
        try:
            result = await task.result(timeout=timeout)
        except TimeoutError as exc:
            raise WaitTimeout(f"no result for {task.id} within {timeout:g} s") from exc
        return result.result
