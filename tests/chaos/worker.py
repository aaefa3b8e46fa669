"""A worker process: ``python -m tests.chaos.worker RUN_DIR sync|async``.

Runs ``notifyq.Worker`` (threads) or ``notifyq.asyncio.Worker`` (tasks) on the run's queue.
Its handler is the side effect the run audits: it appends a ``start`` line when it begins
a job and an ``end`` line when it is done with it (``ok`` false when it raises), with the
job id, the attempt and this process's pid, to ``effects-<pid>.jsonl``, one unbuffered
write each. A SIGKILL of this process loses nothing already written, and a ``start``
without its ``end`` is a run the kill interrupted. Jobs the plan marks as failing raise on
every attempt, so they end dead-lettered with the error type ``Refused``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

import notifyq
import notifyq.asyncio as anq

from .plan import Log, Plan, exit_with_parent, ready, run_dir_from_argv


class Refused(Exception):
    """The failure of a job that the plan says fails on every attempt."""


class Effects:
    """This process's side-effect log."""

    def __init__(self, plan: Plan) -> None:
        self.pid = os.getpid()
        self._log = Log(plan.path(f"effects-{self.pid}.jsonl"))

    def start(self, job: notifyq.ActiveJob | anq.ActiveJob) -> None:
        self._log.write(ev="start", job=job.id, attempt=job.attempt, pid=self.pid, t=time.time())

    def end(self, job: notifyq.ActiveJob | anq.ActiveJob, ok: bool) -> None:
        self._log.write(
            ev="end", job=job.id, attempt=job.attempt, pid=self.pid, t=time.time(), ok=ok
        )

    def outcome(self, job: notifyq.ActiveJob | anq.ActiveJob, payload: dict[str, Any]) -> Any:
        """End the run: raise for a failing job, else the result."""
        if payload["fail"]:
            self.end(job, ok=False)
            raise Refused(f"job {payload['n']} fails on every attempt")
        self.end(job, ok=True)
        return {"n": payload["n"], "pid": self.pid}


def main() -> None:
    plan = Plan.load(run_dir_from_argv())
    flavour = sys.argv[2]
    exit_with_parent()
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    effects = Effects(plan)
    settings: dict[str, Any] = {
        "url": plan.url,
        "concurrency": plan.concurrency,
        "lease": plan.lease,
        "grace": 5.0,
        "backoff": (0.05, 0.5),
    }
    if flavour == "sync":

        def handle(payload: dict[str, Any], job: notifyq.ActiveJob) -> Any:
            effects.start(job)
            time.sleep(payload["ms"] / 1000)
            return effects.outcome(job, payload)

        ready()
        notifyq.Worker(plan.queue, handle, **settings).run()
    else:

        async def ahandle(payload: dict[str, Any], job: anq.ActiveJob) -> Any:
            effects.start(job)
            await asyncio.sleep(payload["ms"] / 1000)
            return effects.outcome(job, payload)

        async def work() -> None:
            try:
                await anq.Worker(plan.queue, ahandle, **settings).run()
            finally:
                await anq.connection.close_shared()

        ready()
        asyncio.run(work())


if __name__ == "__main__":
    main()
