"""What the rate-limit tests of both flavours read and assert: the job starts the server
recorded, and the sliding-window guarantee checked on them."""

from __future__ import annotations

import json
from typing import Any

import redis

from notifyq import ops
from notifyq.keys import QueueKeys


def start_times(r: redis.Redis, queue: str) -> list[int]:
    """Server times (ms) of every start of a job of ``queue``, retries included: the ``ts``
    of its ``started`` events, oldest first."""
    entries = r.xrange(QueueKeys(queue).events, count=100_000)
    events = [json.loads(fields[b"e"]) for _, fields in entries]
    return sorted(e["ts"] for e in events if e["type"] == "started")


def started_at(r: redis.Redis, queue: str, ids: list[str]) -> list[int]:
    """The ``started_at`` (server ms) of each job record: the time of its last start."""
    return sorted(int(r.hget(QueueKeys(queue).job(i), "started_at") or 0) for i in ids)


def assert_within_limit(times: list[int], jobs: int, per_ms: int) -> None:
    """No window of ``per_ms`` (half-open: [t, t + per_ms)) holds more than ``jobs`` of
    ``times``: any ``jobs + 1`` consecutive starts span at least ``per_ms``."""
    times = sorted(times)
    for first, last in zip(times, times[jobs:], strict=False):
        assert last - first >= per_ms, f"{jobs + 1} starts within {last - first} ms: {times}"


def claim_reply(keys: QueueKeys, n: int) -> ops.Flow[Any]:
    """The raw reply of one ``claim.lua`` call for ``n`` jobs, as worker ``w``."""
    return (yield ops.claim_call(keys, "w", n, 60_000))
