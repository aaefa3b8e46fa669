"""Dramatiq: ``actor.send()``, ``Message.get_result(block=True)`` and the ``dramatiq`` CLI.

Redis is the broker and, through the Results middleware, the result backend. The CLI
starts one worker process per CPU by default; ``--processes 1`` keeps it to one worker
process, with Dramatiq's default 8 worker threads.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message
from dramatiq.results import ResultMissing, Results, ResultTimeout
from dramatiq.results.backends import RedisBackend

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

backend = RedisBackend(url=url())
broker = RedisBroker(url=url())
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True, queue_name=QUEUE)
def order_actor(order: dict[str, Any]) -> dict[str, Any]:
    return handle(order)


class Peer(Adapter):
    about = About(
        name="dramatiq",
        package="dramatiq",
        concurrency="8 threads in 1 process (default threads; --processes 1)",
        wait="Message.get_result(block=True): BRPOPLPUSH on the message's result key",
        worker="dramatiq adapters.dramatiq --processes 1",
        fill="actor.send per job",
        keeps="a result key for 10 min; the message is deleted",
        job_keys=("?" * 32,),  # result keys are md5 hex digests of the message's name
        notes=(
            "queued messages live in one hash per queue (dramatiq:bench.msgs)",
            "an idle worker polls its queue, backing off up to 5 s",
        ),
    )

    def worker_command(self) -> list[str]:
        return [console_script("dramatiq"), "adapters.dramatiq", "--processes", "1"]

    def enqueue(self, i: int) -> Message[Any]:
        return order_actor.send(payload(i))

    def fill(self, n: int) -> list[Message[Any]]:
        messages = [self.enqueue(i) for i in range(n)]
        self.progress = KeyProgress(self.r, [backend.build_message_key(m) for m in messages])
        return messages

    def completed(self, messages: list[Message[Any]]) -> int:
        return self.progress()

    def result(self, message: Message[Any]) -> Any:
        try:
            return message.get_result(backend=backend)
        except ResultMissing:
            return None

    def wait(self, message: Message[Any], timeout: float) -> Any:
        try:
            return message.get_result(backend=backend, block=True, timeout=int(timeout * 1000))
        except ResultTimeout as exc:
            raise WaitTimeout(str(exc)) from exc
