"""A worker process for fault-injection tests: ``python proc_worker.py URL QUEUE MODE DIR``.

MODE ``block``: write DIR/<job id>.started, then sleep (until killed).
MODE ``slow``: write DIR/<job id>.started, sleep 1 s, return "slow-done".
MODE ``async-block``: like block, with the asyncio worker.
Prints "ready" once its worker is about to start.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import sys
import time

import notifyq
import notifyq.asyncio as anq

url, queue, mode, folder = sys.argv[1:5]
marks = pathlib.Path(folder)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)


def mark(job_id: str) -> None:
    (marks / f"{job_id}.started").write_text("")


def block(payload: object, job: notifyq.ActiveJob) -> None:
    mark(job.id)
    time.sleep(3600)


def slow(payload: object, job: notifyq.ActiveJob) -> str:
    mark(job.id)
    time.sleep(1.0)
    return "slow-done"


async def async_block(payload: object, job: anq.ActiveJob) -> None:
    mark(job.id)
    await asyncio.sleep(3600)


print("ready", flush=True)
if mode == "async-block":
    asyncio.run(anq.Worker(queue, async_block, url=url, lease=1.0, grace=0.5).run())
else:
    handler = {"block": block, "slow": slow}[mode]
    notifyq.Worker(queue, handler, url=url, lease=1.0, grace=5.0, concurrency=2).run()
