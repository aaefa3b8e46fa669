"""The events each transition appends to the queue's stream, in order (the contract in
docs/events.md), read back with plain XRANGE."""

from __future__ import annotations

import json
import time

import redis

import notifyq
from notifyq import Queue, ops

from ..support import Subscriber


def stream(r: redis.Redis, queue: Queue, job: notifyq.Job | None = None) -> list[dict]:
    out = []
    for event_id, fields in r.xrange(queue.keys.events):
        event = json.loads(fields[b"e"])
        assert event["v"] == 1 and event["queue"] == queue.name and isinstance(event["ts"], int)
        if job is None or event["id"] == job.id:
            out.append({**event, "event_id": event_id.decode()})
    return out


def types(r: redis.Redis, queue: Queue, job: notifyq.Job) -> list[str]:
    return [e["type"] for e in stream(r, queue, job)]


def test_completed_job(queue: Queue, r: redis.Redis) -> None:
    job = queue.enqueue(2)

    def handler(payload: int, active: notifyq.ActiveJob) -> int:
        active.set_progress(0.5)
        return payload * 2

    notifyq.Worker(queue, handler, name="w-1").run(burst=True)
    events = stream(r, queue, job)
    assert [e["type"] for e in events] == ["enqueued", "started", "progress", "completed"]
    assert events[1]["worker"] == "w-1" and events[1]["attempt"] == 1
    assert events[2]["progress"] == 0.5
    assert events[3]["result"] == 4


def test_retry_then_dead(queue: Queue, r: redis.Redis) -> None:
    job = queue.enqueue(None, max_attempts=2)

    def boom(payload: None) -> None:
        raise KeyError("k")

    notifyq.Worker(queue, boom, backoff=(0.01, 0.02), lease=0.6).run(burst=True)
    events = stream(r, queue, job)
    assert [e["type"] for e in events] == [
        "enqueued", "started", "failed", "retrying", "started", "failed", "dead",
    ]  # fmt: skip
    assert events[2]["retry"] is True and events[5]["retry"] is False
    assert events[3]["delay_ms"] >= 0
    assert events[6]["error"]["type"] == "KeyError"


def test_lapsed_lease_and_delayed_enqueue(queue: Queue, r: redis.Redis) -> None:
    job = queue.enqueue("x", delay=0.05)
    assert stream(r, queue, job)[0]["delay_ms"] == 50
    time.sleep(0.06)
    queue._run(ops.maintain(queue.keys))
    queue._run(ops.claim(queue.keys, "ghost", 1, 10))
    time.sleep(0.02)
    queue._run(ops.maintain(queue.keys))
    events = stream(r, queue, job)
    assert [e["type"] for e in events] == ["enqueued", "started", "failed", "retrying"]
    assert events[2]["error"]["type"] == "LeaseExpired"


def test_cancel_release_and_requeue(queue: Queue, r: redis.Redis) -> None:
    cancelled = queue.enqueue(1)
    cancelled.cancel()
    assert types(r, queue, cancelled) == ["enqueued", "cancelled"]

    released = queue.enqueue(2)
    [claim] = queue._run(ops.claim(queue.keys, "w", 1, 10_000))
    queue._run(ops.settle([(claim, ops.Settlement("release", ""))]))
    events = stream(r, queue, released)
    assert [e["type"] for e in events] == ["enqueued", "started", "enqueued"]
    assert events[2]["requeued"] == "released"

    dead = queue.enqueue(3, max_attempts=1)

    def handler(payload: int) -> int:
        if payload == 3:
            raise ValueError("three")
        return payload

    notifyq.Worker(queue, handler).run(burst=True)
    queue.requeue(dead.id)
    assert types(r, queue, dead)[-2:] == ["dead", "enqueued"]
    assert stream(r, queue, dead)[-1]["requeued"] == "dead_letter"


def test_events_are_also_published(queue: Queue, r: redis.Redis) -> None:
    sub = Subscriber(r, queue.name, queue.keys.events)
    assert sub.get(timeout=5)["type"] == "subscribe"
    job = queue.enqueue("p")
    message = sub.get(timeout=5)
    sub.close()
    published = json.loads(message["data"])
    [stored] = stream(r, queue, job)
    assert published == stored  # the same JSON, with the stream id as event_id


def test_events_maxlen_bounds_the_stream(queue: Queue, r: redis.Redis) -> None:
    queue.set_events_maxlen(150)
    queue.enqueue_many(list(range(1000)))
    assert r.xlen(queue.keys.events) < 300  # trimmed in whole nodes of ~100 entries
