"""arq: ``ArqRedis.enqueue_job()``, ``Job.result(timeout=...)`` and the ``arq`` CLI.

arq 0.28 declares redis-py < 6; it is installed without its dependencies and runs on the
benchmark's redis-py 6.4 (see requirements-nodeps.txt). ``--custom-log-dict`` keeps the
worker from logging two lines per job.
"""

from __future__ import annotations

from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import result_key_prefix
from arq.jobs import Job

from .base import About, Adapter, KeyProgress, WaitTimeout, console_script, handle, payload, url

LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


async def order_job(ctx: dict[str, Any], order: dict[str, Any]) -> dict[str, Any]:
    return handle(order)


class WorkerSettings:
    functions = [order_job]
    redis_settings = RedisSettings.from_dsn(url())


class Peer(Adapter):
    about = About(
        name="arq",
        package="arq",
        concurrency="10 jobs (max_jobs default)",
        wait="Job.result(timeout=...): GET the result key every 0.5 s (poll_delay default)",
        worker="arq --custom-log-dict adapters.arq.LOG_CONFIG adapters.arq.WorkerSettings",
        fill="ArqRedis.enqueue_job per job",
        keeps="a result key (function, args, result, times) for 1 h",
        job_keys=("arq:job:*", "arq:result:*"),
        notes=(
            "the idle worker polls its queue every 0.5 s (poll_delay default)",
            "installed without its dependencies: arq 0.28 declares redis-py < 6",
        ),
    )

    async def setup(self) -> None:
        self.pool: ArqRedis = await create_pool(RedisSettings.from_dsn(url()))

    async def close(self) -> None:
        await self.pool.aclose()

    def worker_command(self) -> list[str]:
        return [
            console_script("arq"),
            "--custom-log-dict",
            "adapters.arq.LOG_CONFIG",
            "adapters.arq.WorkerSettings",
        ]

    async def enqueue(self, i: int) -> Job:
        job = await self.pool.enqueue_job("order_job", payload(i))
        assert job is not None
        return job

    async def fill(self, n: int) -> list[Job]:
        jobs = [await self.enqueue(i) for i in range(n)]
        self.progress = KeyProgress(self.r, [result_key_prefix + job.job_id for job in jobs])
        return jobs

    def completed(self, jobs: list[Job]) -> int:
        return self.progress()

    async def result(self, job: Job) -> Any:
        info = await job.result_info()
        return None if info is None else info.result

    async def wait(self, job: Job, timeout: float) -> Any:
        try:
            return await job.result(timeout=timeout)
        except TimeoutError as exc:
            raise WaitTimeout(f"no result for {job.job_id} within {timeout:g} s") from exc
