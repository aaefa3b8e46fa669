"""A named listener process: ``python proc_listener.py URL QUEUE NAME OUTFILE``.

Appends the job id of every completion it handles to OUTFILE; prints "ready" once joined;
stops gracefully on SIGTERM.
"""

from __future__ import annotations

import signal
import sys

import notifyq
from notifyq import signals

url, queue, name, outfile = sys.argv[1:5]
out = open(outfile, "a", buffering=1)  # noqa: SIM115


@signals.completed.connect_via(queue)
def record(sender: str, event: notifyq.Event) -> None:
    out.write(event.job_id + "\n")


signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
listener = notifyq.Listener(queue, name, url=url, claim_after=1.0).start()
print("ready", flush=True)
signal.sigwait({signal.SIGTERM})
listener.stop()
out.close()
