"""The floor: the fewest commands a reliable list queue that returns results can use.

Plain redis-py, no library: the producer LPUSHes ``{"id", "payload"}``; the worker
BLMOVEs a job from the pending list to a processing list, runs the handler, then sends
one pipeline: SET the result (with a TTL), PUBLISH it on the job's channel, LREM the job
from the processing list. The waiter SUBSCRIBEs to the channel, waits for the
confirmation, GETs the result key, and only if it is not there waits for the message.
The worker runs as many asyncio tasks as notifyq's asyncio worker does by default.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis.asyncio as aioredis

import notifyq.asyncio

from .base import (
    QUEUE,
    About,
    Adapter,
    KeyProgress,
    WaitTimeout,
    handle,
    harness_worker,
    payload,
    until_stopped,
    url,
)

BATCH = 1000
TASKS = notifyq.asyncio.Worker.default_concurrency  # the same concurrency as notifyq's
BASE = f"raw:{QUEUE}:"
PENDING, PROCESSING = BASE + "pending", BASE + "processing"
RESULT, DONE = BASE + "result:", BASE + "done:"  # + the job id: a key, a channel


def job(i: int) -> str:
    return json.dumps({"id": str(i), "payload": payload(i)})


async def run_worker() -> None:
    r = aioredis.Redis.from_url(url())

    async def loop() -> None:
        while True:
            raw = await r.blmove(PENDING, PROCESSING, 1, "RIGHT", "LEFT")
            if raw is None:
                continue
            body = json.loads(raw)
            value = json.dumps({"result": handle(body["payload"])})
            pipe = r.pipeline(transaction=False)
            pipe.set(RESULT + body["id"], value, ex=3600)
            pipe.publish(DONE + body["id"], value)
            pipe.lrem(PROCESSING, 1, raw)
            await pipe.execute()

    tasks = [asyncio.create_task(loop()) for _ in range(TASKS)]
    await until_stopped()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await r.aclose()


class Peer(Adapter):
    about = About(
        name="raw",
        package="redis",
        concurrency=f"{TASKS} asyncio tasks (as notifyq's)",
        wait="SUBSCRIBE to the job's channel, GET the result key, then the message",
        worker="python -m adapters.harness worker raw (plain redis.asyncio)",
        fill="LPUSH in pipelines of 1,000",
        keeps="a result key for 1 h; no payload",
        job_keys=(RESULT + "*",),
        notes=("no job record, retries, leases or events: the floor, not a queue",),
    )

    def setup(self) -> None:
        self.ps = self.r.pubsub()

    def close(self) -> None:
        self.ps.close()

    def worker_command(self) -> list[str]:
        return harness_worker("raw")

    def enqueue(self, i: int) -> str:
        self.r.lpush(PENDING, job(i))
        return str(i)

    def fill(self, n: int) -> list[str]:
        for start in range(0, n, BATCH):
            pipe = self.r.pipeline(transaction=False)
            for i in range(start, min(n, start + BATCH)):
                pipe.lpush(PENDING, job(i))
            pipe.execute()
        ids = [str(i) for i in range(n)]
        self.progress = KeyProgress(self.r, [RESULT + i for i in ids])
        return ids

    def completed(self, ids: list[str]) -> int:
        return self.progress()

    def result(self, job_id: str) -> Any:
        raw = self.r.get(RESULT + job_id)
        return None if raw is None else json.loads(raw)["result"]

    def wait(self, job_id: str, timeout: float) -> Any:
        channel = DONE + job_id
        deadline = time.monotonic() + timeout
        self.ps.subscribe(channel)
        try:
            self.next(channel, "subscribe", deadline)
            raw = self.r.get(RESULT + job_id) or self.next(channel, "message", deadline)
        finally:
            self.ps.unsubscribe(channel)
        return json.loads(raw)["result"]

    def next(self, channel: str, kind: str, deadline: float) -> Any:
        while (left := deadline - time.monotonic()) > 0:
            msg = self.ps.get_message(timeout=left)
            if msg and msg["type"] == kind and msg["channel"].decode() == channel:
                return msg["data"]
        raise WaitTimeout(f"no {kind} on {channel}")
