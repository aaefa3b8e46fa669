"""What notifyq reads back from Redis, written there by something else: every bad value
gets a clear error, or is quarantined or dead-lettered with a reason; nothing crashes or
spins. Workers of both flavours run for real against the test server.

docs/security.md ("External inputs") lists each case with the test that shows it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
import redis

import notifyq
import notifyq.asyncio as anq
from notifyq import Queue, ops
from notifyq.asyncio import connection as aconnection
from notifyq.errors import CorruptRecord, JobFailed
from notifyq.gateway import Gateway

from ..gateway.conftest import ConnectFactory, newest_event, queue_token
from ..gateway.test_http import fetch
from ..support import counting_logs, eventually, running, running_async

FLAVOURS = ["sync", "asyncio"]


def burst(flavour: str, queue: Queue, handler: Callable[..., Any] = lambda p: p) -> None:
    """Run a worker of ``flavour`` until the queue has nothing left to do."""
    if flavour == "sync":
        notifyq.Worker(queue, handler, backoff=(0.01, 0.05)).run(burst=True)
        return

    async def main() -> None:
        try:
            await anq.Worker(queue.name, handler, url=queue.url, backoff=(0.01, 0.05)).run(
                burst=True
            )
        finally:
            await aconnection.close_shared()

    asyncio.run(main())


def worker_running(
    flavour: str, queue: Queue, handler: Callable[..., Any] = lambda p: p, **settings: Any
) -> AbstractContextManager[Any]:
    """A worker of ``flavour`` running in a thread for the duration of a ``with`` block."""
    settings.setdefault("backoff", (0.01, 0.05))
    if flavour == "sync":
        return running(notifyq.Worker(queue, handler, **settings))
    return running_async(anq.Worker(queue.name, handler, url=queue.url, **settings))


# ---------------------------------------------------------------- job records


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(
    "payload",
    ["{not json", b"\xff\xfe", "NaN", '{"a": [1, 2'],
    ids=["syntax", "not-utf8", "nan", "cut"],
)
def test_a_payload_that_is_not_json_is_dead_lettered_with_the_reason_and_the_next_job_runs(
    queue: Queue, r: redis.Redis, flavour: str, payload: str | bytes
) -> None:
    bad, good = queue.enqueue(1), queue.enqueue(2)
    r.hset(queue.keys.job(bad.id), "payload", payload)
    with counting_logs(f"job {bad.id} of queue {queue.name}") as logged:
        burst(flavour, queue)
    with pytest.raises(JobFailed, match="CorruptRecord") as failure:
        bad.wait(timeout=5)
    assert f"payload of job {bad.id!r} is not valid JSON" in failure.value.error["message"]
    assert bad.info()["attempt"] == 1  # not retried: a retry cannot fix it
    [dead] = queue.dead_letters()
    assert dead["id"] == bad.id and dead["error"]["type"] == "CorruptRecord"
    assert good.result() == 2
    assert logged.count == 1 and "dead-lettered" in logged.messages[0]


NOT_A_JOB: list[tuple[str, Callable[[redis.Redis, Queue], Any], str]] = [
    ("missing", lambda r, q: None, "no job record at {key}"),
    (
        "string",
        lambda r, q: r.set(q.keys.job("x1"), "hello"),
        "{key} holds a string, not a job record",
    ),
    (
        "list",
        lambda r, q: r.rpush(q.keys.job("x1"), "a", "b"),
        "{key} holds a list, not a job record",
    ),
    (
        "no-payload",
        lambda r, q: r.hset(q.keys.job("x1"), "state", "queued"),
        "{key} has no payload field",
    ),
    (
        "no-state",
        lambda r, q: r.hset(q.keys.job("x1"), "payload", "1"),
        "{key} has no valid state field",
    ),
    (
        "unknown-state",
        lambda r, q: r.hset(q.keys.job("x1"), mapping={"payload": "1", "state": "QUEUED"}),
        "{key} has no valid state field",
    ),
]


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(
    ("write", "reason"), [c[1:] for c in NOT_A_JOB], ids=[c[0] for c in NOT_A_JOB]
)
def test_an_id_whose_record_is_not_a_job_is_quarantined_with_the_reason(
    queue: Queue,
    r: redis.Redis,
    flavour: str,
    write: Callable[[redis.Redis, Queue], None],
    reason: str,
) -> None:
    write(r, queue)
    r.lpush(queue.keys.pending("normal"), "x1")
    good = queue.enqueue("good")
    with counting_logs("quarantined") as logged:
        burst(flavour, queue)
    assert good.result() == "good"
    [entry] = queue.quarantined()
    assert entry["id"] == "x1"
    assert entry["reason"] == reason.format(key=queue.keys.job("x1"))
    assert isinstance(entry["at"], int)
    assert queue.stats()["quarantined"] == 1
    assert queue.stats()["totals"]["quarantined"] == 1
    assert logged.messages == [f"job x1 of queue {queue.name} quarantined: {entry['reason']}"]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_entry_that_is_not_a_job_id_is_quarantined_shown_printable(
    queue: Queue, r: redis.Redis, flavour: str
) -> None:
    r.lpush(queue.keys.pending("normal"), b'a"b{c}\xff', "-x")
    good = queue.enqueue("good")
    burst(flavour, queue)
    assert good.result() == "good"
    entries = queue.quarantined()
    assert [(e["id"], e["reason"]) for e in entries] == [
        ("-x", "not a job id"),
        ("a\\x22b\\x7bc\\x7d\\xff", "not a job id"),
    ]


MALFORMED: list[tuple[str, dict[str, str], list[str], str]] = [
    (
        "max_attempts",
        {"max_attempts": "three"},
        [],
        'field max_attempts holds "three", not an integer',
    ),
    ("no-max_attempts", {}, ["max_attempts"], "field max_attempts holds nothing, not an integer"),
    ("timeout_ms", {"timeout_ms": "soon"}, [], 'field timeout_ms holds "soon", not an integer'),
    ("attempt", {"attempt": "-1"}, [], 'field attempt holds "-1", not an integer'),
    ("lease", {"lease": "1.5"}, [], 'field lease holds "1.5", not an integer'),
    (
        "priority",
        {"priority": "urgent"},
        [],
        'field priority holds "urgent", not high, normal or low',
    ),
]


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(
    ("fields", "dropped", "reason"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_a_job_record_with_a_malformed_field_is_dead_lettered_with_the_reason(
    queue: Queue,
    r: redis.Redis,
    flavour: str,
    fields: dict[str, str],
    dropped: list[str],
    reason: str,
) -> None:
    bad, good = queue.enqueue("bad"), queue.enqueue("good")
    key = queue.keys.job(bad.id)
    if fields:
        r.hset(key, mapping=fields)
    if dropped:
        r.hdel(key, *dropped)
    with counting_logs(f"job {bad.id} of queue {queue.name} dead") as logged:
        burst(flavour, queue)
    with pytest.raises(JobFailed) as failure:
        bad.wait(timeout=5)
    assert failure.value.error == {"type": "CorruptRecord", "message": f"{key} {reason}"}
    assert bad.status() == "dead"
    assert [d["id"] for d in queue.dead_letters()] == [bad.id]
    assert good.result() == "good"
    assert logged.count == 1


def test_a_flood_of_foreign_ids_is_handled_a_hundred_per_claim(
    queue: Queue, r: redis.Redis
) -> None:
    r.lpush(queue.keys.pending("normal"), *[f"ghost{i}" for i in range(250)])
    good = queue.enqueue("good")  # behind the ghosts: pending lists are LPUSH in, RPOP out
    claims, refused = ops.claims(queue.keys, queue._run(raw_claim(queue)))
    assert (len(claims), len(refused)) == (0, 100)  # the server is not held for long
    burst("sync", queue)
    assert good.result() == "good"
    assert queue.stats()["quarantined"] == 250


def raw_claim(queue: Queue) -> ops.Flow[Any]:
    """One claim.lua call for one job: its reply as it is."""
    return (yield ops.claim_call(queue.keys, "w", 1, 10_000))


def test_foreign_ids_in_the_delayed_and_active_sets_are_quarantined_by_housekeeping(
    queue: Queue, r: redis.Redis
) -> None:
    r.zadd(queue.keys.delayed, {"ghost": 0})
    r.set(queue.keys.job("stone"), "x")
    r.zadd(queue.keys.active, {"stone": 0})
    later = queue.enqueue("later", delay=0.05)
    burst("sync", queue)  # housekeeping runs at every heartbeat; the burst waits for `later`
    assert later.result() == "later"
    assert {e["id"]: e["reason"] for e in queue.quarantined()} == {
        "ghost": f"no job record at {queue.keys.job('ghost')}",
        "stone": f"{queue.keys.job('stone')} holds a string, not a job record",
    }
    assert r.zcard(queue.keys.active) == r.zcard(queue.keys.delayed) == 0


# ---------------------------------------------------------------- queue keys of the wrong type

Write = Callable[[redis.Redis, Queue], Any]

BROKEN: list[tuple[str, Write, Write, str]] = [
    (
        "pending-string",
        lambda r, q: r.set(q.keys.pending("normal"), "x"),
        lambda r, q: r.delete(q.keys.pending("normal")),
        "{base}pending:normal holds a string where notifyq keeps a list",
    ),
    (
        "active-hash",
        lambda r, q: r.hset(q.keys.active, "a", "b"),
        lambda r, q: r.delete(q.keys.active),
        "{base}active holds a hash where notifyq keeps a zset",
    ),
    (
        "events-string",
        lambda r, q: r.set(q.keys.events, "x"),
        lambda r, q: r.delete(q.keys.events),
        "{base}events holds a string where notifyq keeps a stream",
    ),
    (
        "config-seq",
        lambda r, q: r.hset(q.keys.config, "seq", "many"),
        lambda r, q: r.hset(q.keys.config, "seq", 7),
        '{base}config field seq holds "many", not an event count',
    ),
]  # fmt: skip

WINDOW = 2.0  # seconds a broken queue is watched


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(
    ("breaks", "fixes", "message"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN]
)
def test_a_queue_key_of_the_wrong_type_pauses_the_worker_which_recovers_once_it_is_fixed(
    queue: Queue,
    r: redis.Redis,
    flavour: str,
    breaks: Callable[[redis.Redis, Queue], None],
    fixes: Callable[[redis.Redis, Queue], None],
    message: str,
) -> None:
    breaks(r, queue)
    expected = message.format(base=queue.keys.base)
    try:
        early = [queue.enqueue("before the fix")]  # enqueue.lua does not write `active`
    except CorruptRecord as refused:
        assert str(refused) == expected
        assert not list(r.scan_iter(match=f"{queue.keys.job_prefix}*"))  # nothing written
        early = []
    assert bool(early) == (":active " in expected)
    with (
        counting_logs("cannot claim jobs") as claims,
        counting_logs("cannot run housekeeping") as upkeep,
        worker_running(flavour, queue),
    ):
        time.sleep(WINDOW)  # a window to count attempts in, not a wait for an event
        attempts = claims.count
        fixes(r, queue)
        job = queue.enqueue("after the fix")
        assert job.wait(timeout=15) == "after the fix"
        assert [j.wait(timeout=5) for j in early] == ["before the fix"] * len(early)
    # a pause that doubles from 0.1 s: about 5 attempts in 2 s, where a spin makes thousands
    assert 3 <= attempts <= 8, claims.messages
    assert all(expected in m for m in claims.messages)
    assert upkeep.count <= 1  # logged when it starts, not at every heartbeat


def test_a_broken_queue_does_not_stop_the_leases_of_the_others_from_being_renewed(
    queue: Queue, r: redis.Redis, redis_url: str
) -> None:
    other = Queue(queue.name + "-b", redis_url)
    started, release = threading.Event(), threading.Event()

    def slow(payload: str) -> str:
        started.set()
        release.wait(10)
        return payload

    job = other.enqueue("slow")
    worker = notifyq.Worker([other, queue], slow, lease=0.6)
    try:
        with running(worker):
            assert started.wait(10)
            r.set(queue.keys.active, "x")  # renewals and housekeeping of `queue` now fail
            time.sleep(1.5)  # more than two leases: only renewals keep the job
            release.set()
            assert job.wait(timeout=10) == "slow"
        assert job.info()["attempt"] == 1  # its lease never lapsed: it ran once
    finally:
        for key in r.scan_iter(match=f"{other.keys.base}*"):
            r.delete(key)


# ---------------------------------------------------------------- counters and settings


def test_a_counter_that_is_not_a_number_is_named_by_stats_and_counted_afresh(
    queue: Queue, r: redis.Redis
) -> None:
    r.hset(queue.keys.stats, "completed", "lots")
    with pytest.raises(CorruptRecord, match="stats field 'completed' holds 'lots', not a count"):
        queue.stats()
    job = queue.enqueue(1)
    burst("sync", queue)  # a burst worker does not need the counters to know it is done
    assert job.result() == 1
    assert queue.stats()["totals"]["completed"] == 1


@pytest.mark.parametrize("value", ["abc", "-5", "0", "1.5", "1e400", ""])
def test_an_events_maxlen_that_is_not_a_count_means_the_default(
    queue: Queue, r: redis.Redis, value: str
) -> None:
    r.hset(queue.keys.config, "events_maxlen", value)
    queue.enqueue_many(list(range(300)))
    assert r.xlen(queue.keys.events) == 300  # the default keeps 10,000


# ---------------------------------------------------------------- results


CORRUPT_RESULTS: list[tuple[str, Callable[[redis.Redis, str], Any]]] = [
    ("not-json", lambda r, key: r.set(key, "{oops")),
    ("not-an-outcome", lambda r, key: r.set(key, "[1, 2]")),
    ("unknown-status", lambda r, key: r.set(key, '{"status": "maybe", "result": 1}')),
    ("error-not-a-record", lambda r, key: r.set(key, '{"status": "dead", "error": "x"}')),
    ("a-list", lambda r, key: r.rpush(key, "a")),
]


@pytest.mark.parametrize(
    "write", [c[1] for c in CORRUPT_RESULTS], ids=[c[0] for c in CORRUPT_RESULTS]
)
def test_a_corrupt_result_raises_corrupt_record_from_result_and_wait(
    queue: Queue, r: redis.Redis, write: Callable[[redis.Redis, str], Any]
) -> None:
    job = queue.enqueue(1)
    write(r, queue.keys.result(job.id))
    with pytest.raises(CorruptRecord):
        job.result()
    with pytest.raises(CorruptRecord):
        job.wait(timeout=5)


@pytest.mark.parametrize(
    "write", [c[1] for c in CORRUPT_RESULTS], ids=[c[0] for c in CORRUPT_RESULTS]
)
async def test_a_corrupt_result_raises_corrupt_record_from_result_and_wait_asyncio(
    aqueue: anq.Queue, r: redis.Redis, write: Callable[[redis.Redis, str], Any]
) -> None:
    job = await aqueue.enqueue(1)
    write(r, aqueue.keys.result(job.id))
    with pytest.raises(CorruptRecord):
        await job.result()
    with pytest.raises(CorruptRecord):
        await job.wait(timeout=5)


GARBAGE_MESSAGES = [b"{oops", b"\xff", b'{"status": "completed"}', b"[]", b'{"status": 1}']


def _subscribed(r: redis.Redis, channel: str) -> Callable[[], bool]:
    return lambda: r.pubsub_numsub(channel)[0][1] > 0


def test_wait_skips_garbage_on_the_done_channel_and_returns_the_outcome(
    queue: Queue, r: redis.Redis
) -> None:
    job = queue.enqueue(5)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(job.wait(timeout=10)))
    with counting_logs("skipped a message on") as skipped:
        waiter.start()
        eventually(_subscribed(r, queue.keys.done_channel(job.id)))
        for message in GARBAGE_MESSAGES:
            r.publish(queue.keys.done_channel(job.id), message)
        burst("sync", queue, lambda p: p * 2)
        waiter.join(10)
    assert got == [10]
    assert skipped.count >= len(GARBAGE_MESSAGES) - 1  # the subscription may see them all


async def test_wait_skips_garbage_on_the_done_channel_and_returns_the_outcome_asyncio(
    aqueue: anq.Queue, r: redis.Redis
) -> None:
    job = await aqueue.enqueue(5)
    with counting_logs("skipped a message on") as skipped:
        waiting = asyncio.create_task(job.wait(timeout=10))
        async with asyncio.timeout(10):
            while not _subscribed(r, aqueue.keys.done_channel(job.id))():
                await asyncio.sleep(0.01)
        for message in GARBAGE_MESSAGES:
            r.publish(aqueue.keys.done_channel(job.id), message)
        await anq.Worker(aqueue, lambda p: p * 2).run(burst=True)
        assert await waiting == 10
    assert skipped.count == len(GARBAGE_MESSAGES)


# ---------------------------------------------------------------- listeners

GARBAGE_ENTRIES: list[dict[str, Any]] = [
    {"e": "{oops"},
    {"other": "field"},
    {"e": b"\xff\xfe"},
    {"e": json.dumps({"type": "completed", "id": "j", "attempt": "one"})},
    {"e": json.dumps({"type": "exploded", "id": "j"})},
    {"e": "NaN"},
]


@pytest.fixture
def completions() -> Iterator[list[notifyq.Event]]:
    got: list[notifyq.Event] = []

    def receiver(sender: str, event: notifyq.Event) -> None:
        got.append(event)

    notifyq.signals.completed.connect(receiver, weak=False)
    yield got
    notifyq.signals.completed.disconnect(receiver)


@pytest.mark.parametrize("group", [None, "billing"], ids=["anonymous", "named"])
def test_a_listener_skips_garbage_stream_entries_and_delivers_the_next_event(
    queue: Queue, r: redis.Redis, completions: list[notifyq.Event], group: str | None
) -> None:
    listener = notifyq.Listener(queue, group, block=0.1)
    with counting_logs("skipped") as skipped, listener:
        for fields in GARBAGE_ENTRIES:
            r.xadd(queue.keys.events, fields)
        time.sleep(0.5)  # garbage last in the stream: read once, not again and again
        assert skipped.count == len(GARBAGE_ENTRIES)
        job = queue.enqueue(1)
        burst("sync", queue)
        eventually(lambda: any(e.job_id == job.id for e in completions))
    assert skipped.count == len(GARBAGE_ENTRIES)
    assert [e.job_id for e in completions] == [job.id]
    if group:  # acknowledged: nothing stays pending in the group
        assert r.xpending(queue.keys.events, group)["pending"] == 0


@pytest.mark.parametrize("group", [None, "billing"], ids=["anonymous", "named"])
async def test_a_listener_skips_garbage_stream_entries_and_delivers_the_next_event_asyncio(
    aqueue: anq.Queue, r: redis.Redis, completions: list[notifyq.Event], group: str | None
) -> None:
    with counting_logs("skipped") as skipped:
        async with anq.Listener(aqueue, group, block=0.1):
            for fields in GARBAGE_ENTRIES:
                r.xadd(aqueue.keys.events, fields)
            await asyncio.sleep(0.5)  # read once, not again and again
            assert skipped.count == len(GARBAGE_ENTRIES)
            job = await aqueue.enqueue(1)
            await anq.Worker(aqueue, lambda p: p).run(burst=True)
            async with asyncio.timeout(10):
                while not completions:
                    await asyncio.sleep(0.01)
    assert skipped.count == len(GARBAGE_ENTRIES)
    assert [e.job_id for e in completions] == [job.id]
    if group:
        assert r.xpending(aqueue.keys.events, group)["pending"] == 0


def test_a_listener_whose_stream_key_is_overwritten_pauses_and_recovers(
    queue: Queue, r: redis.Redis, completions: list[notifyq.Event]
) -> None:
    with counting_logs("trying again in") as failures, notifyq.Listener(queue, block=0.1):
        queue.enqueue("first")  # the stream exists
        r.delete(queue.keys.events)
        r.set(queue.keys.events, "not a stream")
        time.sleep(WINDOW)  # a window to count attempts in
        attempts = failures.count
        r.delete(queue.keys.events)
        job = queue.enqueue("after the fix")
        burst("sync", queue)
        eventually(lambda: any(e.job_id == job.id for e in completions))
    assert 3 <= attempts <= 8, failures.messages  # 0.05 s doubling: about 5 in 2 s
    assert "holds a value of the wrong type" in failures.messages[0]


# ---------------------------------------------------------------- the gateway

GARBAGE_EVENTS = [
    b"{oops",
    b"\xff\xfe",
    b'{"v":1,"type":"completed","queue":"q","id":"j","attempt":1,"ts":NaN,"seq":1,'
    b'"event_id":"1-1"}',  # NaN: a browser's JSON.parse would throw
    b'{"v":1,"type":"completed","queue":"q","id":"j","attempt":1,"ts":1,"seq":1}',  # no id
    b'{"v":1,"type":"completed","queue":"q","id":"j","event_id":"later"}',
    b'{"v":1,"type":"exploded","queue":"q","id":"j","event_id":"1-1"}',
    b'{"v":1,"type":"completed","queue":"q","id":7,"event_id":"1-1"}',
    b"[]",
]


async def test_the_gateway_drops_garbage_on_an_events_channel_and_keeps_serving(
    gw: Gateway, client: ConnectFactory, aqueue: anq.Queue, r: redis.Redis
) -> None:
    c = await client(gw)
    await c.subscribe(queue_token(aqueue.name), aqueue.name)
    await c.expect("subscribed", queue=aqueue.name, job=None)
    await c.expect("state", queue=aqueue.name, job=None)  # live from here
    with counting_logs("skipped: a message on") as skipped:
        for message in GARBAGE_EVENTS:
            r.publish(aqueue.keys.events, message)
        job = await aqueue.enqueue("real")
        [event] = await c.events(1)  # the real event is the next message
    assert (event["type"], event["id"]) == ("enqueued", job.id)
    assert skipped.count == len(GARBAGE_EVENTS)
    assert gw.stats()["skipped_messages"] == len(GARBAGE_EVENTS)
    await c.quiet()


async def test_a_job_record_with_fields_the_gateway_cannot_read_is_shown_without_them(
    gw: Gateway, client: ConnectFactory, aqueue: anq.Queue, r: redis.Redis
) -> None:
    odd, fine = await aqueue.enqueue_many(["odd", "fine"])
    r.hset(
        aqueue.keys.job(odd.id),
        mapping={"attempt": "x", "enqueued_at": "soon", "progress": "{oops", "state": b"\xff"},
    )
    c = await client(gw)
    token = queue_token(aqueue.name)
    await c.subscribe(token, aqueue.name, odd.id)
    await c.subscribe(token, aqueue.name, fine.id)  # in the same catch-up as the odd one
    states = {}
    for _ in range(4):
        message = await c.recv()
        if message["type"] == "state":
            states[message["job"]] = message
    assert states[odd.id]["attempt"] == 0 and "enqueued_at" not in states[odd.id]
    assert states[odd.id]["progress"] is None and states[odd.id]["state"] == "\\xff"
    assert states[fine.id]["state"] == "queued"
    reply = await fetch(gw, f"/jobs/{odd.id}", token=token)
    assert reply.status == 200 and reply.json()["attempt"] == 0


async def test_a_resume_skips_garbage_stream_entries(
    gw: Gateway, client: ConnectFactory, aqueue: anq.Queue, r: redis.Redis
) -> None:
    await aqueue.enqueue("mark")
    start = newest_event(r, aqueue.name)
    for fields in GARBAGE_ENTRIES:
        r.xadd(aqueue.keys.events, fields)
    job = await aqueue.enqueue("after")
    c = await client(gw)
    await c.subscribe(queue_token(aqueue.name), aqueue.name, since=start)
    await c.expect("subscribed", queue=aqueue.name, job=None)
    [event] = await c.events(1)
    assert (event["type"], event["id"]) == ("enqueued", job.id)
    await c.quiet()


async def test_the_http_api_answers_500_for_a_queue_it_cannot_read(
    gateway: Any, aqueue: anq.Queue, r: redis.Redis
) -> None:
    gw = await gateway(enqueue_queues=[aqueue.name], enqueue_key="k" * 20)
    with counting_logs("", "notifyq.gateway.websockets", logging.ERROR) as failures:
        r.hset(aqueue.keys.stats, "completed", "lots")
        stats = await fetch(gw, f"/queues/{aqueue.name}/stats", token=queue_token(aqueue.name))
        r.set(aqueue.keys.pending("normal"), "x")
        post = await fetch(
            gw,
            f"/queues/{aqueue.name}/jobs",
            "POST",
            token="k" * 20,
            body=b"1",
            headers={"Content-Type": "application/json"},
        )
    assert stats.status == 500 and "field 'completed' holds 'lots'" in stats.json()["error"]
    assert post.status == 500 and "pending:normal holds a string" in post.json()["error"]
    assert failures.messages == []  # answered, not a failure inside the server
    assert (await fetch(gw, "/healthz")).status == 200


@pytest.mark.parametrize("key", ["stats", "wake"])
def test_enqueue_over_a_foreign_counters_or_wake_key_still_queues_the_job(
    queue: Queue, r: redis.Redis, key: str
) -> None:
    """Those two cost a count or a wake-up, never the job: enqueue checks no type for them."""
    r.set(f"{queue.keys.base}{key}", "something else")
    job = queue.enqueue(3)
    assert job.status() == "queued"
    assert r.lrange(queue.keys.pending("normal"), 0, -1) == [job.id.encode()]
    assert r.get(f"{queue.keys.base}{key}") == b"something else"  # left as it was
