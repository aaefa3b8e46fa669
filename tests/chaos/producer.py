"""A producer process: ``python -m tests.chaos.producer RUN_DIR INDEX``.

Enqueues its share of the jobs (job ``n`` with ``n % producers == INDEX``), paced evenly
over the run's ``seconds``, and writes one line to ``acks-<INDEX>.jsonl`` for every
enqueue that was acknowledged (the call returned a job id). It rides through server
restarts: an enqueue that fails is retried with the same idempotency key (``job-<n>``),
so a retry whose first try did reach the server returns that job and makes no second one.
"""

from __future__ import annotations

import logging
import sys
import time

import notifyq
from notifyq import RedisUnavailable

from .plan import Log, Plan, exit_with_parent, ready, run_dir_from_argv

#: Seconds past the run's length after which a producer stops retrying an enqueue.
GIVE_UP_AFTER = 60.0


def enqueue(queue: notifyq.Queue, plan: Plan, n: int, give_up: float) -> tuple[str, int] | None:
    """Enqueue job ``n`` until it is acknowledged: (job id, tries), or None past ``give_up``."""
    tries, pause = 0, 0.05
    while True:
        tries += 1
        try:
            job = queue.enqueue(
                plan.payload(n),
                idempotency_key=f"job-{n}",
                delay=plan.delay(n),
                max_attempts=plan.max_attempts,
                group=plan.group(n),
            )
            return job.id, tries
        except RedisUnavailable:
            if time.monotonic() > give_up:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


def main() -> None:
    plan = Plan.load(run_dir_from_argv())
    index = int(sys.argv[2])
    exit_with_parent()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    queue = notifyq.Queue(plan.queue, plan.url)
    acks = Log(plan.path(f"acks-{index}.jsonl"))
    mine = [n for n in range(plan.jobs) if plan.producer_of(n) == index]
    interval = plan.seconds / max(1, len(mine))
    start = time.monotonic()
    give_up = start + plan.seconds + GIVE_UP_AFTER
    ready()
    for i, n in enumerate(mine):
        time.sleep(max(0.0, start + i * interval - time.monotonic()))
        acked = enqueue(queue, plan, n, give_up)
        if acked is None:
            acks.write(n=n, gave_up=True, t=time.time())
            continue
        job_id, tries = acked
        acks.write(n=n, id=job_id, t=time.time(), tries=tries)
    acks.write(done=True, t=time.time())


if __name__ == "__main__":
    main()
