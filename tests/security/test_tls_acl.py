"""notifyq end to end over TLS, each part under an ACL user with only its role's rules.

The server listens with TLS only, so every connection that works is a TLS one; each role
runs as its own user made with ``notifyq.access.rules(role)``, so what works here works
with the rules docs/security.md gives.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import threading
from typing import Any

import pytest
import redis
from websockets.asyncio.client import connect

import notifyq
import notifyq.asyncio as anq
from notifyq import connection, signals, tokens
from notifyq.events import Event
from notifyq.gateway import CLIENT_NAME, Gateway
from notifyq.hub import HUB_CLIENT_NAME
from tests.gateway.conftest import Client
from tests.support import running
from tests.test_cli import Cli, ok

from .conftest import MakeUser, TlsServer

SECRET = b"security-tests-secret-0123456789"
TIMEOUT = 10.0


def double(payload: dict[str, int]) -> dict[str, int]:
    return {"doubled": payload["n"] * 2}


async def adouble(payload: dict[str, int]) -> dict[str, int]:
    return {"doubled": payload["n"] * 2}


def connections_of(admin: redis.Redis, url: str) -> list[dict[str, Any]]:
    """The server's clients logged in as the user of ``url``."""
    login = url.split("//", 1)[1].split(":", 1)[0]
    return [c for c in admin.client_list() if c.get("user") == login]


# ---------------------------------------------------------------- Queue, Worker, wait


def test_enqueue_work_wait_and_result_over_tls_each_as_its_own_user(
    user: MakeUser, admin: redis.Redis, name: str
) -> None:
    producer, worker_url = user("producer"), user("worker")
    queue = notifyq.Queue(name, producer)
    job = queue.enqueue({"n": 21})
    assert job.status() == "queued"
    with running(notifyq.Worker(name, double, url=worker_url)):
        assert job.wait(TIMEOUT) == {"doubled": 42}
    assert job.result() == {"doubled": 42}
    assert job.info()["state"] == "completed"
    # the wait hub's pub/sub connection logged in as the producer too
    names = {c["name"] for c in connections_of(admin, producer)}
    assert HUB_CLIENT_NAME in names


async def test_asyncio_enqueue_work_wait_and_result_over_tls(
    user: MakeUser, admin: redis.Redis, name: str, close_async_backends: None
) -> None:
    producer, worker_url = user("producer"), user("worker")
    queue = anq.Queue(name, producer)
    job = await queue.enqueue({"n": 4})
    waiting = asyncio.create_task(job.wait(TIMEOUT))
    await anq.Worker(name, adouble, url=worker_url).run(burst=True)
    assert await waiting == {"doubled": 8}
    assert await job.result() == {"doubled": 8}
    assert HUB_CLIENT_NAME in {c["name"] for c in connections_of(admin, producer)}


# ---------------------------------------------------------------- listeners


@pytest.mark.parametrize("listener_name", [None, "billing"], ids=["anonymous", "named"])
def test_a_listener_over_tls_is_told_of_a_completion(
    user: MakeUser, name: str, listener_name: str | None
) -> None:
    role = "named-listener" if listener_name else "listener"
    listener_url, producer, worker_url = user(role), user("producer"), user("worker")
    done = threading.Event()
    got: list[Event] = []

    def receive(sender: str, event: Event) -> None:
        got.append(event)
        done.set()

    signals.completed.connect(receive, sender=name, weak=False)
    try:
        with notifyq.Listener(name, listener_name, url=listener_url):
            job = notifyq.Queue(name, producer).enqueue({"n": 5})
            notifyq.Worker(name, double, url=worker_url).run(burst=True)
            assert done.wait(TIMEOUT)
    finally:
        signals.completed.disconnect(receive, sender=name)
    assert [(e.job_id, e.data["result"]) for e in got] == [(job.id, {"doubled": 10})]


async def test_an_asyncio_listener_over_tls_is_told_of_a_completion(
    user: MakeUser, name: str, close_async_backends: None
) -> None:
    listener_url, producer, worker_url = user("named-listener"), user("producer"), user("worker")
    got: asyncio.Queue[Event] = asyncio.Queue()

    async def receive(sender: str, event: Event) -> None:
        got.put_nowait(event)

    signals.completed.connect(receive, sender=name, weak=False)
    try:
        async with anq.Listener(name, "audit", url=listener_url):
            job = await anq.Queue(name, producer).enqueue({"n": 6})
            await anq.Worker(name, adouble, url=worker_url).run(burst=True)
            event = await asyncio.wait_for(got.get(), TIMEOUT)
    finally:
        signals.completed.disconnect(receive, sender=name)
    assert (event.job_id, event.data["result"]) == (job.id, {"doubled": 12})


# ---------------------------------------------------------------- the gateway


async def test_the_gateway_talks_tls_to_redis_and_pushes_a_completion_to_a_browser(
    user: MakeUser, admin: redis.Redis, name: str, close_async_backends: None
) -> None:
    gateway_url, producer, worker_url = user("gateway"), user("producer"), user("worker")
    job = await anq.Queue(name, producer).enqueue({"n": 50})
    async with Gateway(gateway_url, secret=SECRET, port=0) as gw:
        async with connect(f"ws://127.0.0.1:{gw.port}/ws", proxy=None) as ws:
            client = Client(ws)
            await client.follow(tokens.issue(SECRET, name, job.id), name, job.id)
            await anq.Worker(name, adouble, url=worker_url).run(burst=True)
            events = await client.until_done(job.id)
        assert events[-1]["type"] == "completed"
        assert events[-1]["result"] == {"doubled": 100}
        # its pub/sub connection is the gateway user's, over TLS like the rest
        assert CLIENT_NAME in {c["name"] for c in connections_of(admin, gateway_url)}


async def test_a_gateway_that_takes_jobs_over_http_needs_the_enqueue_rules_too(
    user: MakeUser, name: str, close_async_backends: None
) -> None:
    key = "k" * 24
    url = user("gateway", "http-enqueue")
    async with Gateway(url, secret=SECRET, port=0, enqueue_queues=[name], enqueue_key=key) as gw:
        status, body = await asyncio.to_thread(post_json, gw.port, f"/queues/{name}/jobs", key)
    assert status == 201
    assert tokens.verify(SECRET, body["token"]).job_id == body["id"]


def post_json(port: int, path: str, key: str) -> tuple[int, dict[str, Any]]:
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=b'{"n": 1}',
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
        return reply.status, json.loads(reply.read())


# ---------------------------------------------------------------- the CLI


def test_the_cli_enqueues_and_reads_results_over_tls_from_notifyq_url(
    user: MakeUser, name: str, tmp_path: pathlib.Path
) -> None:
    producer = user("producer")
    cli = Cli(producer, tmp_path)
    job_id = ok(cli("enqueue", name, '{"n": 8}', url=None, env={"NOTIFYQ_URL": producer}))
    assert ok(cli("status", job_id.strip(), "-q", name, url=None, env={"NOTIFYQ_URL": producer}))
    notifyq.Worker(name, double, url=user("worker")).run(burst=True)
    out = ok(cli("result", job_id.strip(), "-q", name, url=None, env={"NOTIFYQ_URL": producer}))
    assert json.loads(out) == {"doubled": 16}
    # --url takes the same URL, and wait subscribes over TLS as the producer
    assert json.loads(ok(cli("wait", job_id.strip(), "-q", name))) == {"doubled": 16}


def test_the_cli_worker_runs_over_tls_as_the_worker_user(
    user: MakeUser, name: str, tmp_path: pathlib.Path
) -> None:
    producer = notifyq.Queue(name, user("producer"))
    job = producer.enqueue({"n": 3})
    cli = Cli(user("worker"), tmp_path)
    ok(cli("worker", "cli_handlers:double", "-q", name, "--burst"))
    assert job.result() == {"doubled": 6}


# ---------------------------------------------------------------- operators, URL forms


def test_an_operator_user_looks_after_queues(user: MakeUser, name: str) -> None:
    producer = notifyq.Queue(name, user("producer"))
    job = producer.enqueue({"n": 1}, max_attempts=1)
    operator = notifyq.Queue(name, user("operator"))
    operator.pause()
    assert operator.stats()["paused"]
    operator.resume()

    def boom(payload: Any) -> None:
        raise ValueError("no")

    notifyq.Worker(name, boom, url=user("worker")).run(burst=True)
    [dead] = operator.dead_letters()
    assert dead["id"] == job.id
    operator.requeue(job.id)
    notifyq.Worker(name, boom, url=user("worker")).run(burst=True)
    assert operator.purge_dead() == 1
    operator.set_events_maxlen(100)


def test_the_url_forms(tls_server: TlsServer, user: MakeUser, name: str) -> None:
    """Parameters redis-py reads from the URL reach every connection notifyq opens."""
    url = user("producer", ssl_cert_reqs="required", ssl_check_hostname="true")
    job = notifyq.Queue(name, url).enqueue(1)
    notifyq.Worker(name, lambda p: p, url=user("worker")).run(burst=True)
    assert job.wait(TIMEOUT) == 1
    # with no CA given, the system's CAs do not know the test CA: refused
    with pytest.raises(notifyq.RedisUnavailable, match="certificate verify failed"):
        notifyq.Queue(name, user("producer", ssl_ca_certs="")).enqueue(1)


def test_passwords_never_show_in_errors() -> None:
    url = "rediss://ann:s3cret@127.0.0.1:1/0?ssl_password=k3y&password=p4ss&ssl_ca_certs=/c.pem"
    shown = connection.redact(url)
    assert "s3cret" not in shown and "k3y" not in shown and "p4ss" not in shown
    assert shown.startswith("rediss://ann:***@127.0.0.1:1/0?")
    assert "ssl_ca_certs=/c.pem" in shown
    with pytest.raises(notifyq.RedisUnavailable) as refused:
        notifyq.Queue("q", url).enqueue(1)
    assert "s3cret" not in str(refused.value) and "p4ss" not in str(refused.value)
