"""The worker registry: which workers serve a queue, what they run, whether they live.

Each worker, at every heartbeat and in the round trip that renews its leases, calls
``register.lua`` once per queue it serves. That refreshes its member of the queue's
``workers`` ZSET (scored by the beat, server clock) and its ``worker:<id>`` HASH (host,
pid, settings, counters, the jobs it runs there), and gives both an expiry of a few
leases: a worker that is killed stops beating and its entry goes away by itself. A worker
that stops cleanly deletes its entry (``leave``). Readers (``Queue.workers()``,
``notifyq workers``, ``notifyq stats --watch``) call ``workers``: an entry whose beat is
older than ``LOST_TICKS`` of that worker's ticks is shown as lost.

Everything here is I/O-free: calls for the heartbeat, flows for the readers
(docs/key-schema.md has the keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import codec, scripts
from .codec import loose_text
from .errors import CorruptRecord
from .keys import QueueKeys
from .ops import Command, Flow, Pipeline, ScriptCall

#: Jobs a worker lists in its entry (per queue); ``running`` counts them all.
MAX_LISTED_JOBS = 100
#: Entries a reader reads per queue.
MAX_WORKERS = 1000
#: A worker whose last beat is older than this many of its ticks is lost.
LOST_TICKS = 5
#: ... and never sooner than this (ms): a loaded machine may beat late.
MIN_LOST_AFTER_MS = 2000
#: An entry lives this many leases without a beat (and at least twice ``lost_after``).
TTL_LEASES = 3


def lost_after_ms(tick: float) -> int:
    """Milliseconds without a beat after which a worker with this tick counts as lost."""
    return max(MIN_LOST_AFTER_MS, round(LOST_TICKS * tick * 1000))


def ttl_ms(lease_ms: int, tick: float) -> int:
    """How long an entry lives without a beat: a few leases, well past ``lost_after``."""
    return max(TTL_LEASES * lease_ms, 2 * lost_after_ms(tick))


def beat_call(
    keys: QueueKeys,
    worker_id: str,
    fields: Mapping[str, str | int],
    job_ids: Sequence[str],
    ttl: int,
) -> ScriptCall:
    """The ``register.lua`` call of one beat: ``fields`` for the worker hash, the ids of
    the jobs it runs on this queue (the first ``MAX_LISTED_JOBS``)."""
    args: list[Any] = [worker_id, ttl, len(fields)]
    for name, value in fields.items():
        args += [name, value]
    args += list(job_ids[:MAX_LISTED_JOBS])
    return ScriptCall(scripts.REGISTER, [keys.base], args)


def leave(queues: Sequence[QueueKeys], worker_id: str) -> Flow[None]:
    """Delete a worker's entries (it stops cleanly), all queues in one round trip."""
    calls: list[Command | ScriptCall] = []
    for keys in queues:
        calls += [Command("ZREM", keys.workers, worker_id), Command("DEL", keys.worker(worker_id))]
    yield Pipeline(calls)


def workers(keys: QueueKeys) -> Flow[list[dict[str, Any]]]:
    """The workers registered on a queue, most recent beat first (``entry`` each)."""
    members, now = yield Pipeline(
        [Command("ZREVRANGE", keys.workers, 0, MAX_WORKERS - 1, "WITHSCORES"), Command("TIME")]
    )
    beats = _pairs(members)
    if not beats:
        return []
    records = yield Pipeline([Command("HGETALL", keys.worker(w)) for w, _ in beats])
    now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
    return [
        entry(keys.queue, w, beat, record or {}, now_ms)
        for (w, beat), record in zip(beats, records, strict=True)
    ]


def _pairs(reply: Any) -> list[tuple[str, int]]:
    """``ZREVRANGE ... WITHSCORES``: a flat list (RESP2) or pairs (RESP3)."""
    items = list(reply or [])
    if items and isinstance(items[0], list | tuple):
        pairs = [(member, score) for member, score in items]
    else:
        pairs = list(zip(items[::2], items[1::2], strict=True))
    return [(loose_text(m) or "", int(float(s))) for m, s in pairs]


def entry(
    queue: str, worker_id: str, beat: int, record: Mapping[Any, Any], now: int
) -> dict[str, Any]:
    """One worker as readers see it. ``record`` is its hash (empty once it expired: the
    worker is then lost, with only its id and last beat known); ``now`` the server's ms.

    A field something else wrote that notifyq cannot read is None (or ``[]``)."""
    fields = {loose_text(k) or "": loose_text(v) or "" for k, v in record.items()}
    last_beat = _int(fields.get("last_beat")) or beat
    lost_after = _int(fields.get("lost_after_ms")) or MIN_LOST_AFTER_MS
    age = max(0, now - last_beat)
    jobs = [{**job, "queue": queue} for job in _list(fields.get("jobs")) if isinstance(job, dict)]
    return {
        "id": worker_id,
        "queue": queue,
        "host": fields.get("host") or None,
        "pid": _int(fields.get("pid")),
        "queues": [q for q in _list(fields.get("queues")) if isinstance(q, str)],
        "concurrency": _int(fields.get("concurrency")),
        "started_at": _int(fields.get("started_at")),
        "last_beat": last_beat,
        "beat_age": age / 1000,
        "alive": bool(fields) and age <= lost_after,
        "processed": _int(fields.get("processed")) or 0,
        "failures": _int(fields.get("failures")) or 0,
        "running": _int(fields.get("running")) or len(jobs),
        "jobs": jobs,
    }


def merge(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries of several queues as one per worker (a worker serving two queues is in both
    registries): its jobs on all of them, the most recent beat; first-seen order. Give
    each queue once."""
    merged: dict[str, dict[str, Any]] = {}
    for e in entries:
        seen = merged.get(e["id"])
        if seen is None:
            merged[e["id"]] = {**e, "jobs": list(e["jobs"])}
            del merged[e["id"]]["queue"]
            continue
        seen["jobs"] += e["jobs"]
        seen["running"] += e["running"]
        if e["last_beat"] > seen["last_beat"]:
            fresher = {k: v for k, v in e.items() if k not in ("jobs", "queue", "running")}
            seen.update(fresher)
    return list(merged.values())


def _int(value: str | None) -> int | None:
    return None if value is None else codec.integer(value)


def _list(value: str | None) -> list[Any]:
    if not value:
        return []
    try:
        found = codec.decode(value, what="worker field")
    except CorruptRecord:
        return []
    return found if isinstance(found, list) else []
