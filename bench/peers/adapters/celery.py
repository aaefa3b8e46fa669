"""Celery: ``task.delay()``, ``AsyncResult.get()`` and the ``celery worker`` CLI.

Redis is both the broker and the result backend (``backend=`` the same URL). The worker
runs with Celery's defaults: the prefork pool with one child process per CPU.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from .base import About, Adapter, KeyProgress, WaitTimeout, console_script, handle, payload, url

app = Celery("bench", broker=url(), backend=url())


@app.task
def order_task(order: dict[str, Any]) -> dict[str, Any]:
    return handle(order)


class Peer(Adapter):
    about = About(
        name="celery",
        package="celery",
        concurrency="prefork pool, one child process per CPU (the default)",
        wait="AsyncResult.get(): the Redis result backend subscribes to the task's channel",
        worker="celery -A adapters.celery:app worker",
        fill="task.delay() per job",
        keeps="a result key (status, result, date) for 1 day; no payload",
        job_keys=("celery-task-meta-*",),
        notes=(
            "the queue is a Redis list of JSON messages; results are celery-task-meta-* "
            "strings with a one-day TTL",
        ),
    )

    def worker_command(self) -> list[str]:
        return [console_script("celery"), "-A", "adapters.celery:app", "worker"]

    def enqueue(self, i: int) -> AsyncResult:
        return order_task.delay(payload(i))

    def fill(self, n: int) -> list[AsyncResult]:
        handles = [self.enqueue(i) for i in range(n)]
        self.progress = KeyProgress(self.r, [app.backend.get_key_for_task(h.id) for h in handles])
        return handles

    def completed(self, handles: list[AsyncResult]) -> int:
        return self.progress()

    def result(self, handle: AsyncResult) -> Any:
        return handle.result if handle.ready() else None

    def wait(self, handle: AsyncResult, timeout: float) -> Any:
        try:
            return handle.get(timeout=timeout)
        except CeleryTimeout as exc:
            raise WaitTimeout(str(exc)) from exc
