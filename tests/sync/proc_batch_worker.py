"""A batch worker process for fault-injection tests:
``python proc_batch_worker.py URL QUEUE FLAVOUR DIR``.

FLAVOUR ``sync`` (``notifyq.Worker``) or ``async`` (``notifyq.asyncio.Worker``): a worker
with ``batch_size=3`` whose handler writes DIR/<job id>.started for each job of its batch,
then sleeps (until killed). Prints "ready" once its worker is about to start.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import sys
import time

import notifyq
import notifyq.asyncio as anq

url, queue, flavour, folder = sys.argv[1:5]
marks = pathlib.Path(folder)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
SETTINGS = {"batch_size": 3, "batch_wait": 30.0, "lease": 1.0, "grace": 0.5}


def mark(jobs: list[notifyq.ActiveJob] | list[anq.ActiveJob]) -> None:
    for job in jobs:
        (marks / f"{job.id}.started").write_text("")


def block(jobs: list[notifyq.ActiveJob]) -> list[None]:
    mark(jobs)
    time.sleep(3600)
    return [None] * len(jobs)


async def async_block(jobs: list[anq.ActiveJob]) -> list[None]:
    mark(jobs)
    await asyncio.sleep(3600)
    return [None] * len(jobs)


print("ready", flush=True)
if flavour == "async":
    asyncio.run(anq.Worker(queue, async_block, url=url, **SETTINGS).run())  # type: ignore[arg-type]
else:
    notifyq.Worker(queue, block, url=url, **SETTINGS).run()  # type: ignore[arg-type]
