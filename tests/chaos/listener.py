"""The named listener process: ``python -m tests.chaos.listener RUN_DIR``.

A durable (named) ``notifyq.Listener`` on the run's queue. Every ``completed`` and ``dead``
event it is handed, and every ``gap`` signal, is appended to ``listener.jsonl`` (the file
is shared by the processes that replace a killed one; delivery is at-least-once, so the
same event may be written twice). Stops cleanly on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import notifyq
from notifyq import signals

from .plan import (
    Log,
    Plan,
    exit_with_parent,
    hold_stop_signals,
    ready,
    run_dir_from_argv,
    wait_for_stop,
)

#: Seconds before events a killed listener process was handed, and never acknowledged,
#: are taken over by the process that replaced it.
CLAIM_AFTER = 2.0


def main() -> None:
    hold_stop_signals()
    plan = Plan.load(run_dir_from_argv())
    exit_with_parent()
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    out = Log(plan.path("listener.jsonl"))
    pid = os.getpid()

    def ended(sender: str, event: notifyq.Event) -> None:
        out.write(
            job=event.job_id, type=event.type, eid=event.event_id, ts=event.ts, pid=pid,
            t=time.time(),
        )  # fmt: skip

    def gap(sender: str, event: notifyq.Event) -> None:
        out.write(type="gap", missing=event.data["missing"], after=event.data["after"], pid=pid)

    signals.completed.connect(ended, sender=plan.queue, weak=False)
    signals.dead.connect(ended, sender=plan.queue, weak=False)
    signals.gap.connect(gap, sender=plan.queue, weak=False)
    listener = notifyq.Listener(
        plan.queue, plan.listener_name, url=plan.url, claim_after=CLAIM_AFTER
    ).start()
    ready()
    wait_for_stop()
    listener.stop()
    out.close()


if __name__ == "__main__":
    main()
