"""taskiq: ``task.kiq()``, ``AsyncTaskiqTask.wait_result()`` and the ``taskiq worker`` CLI.

taskiq-redis's ``RedisStreamBroker`` (the broker its README recommends: a stream with a
consumer group, messages acknowledged) and ``RedisAsyncResultBackend``. The CLI starts
two worker processes by default; ``--workers 1`` keeps it to one, with taskiq's default
100 concurrent async tasks. ``--log-level WARNING`` keeps it from logging every task.
"""

from __future__ import annotations

from typing import Any

from taskiq import AsyncTaskiqTask
from taskiq.exceptions import TaskiqResultTimeoutError
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from .base import About, Adapter, KeyProgress, WaitTimeout, console_script, handle, payload, url

broker = RedisStreamBroker(url=url()).with_result_backend(RedisAsyncResultBackend(url()))


@broker.task
async def order_task(order: dict[str, Any]) -> dict[str, Any]:
    return handle(order)


class Peer(Adapter):
    about = About(
        name="taskiq",
        package="taskiq",
        concurrency="100 async tasks in 1 process (default max-async-tasks; --workers 1)",
        wait="AsyncTaskiqTask.wait_result(): is_ready() every 0.2 s (check_interval default)",
        worker="taskiq worker adapters.taskiq:broker --workers 1 --log-level WARNING",
        fill="task.kiq per job",
        keeps="a result key (no TTL); the message stays in the stream",
        job_keys=("?" * 32,),  # result keys are the task ids (uuid4 hex)
        notes=(
            "messages stay in the stream after they are acknowledged (no maxlen by "
            "default); results have no TTL by default",
        ),
    )

    async def setup(self) -> None:
        await broker.startup()  # declares the consumer group, as a producer must

    async def close(self) -> None:
        await broker.shutdown()

    def worker_command(self) -> list[str]:
        return [
            console_script("taskiq"),
            "worker",
            "adapters.taskiq:broker",
            "--workers",
            "1",
            "--log-level",
            "WARNING",
        ]

    async def enqueue(self, i: int) -> AsyncTaskiqTask[Any]:
        return await order_task.kiq(payload(i))

    async def fill(self, n: int) -> list[AsyncTaskiqTask[Any]]:
        tasks = [await self.enqueue(i) for i in range(n)]
        self.progress = KeyProgress(self.r, [task.task_id for task in tasks])
        return tasks

    def completed(self, tasks: list[AsyncTaskiqTask[Any]]) -> int:
        return self.progress()

    async def result(self, task: AsyncTaskiqTask[Any]) -> Any:
        if not await task.is_ready():
            return None
        return (await task.get_result()).return_value

    async def wait(self, task: AsyncTaskiqTask[Any], timeout: float) -> Any:
        try:
            result = await task.wait_result(timeout=timeout)
        except TaskiqResultTimeoutError as exc:
            raise WaitTimeout(str(exc)) from exc
        return result.raise_for_error().return_value
