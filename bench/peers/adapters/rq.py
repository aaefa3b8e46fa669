"""RQ: ``Queue.enqueue()``, ``Job.latest_result(timeout=...)`` and the ``rq worker`` CLI.

``rq worker`` is RQ's default worker: it forks a work horse for every job, one job at a
time. ``--quiet`` keeps it from logging two lines per job.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.results import Result

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


def order_job(order: dict[str, Any]) -> dict[str, Any]:
    return handle(order)


class Peer(Adapter):
    about = About(
        name="rq",
        package="rq",
        concurrency="1 (the default Worker forks a work horse per job)",
        wait="Job.latest_result(timeout=...): XREAD BLOCK on the job's result stream",
        worker=f"rq worker --quiet --url URL {QUEUE}",
        fill="Queue.enqueue_many (pipelines of 1,000)",
        keeps="the job hash (payload, result) and a result stream per job, for 500 s",
        job_keys=("rq:job:*", "rq:results:*"),
    )

    def setup(self) -> None:
        self.q = Queue(QUEUE, connection=Redis.from_url(url()))

    def close(self) -> None:
        self.q.connection.close()

    def worker_command(self) -> list[str]:
        return [console_script("rq"), "worker", "--quiet", "--url", url(), QUEUE]

    def enqueue(self, i: int) -> Job:
        return self.q.enqueue(order_job, payload(i))

    def fill(self, n: int) -> list[Job]:
        jobs: list[Job] = []
        for start in range(0, n, BATCH):
            batch = [
                Queue.prepare_data(order_job, (payload(i),))
                for i in range(start, min(n, start + BATCH))
            ]
            jobs += self.q.enqueue_many(batch)
        self.progress = KeyProgress(self.r, [Result.get_key(job.id) for job in jobs])
        return jobs

    def completed(self, jobs: list[Job]) -> int:
        return self.progress()

    def result(self, job: Job) -> Any:
        return job.return_value(refresh=True)

    def wait(self, job: Job, timeout: float) -> Any:
        result = job.latest_result(timeout=max(1, round(timeout)))
        if result is None:
            raise WaitTimeout(f"no result for {job.id} within {timeout:g} s")
        return result.return_value
