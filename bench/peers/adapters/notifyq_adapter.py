"""notifyq: the blocking API (``Queue.enqueue``, ``Job.wait``) and the ``notifyq worker`` CLI.

The handler is ``async def``, so the CLI runs notifyq's asyncio worker with its default
concurrency (no ``-c``).
"""

from __future__ import annotations

from typing import Any

import notifyq
import notifyq.asyncio
from notifyq.errors import ResultNotReady, ResultTimeout

from .base import QUEUE, About, Adapter, WaitTimeout, console_script, handle, payload, url


async def handler(order: dict[str, Any], job: Any) -> dict[str, Any]:
    return handle(order)


class Peer(Adapter):
    about = About(
        name="notifyq",
        package="notifyq",
        concurrency=f"{notifyq.asyncio.Worker.default_concurrency} asyncio tasks (the default "
        "for an async def handler)",
        wait="Job.wait(): SUBSCRIBE to the job's channel, GET the result key, then the message",
        worker=f"notifyq worker adapters.notifyq_adapter:handler -q {QUEUE}",
        fill="Queue.enqueue_many (batches of 1,000)",
        keeps="the job hash (payload, state, times) and a result key, for 24 h; "
        "events in a stream (10,000)",
        job_keys=(f"nq:{{{QUEUE}}}:job:*", f"nq:{{{QUEUE}}}:result:*"),
    )

    def setup(self) -> None:
        self.q = notifyq.Queue(QUEUE, url())
        self.stats_key = self.q.keys.stats

    def worker_command(self) -> list[str]:
        return [
            console_script("notifyq"),
            "--url",
            url(),
            "worker",
            "adapters.notifyq_adapter:handler",
            "-q",
            QUEUE,
        ]

    def enqueue(self, i: int) -> notifyq.Job:
        return self.q.enqueue(payload(i))

    def enqueue_many(self, n: int) -> None:
        self.q.enqueue_many([payload(i) for i in range(n)], batch_size=1000)

    def fill(self, n: int) -> list[notifyq.Job]:
        return self.q.enqueue_many([payload(i) for i in range(n)], batch_size=1000)

    def completed(self, jobs: list[notifyq.Job]) -> int:
        return int(self.r.hget(self.stats_key, "completed") or 0)

    def result(self, job: notifyq.Job) -> Any:
        try:
            return job.result()
        except ResultNotReady:
            return None

    def wait(self, job: notifyq.Job, timeout: float) -> Any:
        try:
            return job.wait(timeout)
        except ResultTimeout as exc:
            raise WaitTimeout(str(exc)) from exc
