"""Job states and every transition between them.

Everything that affects the job state machine is written here as data; the Lua scripts
in ``scripts/`` carry these transitions out atomically on the server, and the tests check
that the two agree. ``docs/job-states.md`` draws the same table.
"""

from __future__ import annotations

from typing import Final

QUEUED: Final = "queued"  # in a pending list, waiting for a worker
DELAYED: Final = "delayed"  # waiting for its start time (enqueue with delay=)
ACTIVE: Final = "active"  # claimed by a worker that holds its lease
RETRYING: Final = "retrying"  # an attempt failed; waiting out its backoff
COMPLETED: Final = "completed"  # ended with a result
DEAD: Final = "dead"  # failed for good; in the dead-letter list
CANCELLED: Final = "cancelled"  # cancelled before it completed

STATES: Final = (QUEUED, DELAYED, ACTIVE, RETRYING, COMPLETED, DEAD, CANCELLED)
TERMINAL: Final = frozenset({COMPLETED, DEAD, CANCELLED})

#: (state before, event) -> state after; ``None`` is "no job yet". The script that makes
#: each transition is named in the comment.
TRANSITIONS: Final[dict[tuple[str | None, str], str]] = {
    (None, "enqueue"): QUEUED,  # enqueue.lua
    (None, "enqueue_delayed"): DELAYED,  # enqueue.lua
    (DELAYED, "due"): QUEUED,  # maintain.lua
    (RETRYING, "due"): QUEUED,  # maintain.lua
    (QUEUED, "claim"): ACTIVE,  # claim.lua
    (ACTIVE, "complete"): COMPLETED,  # settle.lua
    (ACTIVE, "fail"): RETRYING,  # settle.lua, attempts left
    (ACTIVE, "fail_final"): DEAD,  # settle.lua, attempts spent or not retryable
    (ACTIVE, "lease_lapsed"): QUEUED,  # maintain.lua, attempts left
    (ACTIVE, "lease_lapsed_final"): DEAD,  # maintain.lua, attempts spent
    (ACTIVE, "release"): QUEUED,  # settle.lua, graceful shutdown
    (ACTIVE, "cancel"): CANCELLED,  # settle.lua (the worker stopped it), maintain.lua (lost)
    (QUEUED, "cancel"): CANCELLED,  # cancel.lua
    (DELAYED, "cancel"): CANCELLED,  # cancel.lua
    (RETRYING, "cancel"): CANCELLED,  # cancel.lua
    (DEAD, "requeue"): QUEUED,  # requeue.lua
}


def next_state(state: str | None, event: str) -> str:
    """The state after ``event``; ``ValueError`` if the table has no such transition."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise ValueError(f"no transition from {state!r} on {event!r}") from None


def is_terminal(state: str) -> bool:
    return state in TERMINAL
