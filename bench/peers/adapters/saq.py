"""SAQ: ``Queue.enqueue()``, ``Job.refresh(until_complete=...)`` and the ``saq`` CLI.

``refresh(until_complete=...)`` waits on the queue's pub/sub notifications (SAQ's Redis
queue publishes every job update). The worker runs with SAQ's defaults (10 concurrent
jobs; the CLI logs errors only).
"""

from __future__ import annotations

from typing import Any

from saq import Job, Queue
from saq.job import Status

from .base import QUEUE, About, Adapter, WaitTimeout, console_script, handle, payload, url


async def order_job(ctx: dict[str, Any], *, order_id: int) -> dict[str, Any]:
    return handle({"order_id": order_id})


def settings() -> dict[str, Any]:
    """The worker's settings, made when the CLI imports them."""
    return {"queue": Queue.from_url(url(), name=QUEUE), "functions": [order_job]}


class Peer(Adapter):
    about = About(
        name="saq",
        package="saq",
        concurrency="10 jobs (the default)",
        wait="Job.refresh(until_complete=...): the queue's pub/sub job notifications",
        worker="saq adapters.saq.settings",
        fill="Queue.enqueue per job",
        keeps="the job key (payload, result, times) for 600 s",
        job_keys=(f"saq:job:{QUEUE}:*",),
        notes=("a finished job is kept (with its result) for its ttl, 600 s by default",),
    )

    async def setup(self) -> None:
        self.q = Queue.from_url(url(), name=QUEUE)
        await self.q.connect()
        self.incomplete = f"saq:{QUEUE}:incomplete"

    async def close(self) -> None:
        await self.q.disconnect()

    def worker_command(self) -> list[str]:
        return [console_script("saq"), "adapters.saq.settings"]

    async def enqueue(self, i: int) -> Job:
        job = await self.q.enqueue("order_job", **payload(i))
        assert job is not None
        return job

    async def fill(self, n: int) -> list[Job]:
        return [await self.enqueue(i) for i in range(n)]

    def completed(self, jobs: list[Job]) -> int:
        return len(jobs) - int(self.r.zcard(self.incomplete))

    async def result(self, job: Job) -> Any:
        await job.refresh()
        if job.status != Status.COMPLETE:  # the check's error message says what there is
            return {"status": str(job.status), "error": job.error, "attempts": job.attempts}
        return job.result

    async def wait(self, job: Job, timeout: float) -> Any:
        try:
            await job.refresh(until_complete=timeout)
        except TimeoutError as exc:
            raise WaitTimeout(f"no result for {job.key} within {timeout:g} s") from exc
        if job.status != Status.COMPLETE:
            raise RuntimeError(f"job {job.key} ended {job.status}: {job.error}")
        return job.result
