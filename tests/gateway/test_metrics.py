"""The gateway's ``GET /metrics``: queue depths, counters and listener lag read from Redis
at scrape time, and the gateway's own clients and events."""

from __future__ import annotations

import asyncio

import pytest
import redis

import notifyq.asyncio as anq
from notifyq import events
from notifyq.asyncio import connection as aconnection
from notifyq.gateway import Gateway
from notifyq.keys import QueueKeys

from .. import promtext
from .conftest import ConnectFactory, GatewayFactory, queue_token

TOKEN = "metrics-token-0123456789"


async def scrape(gw: Gateway, token: str | None = None) -> tuple[int, str]:
    status, body, _ = await asyncio.to_thread(
        promtext.scrape, f"http://127.0.0.1:{gw.port}/metrics", token
    )
    return status, body


async def metrics(gw: Gateway) -> dict[str, promtext.Family]:
    status, body = await scrape(gw)
    assert status == 200, body
    return promtext.parse(body)


async def test_depths_counters_and_lag_of_a_queue_after_known_jobs(
    gateway: GatewayFactory, client: ConnectFactory, aqueue: anq.Queue, redis_url: str,
    r: redis.Redis,
) -> None:  # fmt: skip
    name = aqueue.name
    gw = await gateway(metrics=True, metrics_queues=[name])
    watcher = await client(gw)
    await watcher.subscribe(queue_token(name), name)
    await watcher.expect("subscribed", queue=name)
    await watcher.expect("state", queue=name)

    for payload in promtext.KNOWN_PAYLOADS:  # 3 complete; 1 fails, is retried, then dead
        await aqueue.enqueue(payload, max_attempts=2)

    async def handler(payload: object) -> object:
        return promtext.known_handler(payload)

    await anq.Worker(aqueue, handler, backoff=(0.01, 0.05)).run(burst=True)
    # a named listener's group that reads nothing from here on, then 3 more events
    keys = QueueKeys(name)
    await aconnection.shared_backend(redis_url).run(events.join_group([keys], "billing"))
    await aqueue.enqueue_many(["waits", "waits"])
    await aqueue.enqueue("later", delay=3600)

    sent = r.xlen(keys.events)  # every event of the queue: the watcher followed them all
    await watcher.events(sent)
    found = await metrics(gw)
    v = promtext.value
    assert v(found, "notifyq_queue_up", queue=name) == 1
    depths = {"pending": 2, "active": 0, "delayed": 1, "dead": 1}
    for state, n in depths.items():
        assert v(found, "notifyq_queue_jobs", queue=name, state=state) == n, state
    totals = {"enqueued": 7, "completed": 3, "failed": 2, "retried": 1, "dead": 1, "cancelled": 0}
    for counter, n in totals.items():
        assert v(found, f"notifyq_queue_{counter}_total", queue=name) == n, counter
    assert v(found, "notifyq_queue_paused", queue=name) == 0
    assert v(found, "notifyq_listener_lag_events", queue=name, group="billing") == 3
    assert v(found, "notifyq_listener_pending_events", queue=name, group="billing") == 0
    assert v(found, "notifyq_gateway_events_received_total") == sent
    assert v(found, "notifyq_gateway_events_sent_total") == sent
    assert v(found, "notifyq_gateway_subscriptions") == 1


async def test_the_clients_gauge_follows_the_open_websockets(
    gateway: GatewayFactory, client: ConnectFactory
) -> None:
    gw = await gateway(metrics=True)

    async def clients() -> float:
        return promtext.value(await metrics(gw), "notifyq_gateway_clients")

    async def becomes(n: int) -> None:
        deadline = asyncio.get_running_loop().time() + 10
        while (seen := await clients()) != n:
            assert asyncio.get_running_loop().time() < deadline, f"{seen} clients, not {n}"
            await asyncio.sleep(0.02)

    opened = [await client(gw) for _ in range(3)]
    await becomes(3)
    await opened[0].ws.close()
    await becomes(2)
    connections = promtext.value(await metrics(gw), "notifyq_gateway_connections_total")
    assert connections == 3


async def test_metrics_are_off_by_default(gw: Gateway) -> None:
    assert (await scrape(gw))[0] == 404


async def test_with_a_token_set_a_scrape_must_send_it(
    gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFYQ_METRICS_TOKEN", TOKEN)
    gw = await gateway(metrics=True)
    assert (await scrape(gw))[0] == 401
    assert (await scrape(gw, token="x" + TOKEN[1:]))[0] == 401
    status, body = await scrape(gw, token=TOKEN)
    assert status == 200
    assert "notifyq_gateway_clients 0\n" in body


async def test_a_queue_that_cannot_be_read_is_reported_down_and_the_others_as_usual(
    gateway: GatewayFactory, aqueue: anq.Queue, r: redis.Redis
) -> None:
    broken = f"{aqueue.name}-broken"
    gw = await gateway(metrics=True, metrics_queues=[aqueue.name, broken])
    await aqueue.enqueue(1)
    r.set(QueueKeys(broken).active, "not a zset")  # ZCARD: WRONGTYPE
    try:
        found = await metrics(gw)
    finally:
        r.delete(QueueKeys(broken).active)
    assert promtext.value(found, "notifyq_queue_up", queue=broken) == 0
    assert promtext.value(found, "notifyq_queue_up", queue=aqueue.name) == 1
    assert promtext.value(found, "notifyq_queue_jobs", queue=aqueue.name, state="pending") == 1
    assert {"queue": broken, "state": "pending"} not in promtext.series(found, "notifyq_queue_jobs")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metrics_queues": ["bad name"]}, "invalid queue name"),
        ({"metrics_token": "short"}, "16 characters"),
    ],
)
async def test_bad_metrics_settings_are_refused(options: dict[str, object], message: str) -> None:
    from notifyq.errors import ValidationError

    with pytest.raises(ValidationError, match=message):
        Gateway("redis://127.0.0.1:1/0", secret=b"s" * 16, metrics=True, **options)  # type: ignore[arg-type]


async def test_each_queue_is_read_where_it_lives(
    gateway: GatewayFactory, redis_url: str, name: str, r: redis.Redis
) -> None:
    """Queues with different depths (on a cluster, in slots of different shards): each
    reported depth is its own queue's."""
    queues = [f"{name}-{i}" for i in range(6)]
    try:
        for i, queue in enumerate(queues):
            await anq.Queue(queue, redis_url).enqueue_many(list(range(i + 1)))
        gw = await gateway(metrics=True, metrics_queues=queues)
        found = await metrics(gw)
        for i, queue in enumerate(queues):
            assert promtext.value(found, "notifyq_queue_up", queue=queue) == 1
            assert (
                promtext.value(found, "notifyq_queue_jobs", queue=queue, state="pending") == i + 1
            )
            assert promtext.value(found, "notifyq_queue_enqueued_total", queue=queue) == i + 1
    finally:
        for queue in queues:
            keys = list(r.scan_iter(match=f"nq:{{{queue}}}:*", count=1000))
            for key in keys:
                r.delete(key)
