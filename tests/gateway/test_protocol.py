"""The gateway's WebSocket protocol, end to end: a real gateway on the test server, real
WebSocket clients, jobs run by an asyncio worker.

What a client is sent is checked against the queue's event stream itself: a subscription
must deliver exactly the stream's events for its job (or queue) after its starting point,
in order, each once. ``Client.quiet()`` (a ping whose pong is the very next message) shows
that nothing else was queued behind them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import notifyq.asyncio as anq
from notifyq import protocol, tokens
from notifyq.gateway import Gateway, Limits

from ..support import server_of, subscribers
from .conftest import (
    TIMEOUT,
    Client,
    ConnectFactory,
    GatewayFactory,
    Steps,
    Storm,
    gateway_connections,
    job_token,
    newest_event,
    queue_token,
    small_window_socket,
    stream_events,
    until,
    ws_url,
)

StartWorker = Callable[..., anq.Worker]


async def echo(payload: Any) -> Any:
    return {"echo": payload}


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


# ---------------------------------------------------------------- following a job


async def test_job_subscription_sends_state_then_every_event_once_in_order(
    gw: Gateway,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    r: redis.Redis,
    start_worker: StartWorker,
) -> None:
    async def handler(payload: Any, job: anq.ActiveJob) -> Any:
        await job.set_progress({"pct": 50})
        await job.set_progress({"pct": 90})
        return {"echo": payload}

    job = await aqueue.enqueue({"n": 1})
    c = await client(gw)
    state = await c.follow(job_token(name, job.id), name, job.id)
    assert state["state"] == "queued"
    assert state["event_id"] == newest_event(r, name)  # its enqueued event: already covered

    start_worker(handler)
    got = await c.until_done(job.id)
    await c.quiet()
    assert types(got) == ["started", "progress", "progress", "completed"]
    assert [e["progress"] for e in got[1:3]] == [{"pct": 50}, {"pct": 90}]
    assert got[-1]["result"] == {"echo": {"n": 1}}
    assert got == stream_events(r, name, after=state["event_id"])


async def test_subscribing_after_completion_sends_the_final_state(
    gw: Gateway, client: ConnectFactory, aqueue: anq.Queue, name: str, r: redis.Redis
) -> None:
    job = await aqueue.enqueue([1, 2])
    await anq.Worker(aqueue, echo).run(burst=True)

    c = await client(gw)
    state = await c.follow(job_token(name, job.id), name, job.id)
    assert state["state"] == "completed"
    assert state["result"] == {"echo": [1, 2]}
    assert state["attempt"] == 1
    assert state["event_id"] == newest_event(r, name)  # its completed event
    await c.quiet()  # no event follows: the state covers them all


async def test_a_job_that_does_not_exist_is_not_found(
    gw: Gateway, client: ConnectFactory, name: str
) -> None:
    c = await client(gw)
    token = job_token(name, "no-such-job")
    for _ in range(2):  # refused, the subscription is gone: it can be tried again
        await c.subscribe(token, name, "no-such-job")
        await c.expect("subscribed", queue=name, job="no-such-job")
        error = await c.error("not_found")
        assert (error["queue"], error["job"]) == (name, "no-such-job")
    await c.quiet()


async def test_subscribing_while_events_pour_in_misses_none_and_repeats_none(
    gw: Gateway,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    r: redis.Redis,
    start_worker: StartWorker,
) -> None:
    storm = Storm()
    job = await aqueue.enqueue(None)
    start_worker(storm)
    await asyncio.wait_for(storm.running.wait(), TIMEOUT)
    followers = []
    for _ in range(5):  # one after the other, each at a different point of the storm
        c = await client(gw)
        state = await c.follow(job_token(name, job.id), name, job.id)
        assert state["state"] == "active"
        followers.append((c, state["event_id"]))
    dashboard = await client(gw)
    since = newest_event(r, name)
    await dashboard.subscribe(queue_token(name), name, since=since)
    await dashboard.expect("subscribed")
    followers.append((dashboard, since))
    storm.stop()

    for c, after in followers:
        got = await c.until_done(job.id, limit=20_000)
        await c.quiet()
        assert got == stream_events(r, name, after=after)
        assert got[-1]["result"] == "done"


# ---------------------------------------------------------------- isolation


async def test_a_token_grants_only_its_own_job_or_queue(
    gw: Gateway, client: ConnectFactory, aqueue: anq.Queue, name: str
) -> None:
    a, b = await aqueue.enqueue_many(["a", "b"])
    other = f"{name}-other"
    c = await client(gw)
    refused = [
        (job_token(name, a.id), name, b.id),  # another job
        (job_token(name, a.id), name, None),  # the queue
        (job_token(name, a.id), other, a.id),  # the same id in another queue
        (queue_token(name), other, None),  # another queue
        (queue_token(name), other, a.id),  # a job of another queue
    ]
    for token, queue, job in refused:
        await c.subscribe(token, queue, job)
        error = await c.error("forbidden")
        assert (error["queue"], error.get("job")) == (queue, job)

    # what the tokens do grant
    await c.follow(job_token(name, a.id), name, a.id)
    await c.follow(queue_token(name), name, b.id)  # a queue token grants its jobs too
    await c.subscribe(queue_token(name), name)
    await c.expect("subscribed", queue=name, job=None)
    await c.expect("state", queue=name, job=None)
    await c.quiet()


async def test_clients_following_two_running_jobs_get_only_their_own_events(
    gw: Gateway,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    start_worker: StartWorker,
) -> None:
    both = asyncio.Barrier(2)

    async def handler(payload: str, job: anq.ActiveJob) -> str:
        await job.set_progress("before")
        await asyncio.wait_for(both.wait(), TIMEOUT)  # the two jobs run at the same time
        await job.set_progress("after")
        return payload.upper()

    a, b = await aqueue.enqueue_many(["a", "b"])
    ca, cb = await client(gw), await client(gw)
    await ca.follow(job_token(name, a.id), name, a.id)
    await cb.follow(job_token(name, b.id), name, b.id)
    start_worker(handler, concurrency=2)

    got_a, got_b = await asyncio.gather(ca.until_done(a.id), cb.until_done(b.id))
    await asyncio.gather(ca.quiet(), cb.quiet())
    for job, got in ((a, got_a), (b, got_b)):
        assert [e["id"] for e in got] == [job.id] * 4
        assert types(got) == ["started", "progress", "progress", "completed"]
    assert (got_a[-1]["result"], got_b[-1]["result"]) == ("A", "B")


# ---------------------------------------------------------------- tokens


async def test_bad_tokens_are_refused(
    gw: Gateway, client: ConnectFactory, aqueue: anq.Queue, name: str
) -> None:
    a, b = await aqueue.enqueue_many([1, 2])
    token_a, token_b = job_token(name, a.id), job_token(name, b.id)
    forged = token_a.split(".")[0] + "." + token_b.split(".")[1]  # a's claims, b's signature
    cases = {
        forged: "bad signature",
        tokens.issue(b"another-secret-of-some-length", name, a.id): "bad signature",
        "not-a-token": "malformed",
        "a.b.c": "malformed",
        "": "malformed",
        "x" * 2000 + "." + "y": "malformed",
        job_token(name, a.id, ttl=10, now=time.time() - 60): "expired",
    }
    c = await client(gw)
    for token, reason in cases.items():
        await c.subscribe(token, name, a.id)
        error = await c.error("invalid_token")
        assert reason in error["message"]
        assert (error["queue"], error["job"]) == (name, a.id)
    await c.follow(token_a, name, a.id)  # the connection still serves a good token


async def test_a_subscription_ends_when_its_token_expires(
    gw: Gateway,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    start_worker: StartWorker,
) -> None:
    a, b = await aqueue.enqueue_many(["a", "b"])
    c = await client(gw)
    subscribed = time.monotonic()
    await c.follow(job_token(name, a.id, ttl=2), name, a.id)
    error = await c.error("token_expired")
    assert time.monotonic() - subscribed > 0.5
    assert (error["queue"], error["job"]) == (name, a.id)

    # A worker of concurrency 1 runs a, then b: if a's events still reached the client, they
    # would come before b's last one.
    await c.follow(job_token(name, b.id), name, b.id)
    start_worker(echo, concurrency=1)
    got = await c.until_done(b.id)
    await c.quiet()
    assert await a.result() == {"echo": "a"}
    assert {e["id"] for e in got} == {b.id}
    assert types(got) == ["started", "completed"]


# ---------------------------------------------------------------- resuming


async def test_a_job_resumed_gets_exactly_the_events_it_missed_then_live_ones(
    gw: Gateway,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    r: redis.Redis,
    start_worker: StartWorker,
) -> None:
    steps = Steps()
    job = await aqueue.enqueue("x")
    token = job_token(name, job.id)
    first = await client(gw)
    state = await first.follow(token, name, job.id)
    start_worker(steps)
    seen = await first.events(1)  # started
    await steps.step()
    seen += await first.events(1)  # progress 1
    await first.ws.close()

    await steps.step()  # progress 2 and 3 happen while no one follows the job
    other = await aqueue.enqueue("other", delay=3600)  # another job's event in between
    await steps.step()
    second = await client(gw)
    await second.follow(token, name, job.id, since=seen[-1]["event_id"])
    missed = await second.events(2)
    steps.finish()
    live = await second.until_done(job.id)
    await second.quiet()

    assert types(seen) == ["started", "progress"]
    assert [e["progress"] for e in missed] == [2, 3]
    assert types(live) == ["completed"]
    mine = [e for e in stream_events(r, name, after=state["event_id"]) if e["id"] != other.id]
    assert seen + missed + live == mine


async def test_a_queue_resumed_gets_exactly_the_events_it_missed_then_live_ones(
    gw: Gateway, client: ConnectFactory, aqueue: anq.Queue, name: str, r: redis.Redis
) -> None:
    await aqueue.enqueue("mark")
    start = newest_event(r, name)
    token = queue_token(name)
    first = await client(gw)
    await first.subscribe(token, name, since=start)
    await first.expect("subscribed", queue=name, job=None)
    await aqueue.enqueue_many([1, 2, 3])
    seen = await first.events(3)
    await first.ws.close()

    await aqueue.enqueue_many([4, 5])  # while no one follows the queue
    second = await client(gw)
    await second.subscribe(token, name, since=seen[-1]["event_id"])
    await second.expect("subscribed", queue=name, job=None)
    missed = await second.events(2)
    await aqueue.enqueue(6)
    live = await second.events(1)
    await second.quiet()

    everything = seen + missed + live
    assert types(everything) == ["enqueued"] * 6
    assert everything == stream_events(r, name, after=start)


async def test_a_job_resumed_past_trimmed_events_gets_a_gap_then_a_fresh_state(
    gw: Gateway,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    r: redis.Redis,
    start_worker: StartWorker,
) -> None:
    job = await aqueue.enqueue("x")
    token = job_token(name, job.id)
    first = await client(gw)
    state = await first.follow(token, name, job.id)
    await first.ws.close()
    r.xtrim(f"nq:{{{name}}}:events", maxlen=0, approximate=False)

    second = await client(gw)
    await second.follow(token, name, job.id, since=state["event_id"])
    await second.expect("gap", queue=name, job=job.id, after=state["event_id"])
    fresh = await second.expect("state", queue=name, job=job.id, state="queued")
    assert fresh["event_id"] == "0-0"  # the stream is empty now
    start_worker(echo)
    got = await second.until_done(job.id)
    await second.quiet()
    assert types(got) == ["started", "completed"]
    assert got == stream_events(r, name)


@pytest.mark.parametrize("trim", [True, False], ids=["trimmed", "older-than-the-stream"])
async def test_a_queue_resumed_where_the_stream_has_no_such_event_gets_a_gap(
    gw: Gateway,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    r: redis.Redis,
    trim: bool,
) -> None:
    await aqueue.enqueue_many([1, 2])
    since = newest_event(r, name) if trim else "1-0"
    if trim:
        r.xtrim(f"nq:{{{name}}}:events", maxlen=0, approximate=False)
    c = await client(gw)
    await c.subscribe(queue_token(name), name, since=since)
    await c.expect("subscribed", queue=name, job=None)
    await c.expect("gap", queue=name, job=None, after=since)
    # then where it is live from: the newest event, or none at all once trimmed to nothing
    await c.expect("state", queue=name, job=None, event_id="0-0" if trim else newest_event(r, name))
    await c.quiet()
    assert gw.stats()["gaps"] == 1


async def test_a_queue_subscription_is_told_where_it_is_live_from(
    gw: Gateway, client: ConnectFactory, aqueue: anq.Queue, name: str, r: redis.Redis
) -> None:
    await aqueue.enqueue("before")
    c = await client(gw)
    await c.subscribe(queue_token(name), name)
    await c.expect("subscribed", queue=name, job=None)
    state = await c.expect("state", queue=name, job=None, event_id=newest_event(r, name))
    # once told, nothing after it can be missed: a job enqueued now is seen enqueued
    job = await aqueue.enqueue("after")
    [event] = await c.events(1)
    assert (event["type"], event["id"]) == ("enqueued", job.id)
    assert protocol.event_key(event["event_id"]) > protocol.event_key(state["event_id"])
    await c.quiet()


async def test_resuming_from_the_start_is_a_gap_once_the_stream_was_trimmed(
    gw: Gateway, client: ConnectFactory, aqueue: anq.Queue, name: str, r: redis.Redis
) -> None:
    await aqueue.enqueue_many([1, 2, 3])
    c = await client(gw)
    await c.subscribe(queue_token(name), name, since="0-0")  # everything the stream holds
    await c.expect("subscribed", queue=name, job=None)
    assert [e["type"] for e in await c.events(3)] == ["enqueued"] * 3
    await c.quiet()

    r.xtrim(f"nq:{{{name}}}:events", maxlen=1, approximate=False)  # events 1 and 2 are gone
    late = await client(gw)
    await late.subscribe(queue_token(name), name, since="0-0")
    await late.expect("subscribed", queue=name, job=None)
    await late.expect("gap", queue=name, job=None, after="0-0")
    await late.expect("state", queue=name, job=None, event_id=newest_event(r, name))
    await late.quiet()


async def test_a_job_resumed_that_does_not_exist_is_not_found(
    gw: Gateway, client: ConnectFactory, aqueue: anq.Queue, name: str, r: redis.Redis
) -> None:
    await aqueue.enqueue(None)
    since = newest_event(r, name)  # an id the stream holds, so only the job can be missing
    c = await client(gw)
    await c.subscribe(job_token(name, "no-such-job"), name, "no-such-job", since=since)
    await c.expect("subscribed", queue=name, job="no-such-job")
    await c.error("not_found")
    await c.quiet()


# ---------------------------------------------------------------- a client that does not read


async def test_a_client_that_does_not_read_is_cut_off_and_others_are_still_served(
    gateway: GatewayFactory,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    r: redis.Redis,
    start_worker: StartWorker,
) -> None:
    gw = await gateway(limits=Limits(send_buffer=100_000))
    job = await aqueue.enqueue(None)
    start = newest_event(r, name)
    # max_queue=1 and a tiny receive window: the slow client stops taking data at once
    slow = await client(gw, max_queue=1, sock=small_window_socket(gw))
    good = await client(gw)
    for c in (slow, good):
        await c.subscribe(queue_token(name), name, since=start)
        await c.expect("subscribed")

    # Progress events of 50 kB, one at a time: the good client reads each; the slow
    # one's buffers (the gateway's, the socket's and the kernel's) fill up.
    more: asyncio.Queue[bool] = asyncio.Queue()

    async def chatty(payload: None, job: anq.ActiveJob) -> str:
        while await more.get():
            await job.set_progress("x" * 50_000)
        return "done"

    start_worker(chatty)
    assert types(await good.events(1)) == ["started"]
    sent = 0
    while not any(s.cut_offs for s in gw.sessions):
        assert sent < 400, "not cut off after 20 MB"
        more.put_nowait(True)
        sent += 1
        assert types(await good.events(1)) == ["progress"]

    messages, code = await slow.drain()
    assert code == 4001
    assert len(messages) < sent
    await until(lambda: gw.stats()["slow_consumers"] == 1)
    assert gw.stats()["clients"] == 1

    more.put_nowait(False)  # the good client is still served
    [event] = await good.events(1)
    assert (event["type"], event["id"], event["result"]) == ("completed", job.id, "done")
    await good.quiet()


# ---------------------------------------------------------------- bad frames and limits

BAD_FRAMES: list[tuple[str, str | bytes, str]] = [
    ("not-json", "{op: ping}", "bad_json"),
    ("a-list", '["ping"]', "bad_json"),
    ("a-number", "42", "bad_json"),
    ("unbalanced-nesting", "[" * 3000, "bad_json"),
    ("deep-nesting", "[" * 2000 + "]" * 2000, "bad_json"),
    ("unknown-op", '{"op": "publish"}', "unknown_op"),
    ("no-op", '{"queue": "q"}', "unknown_op"),
    ("op-not-a-string", '{"op": 7}', "unknown_op"),
    ("missing-token", '{"op": "subscribe", "queue": "q"}', "bad_message"),
    ("missing-queue", '{"op": "unsubscribe"}', "bad_message"),
    ("unknown-field", '{"op": "ping", "queue": "q"}', "bad_message"),
    ("token-not-a-string", '{"op": "subscribe", "token": 1, "queue": "q"}', "bad_message"),
    ("queue-not-a-string", '{"op": "subscribe", "token": "t", "queue": ["q"]}', "bad_message"),
    ("bad-queue-name", '{"op": "subscribe", "token": "t", "queue": "a b"}', "bad_message"),
    ("bad-job-id", '{"op": "subscribe", "token": "t", "queue": "q", "job": "-x"}', "bad_message"),
    ("job-not-a-string", '{"op": "unsubscribe", "queue": "q", "job": 5}', "bad_message"),
    ("bad-since", '{"op": "subscribe", "token": "t", "queue": "q", "since": "now"}', "bad_message"),
    ("since-a-number", '{"op":"subscribe","token":"t","queue":"q","since":1}', "bad_message"),
    ("binary", b'{"op": "ping"}', "bad_message"),
]


@pytest.mark.parametrize(
    ("frame", "code"), [(f, c) for _, f, c in BAD_FRAMES], ids=[i for i, _, _ in BAD_FRAMES]
)
async def test_a_bad_frame_is_answered_with_an_error_and_the_connection_goes_on(
    gw: Gateway, client: ConnectFactory, frame: str | bytes, code: str
) -> None:
    c = await client(gw)
    await c.send(frame)
    await c.error(code)
    await c.quiet()


async def test_a_frame_over_max_message_closes_the_connection_with_1009(
    gw: Gateway, client: ConnectFactory
) -> None:
    c = await client(gw)
    await c.quiet()
    await c.send('{"op": "ping", "pad": "' + "x" * gw.limits.max_message + '"}')
    assert await c.close_code() == 1009


async def test_too_many_bad_frames_close_the_connection_with_1008(
    gateway: GatewayFactory, client: ConnectFactory
) -> None:
    gw = await gateway(limits=Limits(max_errors=3))
    c = await client(gw)
    for _ in range(2):
        await c.send("nonsense")
        await c.error("bad_json")
    await c.quiet()  # two are forgiven
    for _ in range(5):  # the third closes; those sent after it are dropped
        await c.send("nonsense")
    # at once, not after the close timeout (5 s): the gateway reads the client's close frame
    messages, code = await asyncio.wait_for(c.drain(), 2)
    assert code == 1008
    assert all(m["code"] == "bad_json" for m in messages)
    assert len(messages) <= 1


async def test_a_client_flooding_the_gateway_is_closed_with_1008(
    gateway: GatewayFactory, client: ConnectFactory
) -> None:
    gw = await gateway(limits=Limits(rate=1, burst=5))
    c = await client(gw)
    for _ in range(20):
        await c.send({"op": "ping"})
    messages, code = await asyncio.wait_for(c.drain(), 2)
    assert code == 1008
    assert messages == [{"type": "pong"}] * len(messages)
    assert len(messages) <= 5


async def test_subscription_bookkeeping(
    gateway: GatewayFactory,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    start_worker: StartWorker,
) -> None:
    gw = await gateway(limits=Limits(max_subscriptions=2))
    a, b, c = await aqueue.enqueue_many(["a", "b", "c"])
    token = queue_token(name)
    ws = await client(gw)
    await ws.follow(token, name, a.id)
    await ws.follow(token, name, b.id)
    await ws.subscribe(token, name, c.id)
    await ws.error("too_many_subscriptions")
    await ws.subscribe(token, name, b.id)
    await ws.error("already_subscribed")
    await ws.send({"op": "unsubscribe", "queue": name, "job": c.id})
    await ws.error("not_subscribed")
    await ws.send({"op": "unsubscribe", "queue": name})
    await ws.error("not_subscribed")

    await ws.send({"op": "unsubscribe", "queue": name, "job": a.id})
    await ws.expect("unsubscribed", queue=name, job=a.id)
    # A worker of concurrency 1 runs a, then b, then c: a's events would come before b's last one.
    start_worker(echo, concurrency=1)
    got = await ws.until_done(b.id)
    assert {e["id"] for e in got} == {b.id}
    await c.wait(timeout=TIMEOUT)
    await ws.quiet()
    state = await ws.follow(token, name, c.id)  # room for one more again
    assert state["state"] == "completed"


# ---------------------------------------------------------------- many clients


async def test_a_thousand_clients_each_get_their_own_result_over_one_pubsub_connection(
    gateway: GatewayFactory,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    r: redis.Redis,
    start_worker: StartWorker,
) -> None:
    count = 1000
    others = {c["id"] for c in gateway_connections(r, name)}  # gateways of other processes
    gw = await gateway()
    jobs = await aqueue.enqueue_many([{"n": i} for i in range(count)])
    opening = asyncio.Semaphore(50)

    async def follow(job: anq.Job) -> Client:
        async with opening:
            c = await client(gw)
            await c.follow(job_token(name, job.id), name, job.id)
            return c

    clients = await asyncio.gather(*(follow(j) for j in jobs))
    assert gw.stats()["clients"] == count
    channel = f"nq:{{{name}}}:events"
    [mine] = [c for c in gateway_connections(r, name) if c["id"] not in others]
    assert int(mine["sub"]) + int(mine.get("ssub", 0)) == 1  # one channel for the whole queue
    assert subscribers(r, name, channel) == 1

    start_worker(echo, concurrency=50)

    async def outcome(c: Client, job: anq.Job) -> list[dict[str, Any]]:
        got = await c.until_done(job.id)
        await c.quiet()
        return got

    results = await asyncio.gather(*(outcome(c, j) for c, j in zip(clients, jobs, strict=True)))
    for i, (job, got) in enumerate(zip(jobs, results, strict=True)):
        assert [e["id"] for e in got] == [job.id, job.id]
        assert types(got) == ["started", "completed"]
        assert got[-1]["result"] == {"echo": {"n": i}}

    await asyncio.gather(*(c.ws.close() for c in clients))
    await until(lambda: not r.pubsub_channels(channel))
    assert gw.stats()["clients"] == 0


# ---------------------------------------------------------------- Redis trouble


async def test_events_missed_while_the_pubsub_connection_is_down_are_replayed(
    gateway: GatewayFactory,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    r: redis.Redis,
    start_worker: StartWorker,
) -> None:
    others = {c["id"] for c in gateway_connections(r, name)}
    gw = await gateway()
    steps = Steps()
    job = await aqueue.enqueue("x")
    c = await client(gw)
    state = await c.follow(job_token(name, job.id), name, job.id)
    start_worker(steps)
    got = await c.events(1)  # started
    await steps.step()
    got += await c.events(1)  # progress 1
    received = gw.stats()["events"]  # messages that came over pub/sub so far

    [conn] = [x for x in gateway_connections(r, name) if x["id"] not in others]
    assert server_of(r, name).client_kill_filter(_id=conn["id"]) == 1
    # The gateway waits before it reconnects: these happen while it is away.
    await steps.step()
    await steps.step()
    steps.finish()
    got += await c.until_done(job.id)
    await c.quiet()

    assert types(got) == ["started", "progress", "progress", "progress", "completed"]
    assert got == stream_events(r, name, after=state["event_id"])
    assert gw.stats()["events"] < received + 3, "no event came by replay"
    [again] = [x for x in gateway_connections(r, name) if x["id"] not in others]
    assert again["id"] != conn["id"]


async def test_a_storm_of_events_across_a_lost_pubsub_connection_loses_none(
    gateway: GatewayFactory,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    r: redis.Redis,
    start_worker: StartWorker,
) -> None:
    others = {c["id"] for c in gateway_connections(r, name)}
    gw = await gateway()
    storm = Storm()
    job = await aqueue.enqueue(None)
    c = await client(gw)
    state = await c.follow(job_token(name, job.id), name, job.id)
    start_worker(storm)
    got = await c.events(20)

    # Events go on while the gateway reconnects, re-subscribes and replays what it
    # missed: those it replays and those it is sent live meet without gap or repeat.
    [conn] = [x for x in gateway_connections(r, name) if x["id"] not in others]
    server_of(r, name).client_kill_filter(_id=conn["id"])
    await until(
        lambda: any(x["id"] not in others | {conn["id"]} for x in gateway_connections(r, name))
    )
    got += await c.events(50)  # some sent after the catch-up, live
    storm.stop()
    got += await c.until_done(job.id, limit=50_000)
    await c.quiet()
    assert got == stream_events(r, name, after=state["event_id"])


async def test_a_queue_followed_across_a_lost_pubsub_connection_loses_no_event(
    gateway: GatewayFactory,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    r: redis.Redis,
) -> None:
    others = {c["id"] for c in gateway_connections(r, name)}
    gw = await gateway()
    await aqueue.enqueue("mark")
    since = newest_event(r, name)
    c = await client(gw)
    await c.subscribe(queue_token(name), name, since=since)
    await c.expect("subscribed")
    stop = asyncio.Event()

    async def produce() -> int:
        for n in range(5000):  # batches of enqueued events, until told to stop
            await aqueue.enqueue_many(range(20))
            if stop.is_set():
                return n
        raise AssertionError("never told to stop")

    producer = asyncio.create_task(produce())
    got = await c.events(200)
    [conn] = [x for x in gateway_connections(r, name) if x["id"] not in others]
    server_of(r, name).client_kill_filter(_id=conn["id"])
    await until(
        lambda: any(x["id"] not in others | {conn["id"]} for x in gateway_connections(r, name))
    )
    got += await c.events(400)
    stop.set()
    batches = await producer
    got += await c.events(20 * (batches + 1) - len(got))
    await c.quiet()
    assert got == stream_events(r, name, after=since)


async def test_a_subscription_far_behind_costs_the_others_no_gap(
    gateway: GatewayFactory,
    client: ConnectFactory,
    aqueue: anq.Queue,
    name: str,
    r: redis.Redis,
) -> None:
    """After a lost pub/sub connection, every subscription of a queue is caught up in one
    batch. One whose position is more than ``Limits.replay`` entries back gets a gap (and
    a fresh state); the others, whose own replay is short, are caught up without one."""
    await aqueue.set_events_maxlen(100_000)  # the stream keeps everything: nothing trimmed
    others = {c["id"] for c in gateway_connections(r, name)}
    gw = await gateway(limits=Limits(replay=1000))
    waiting = await aqueue.enqueue("waits a long time")
    behind = await client(gw)
    old = await behind.follow(job_token(name, waiting.id), name, waiting.id)
    await aqueue.enqueue_many(range(1500))  # events its subscription is not sent
    recent = await aqueue.enqueue("recent")
    current = await client(gw)
    await current.follow(job_token(name, recent.id), name, recent.id)

    [conn] = [x for x in gateway_connections(r, name) if x["id"] not in others]
    server_of(r, name).client_kill_filter(_id=conn["id"])
    await behind.expect("gap", queue=name, job=waiting.id, after=old["event_id"])
    await behind.expect("state", queue=name, job=waiting.id, state="queued")
    await current.quiet()  # no gap and no state: it was caught up from its own position
    assert await recent.cancel() == "cancelled"
    [event] = await current.events(1)
    assert event["type"] == "cancelled" and event["id"] == recent.id
    await behind.quiet()
    await current.quiet()
    assert gw.stats()["gaps"] == 1


# ---------------------------------------------------------------- the handshake


async def test_the_origin_must_be_allowed(gateway: GatewayFactory, client: ConnectFactory) -> None:
    gw = await gateway()
    with pytest.raises(InvalidStatus) as refused:
        await client(gw, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    same = await client(gw, origin=f"http://127.0.0.1:{gw.port}")
    await same.quiet()
    await (await client(gw)).quiet()  # no Origin: not a browser

    shop = await gateway(origins=["https://shop.example"])
    await (await client(shop, origin="https://shop.example")).quiet()
    wrong = ["https://shop.example.evil", "http://shop.example", f"http://127.0.0.1:{shop.port}"]
    for origin in wrong:
        with pytest.raises(InvalidStatus) as refused:
            await client(shop, origin=origin)
        assert refused.value.response.status_code == 403
    assert shop.stats()["refused_origin"] == len(wrong)


async def test_websockets_connect_only_at_ws(gw: Gateway) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(ws_url(gw, "/socket"), proxy=None)
    assert refused.value.response.status_code == 404


async def test_connections_beyond_max_connections_are_refused_with_503(
    gateway: GatewayFactory, client: ConnectFactory
) -> None:
    gw = await gateway(limits=Limits(max_connections=2))
    first, _ = await client(gw), await client(gw)
    with pytest.raises(InvalidStatus) as refused:
        await client(gw)
    assert refused.value.response.status_code == 503
    await first.ws.close()
    await until(lambda: gw.stats()["clients"] == 1)
    await (await client(gw)).quiet()


async def test_clients_get_heartbeats(gateway: GatewayFactory, client: ConnectFactory) -> None:
    gw = await gateway(limits=Limits(heartbeat=0.2))
    c = await client(gw)
    before = time.time()
    message = await c.raw()
    assert message["type"] == "heartbeat"
    assert before * 1000 - 1000 <= message["ts"] <= time.time() * 1000 + 1000


async def test_a_gateway_that_stops_closes_its_clients_with_1001(
    gw: Gateway, client: ConnectFactory
) -> None:
    c = await client(gw)
    await c.quiet()
    await gw.close()
    assert await c.close_code() == 1001
