"""huey: calling a task (it enqueues), ``Result.get(blocking=True)`` and ``huey_consumer``.

``RedisHuey(notify_result=True)`` is huey's documented low-latency option for blocking
gets (BLPOP on a per-result notification list instead of polling with backoff). The
consumer runs with huey's defaults (one worker thread); ``-q`` logs warnings only.
"""

from __future__ import annotations

from typing import Any

from huey import RedisHuey
from huey.api import Result
from huey.exceptions import ResultTimeout

from .base import QUEUE, About, Adapter, WaitTimeout, console_script, handle, payload, url

huey = RedisHuey(QUEUE, url=url(), notify_result=True)


@huey.task()
def order_task(order: dict[str, Any]) -> dict[str, Any]:
    return handle(order)


class Peer(Adapter):
    about = About(
        name="huey",
        package="huey",
        concurrency="1 worker thread (the default)",
        wait="Result.get(blocking=True) with notify_result=True: BLPOP on a notification list",
        worker="huey_consumer adapters.huey.huey -q",
        fill="calling the task per job",
        keeps="the result, a field of one hash, until it is read; a notification list for 60 s",
        job_keys=(f"huey.notify.{QUEUE}.*",),
        notes=(
            "results are fields of one hash (huey.results.bench); reading a result "
            "deletes it unless preserve=True",
        ),
    )

    def worker_command(self) -> list[str]:
        return [console_script("huey_consumer"), "adapters.huey.huey", "-q"]

    def enqueue(self, i: int) -> Result:
        return order_task(payload(i))

    def fill(self, n: int) -> list[Result]:
        return [self.enqueue(i) for i in range(n)]

    def completed(self, results: list[Result]) -> int:
        return int(self.r.hlen(huey.storage.result_key))

    def result(self, result: Result) -> Any:
        return result.get(preserve=True)

    def wait(self, result: Result, timeout: float) -> Any:
        try:
            return result.get(blocking=True, timeout=timeout)
        except ResultTimeout as exc:
            raise WaitTimeout(str(exc)) from exc
