"""blinker signals, one per event type, sent with ``sender=<queue name>``::

    from notifyq import signals

    @signals.completed.connect_via("orders")
    def shipped(sender: str, event: notifyq.Event) -> None:
        print(sender, event.job_id, event.result)

Receivers are called as ``receiver(sender, event=event)`` by a running ``Listener``; one
that raises is logged and the others still run. ``event`` fires for every job event
(not for ``gap``, which a listener sends when it finds the stream trimmed past its
position). The signals are
process-wide: two listeners on one queue in one process deliver each event twice.

``connect_via`` keeps a strong reference; plain ``connect(fn)`` keeps a *weak* one, which
silently drops lambdas and closures: prefer ``connect(fn, weak=False)`` or ``Queue.on``.
"""

from __future__ import annotations

from blinker import Namespace, Signal

_ns = Namespace()

enqueued: Signal = _ns.signal("notifyq.enqueued", doc="a job was enqueued (or re-queued)")
started: Signal = _ns.signal("notifyq.started", doc="a worker claimed a job and started it")
progress: Signal = _ns.signal("notifyq.progress", doc="a running job reported progress")
completed: Signal = _ns.signal("notifyq.completed", doc="a job completed with a result")
failed: Signal = _ns.signal("notifyq.failed", doc="an attempt failed (retried or not)")
retrying: Signal = _ns.signal("notifyq.retrying", doc="a failed job will run again")
dead: Signal = _ns.signal("notifyq.dead", doc="a job failed for good: dead-lettered")
cancelled: Signal = _ns.signal("notifyq.cancelled", doc="a job was cancelled")
gap: Signal = _ns.signal("notifyq.gap", doc="events may be missing: the stream was trimmed")
event: Signal = _ns.signal("notifyq.event", doc="every job event, whatever its type")

BY_TYPE: dict[str, Signal] = {
    "enqueued": enqueued,
    "started": started,
    "progress": progress,
    "completed": completed,
    "failed": failed,
    "retrying": retrying,
    "dead": dead,
    "cancelled": cancelled,
    "gap": gap,
}
