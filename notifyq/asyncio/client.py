"""The asyncio API: ``Queue`` and ``Job`` with the names and methods of ``notifyq``, awaitable.

Each method runs the same flow from ``ops.py`` as its blocking twin; see ``notifyq.client``
for the full docstrings.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, TypeVar

import redis.asyncio as aioredis

from .. import codec, events, ops, rates, registry
from ..client import DEFAULT_WAIT_TIMEOUT, JobBase, QueueBase, page, wait_limit
from ..connection import resolve_url
from ..errors import JobNotFound
from ..keys import check_job_id
from ..waiting import MISSING
from .connection import Backend, shared_backend

T = TypeVar("T")


class Job(JobBase):
    """A handle on one job. Cheap to make; every method asks Redis."""

    __slots__ = ()
    _queue: Queue

    async def status(self) -> str:
        return await self._queue._run(ops.status(self._queue.keys, self.id))

    async def result(self) -> Any:
        """The result if completed; ``JobFailed`` / ``ResultNotReady`` otherwise. Never blocks."""
        return await self._queue._run(ops.result(self._queue.keys, self.id))

    async def wait(self, timeout: float | None = DEFAULT_WAIT_TIMEOUT) -> Any:
        """Wait until the job finishes; its result, or ``JobFailed`` / ``ResultTimeout``."""
        limit = wait_limit(timeout)
        hub = self._queue._backend_now().hub
        record = await hub.wait(self._queue.keys, self.id, limit)
        if record is MISSING:
            raise JobNotFound(self.queue, self.id)
        return ops.outcome_value(record, self.id)  # type: ignore[arg-type]

    async def cancel(self) -> str:
        return await self._queue._run(ops.cancel(self._queue.keys, self.id))

    async def progress(self) -> Any:
        return await self._queue._run(ops.progress(self._queue.keys, self.id))

    async def info(self) -> dict[str, Any]:
        return await self._queue._run(ops.info(self._queue.keys, self.id))


class Queue(QueueBase):
    """A named queue, for asyncio code. Queues of one event loop share one wait hub.

    ``url`` defaults to ``NOTIFYQ_URL``, else the embedded server. Pass ``client=`` to use a
    ``redis.asyncio`` client you made.
    """

    def __init__(
        self,
        name: str,
        url: str | None = None,
        *,
        client: aioredis.Redis | None = None,
        max_payload: int = codec.DEFAULT_MAX_PAYLOAD,
        replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        super().__init__(name, max_payload, replicas, replica_timeout)
        self._own: Backend | None = Backend(url or "(client)", client) if client else None
        self.url = self._own.url if self._own else resolve_url(url)

    def _backend_now(self) -> Backend:
        """The backend: your client's, or the running loop's shared one for the URL."""
        return self._own or shared_backend(self.url)

    @property
    def client(self) -> aioredis.Redis:
        return self._backend_now().client

    async def _run(self, flow: ops.Flow[T]) -> T:
        return await self._backend_now().run(flow)

    async def enqueue(
        self,
        payload: Any,
        *,
        job_id: str | None = None,
        idempotency_key: str | None = None,
        delay: float | timedelta | None = None,
        priority: str | None = None,
        max_attempts: int = ops.DEFAULT_MAX_ATTEMPTS,
        timeout: float | timedelta | None = None,
        result_ttl: float | timedelta = ops.DEFAULT_RESULT_TTL,
        group: str | None = None,
    ) -> Job:
        spec = self._spec(
            payload, job_id=job_id, idempotency_key=idempotency_key, delay=delay,
            priority=priority, max_attempts=max_attempts, timeout=timeout, result_ttl=result_ttl,
            group=group,
        )  # fmt: skip
        [(found, _)] = await self._run(self._enqueue([spec]))
        return Job(self, found)

    async def enqueue_many(
        self, payloads: Iterable[Any], *, batch_size: int = 1000, **options: Any
    ) -> list[Job]:
        jobs: list[Job] = []
        for batch in self._batches(payloads, batch_size, options):
            done = await self._run(self._enqueue(batch))
            jobs += [Job(self, found) for found, _ in done]
        return jobs

    async def job(self, job_id: str) -> Job:
        job = Job(self, check_job_id(job_id))
        await job.status()
        return job

    async def stats(self) -> dict[str, Any]:
        return await self._run(ops.stats(self.keys))

    async def workers(self) -> list[dict[str, Any]]:
        return await self._run(registry.workers(self.keys))

    async def dead_letters(self, start: int = 0, count: int = 100) -> list[dict[str, Any]]:
        return await self._run(ops.dead_letters(self.keys, *page(start, count)))

    async def quarantined(self, start: int = 0, count: int = 100) -> list[dict[str, Any]]:
        return await self._run(ops.quarantined(self.keys, *page(start, count)))

    async def requeue(self, job_id: str) -> Job:
        if not await self._run(ops.requeue(self.keys, job_id)):
            raise JobNotFound(self.name, job_id, where="the dead letters of queue")
        return Job(self, job_id)

    async def purge_dead(self) -> int:
        return await self._run(ops.purge_dead(self.keys))

    async def set_events_maxlen(self, maxlen: int) -> None:
        await self._run(events.set_events_maxlen(self.keys, maxlen))

    async def set_rate_limit(self, jobs: int, per: float | timedelta) -> None:
        await self._run(rates.set_limit(self.keys, jobs, per))

    async def clear_rate_limit(self) -> None:
        await self._run(rates.clear_limit(self.keys))

    async def rate_limit(self) -> rates.RateLimit | None:
        return await self._run(rates.get_limit(self.keys))

    async def pause(self) -> None:
        await self._run(ops.pause(self.keys))

    async def resume(self) -> None:
        await self._run(ops.resume(self.keys))

    async def close(self) -> None:
        """With ``client=``: close the wait hub made for it (the client stays yours).

        Queues on a URL share the loop's connections; ``connection.close_shared()`` ends them.
        """
        if self._own is not None:
            await self._own.close()

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
