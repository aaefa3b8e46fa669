"""The gateway's HTTP API on the WebSocket port: job state, queue stats, enqueue, health
and static files, with their refusals. Requests go through ``http.client`` in a thread."""

from __future__ import annotations

import asyncio
import http.client
import json
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import notifyq.asyncio as anq
from notifyq.gateway import Gateway, Limits

from .conftest import ConnectFactory, GatewayFactory, job_token, queue_token

KEY = "k" * 20  # an enqueue key


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        assert self.headers["Content-Type"] == "application/json"
        return json.loads(self.body)


async def fetch(
    gw: Gateway,
    path: str,
    method: str = "GET",
    *,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request to ``gw``; its reply."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"

    def call() -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()

    return await asyncio.to_thread(call)


async def post_job(gw: Gateway, queue: str, payload: Any, **options: Any) -> Reply:
    headers = {"Content-Type": "application/json", **options.pop("headers", {})}
    body = options.pop("body", json.dumps(payload).encode())
    token = options.pop("token", KEY)
    return await fetch(
        gw, f"/queues/{queue}/jobs", "POST", body=body, token=token, headers=headers, **options
    )


async def test_healthz(gw: Gateway) -> None:
    reply = await fetch(gw, "/healthz")
    assert reply.status == 200
    health = reply.json()
    assert (health["ok"], health["redis"]) == (True, "up")
    assert health["clients"] == 0
    assert reply.headers["Cache-Control"] == "no-store"


# ---------------------------------------------------------------- GET /jobs/<id>


async def test_a_job_token_reads_its_job_state_then_its_result(
    gw: Gateway, aqueue: anq.Queue, name: str
) -> None:
    async def double(payload: int) -> int:
        return payload * 2

    job = await aqueue.enqueue(21)
    reply = await fetch(gw, f"/jobs/{job.id}", token=job_token(name, job.id))
    assert reply.status == 200
    state = reply.json()
    assert (state["queue"], state["job"], state["state"]) == (name, job.id, "queued")
    assert "result" not in state

    await anq.Worker(aqueue, double).run(burst=True)
    state = (await fetch(gw, f"/jobs/{job.id}", token=job_token(name, job.id))).json()
    assert (state["state"], state["result"], state["attempt"]) == ("completed", 42, 1)
    by_queue = await fetch(gw, f"/jobs/{job.id}", token=queue_token(name))
    assert (by_queue.status, by_queue.json()) == (200, state)


async def test_reading_a_job_needs_a_token_that_grants_it(
    gw: Gateway, aqueue: anq.Queue, name: str
) -> None:
    a, b = await aqueue.enqueue_many([1, 2])
    path = f"/jobs/{a.id}"
    for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer"}):
        reply = await fetch(gw, path, headers=headers)
        assert reply.status == 401
        assert reply.headers["WWW-Authenticate"] == "Bearer"
    for token in ("not-a-token", job_token(name, a.id).replace(".", ".x")):
        reply = await fetch(gw, path, token=token)
        assert (reply.status, reply.headers["WWW-Authenticate"]) == (401, "Bearer")
    assert (await fetch(gw, path, token=job_token(name, b.id))).status == 403
    assert (await fetch(gw, path, token=job_token(f"{name}-x", a.id))).status == 404
    assert (await fetch(gw, path, token=queue_token(f"{name}-x"))).status == 404

    missing = await fetch(gw, "/jobs/no-such-job", token=queue_token(name))
    assert missing.status == 404
    assert "no-such-job" in missing.json()["error"]
    assert (
        await fetch(gw, "/jobs/no-such-job", token=job_token(name, "no-such-job"))
    ).status == 404
    assert (await fetch(gw, "/jobs/-x", token=queue_token(name))).status == 400


# ---------------------------------------------------------------- GET /queues/<q>/stats


async def test_queue_stats_need_a_queue_token(gw: Gateway, aqueue: anq.Queue, name: str) -> None:
    a, _ = await aqueue.enqueue_many([1, 2])
    reply = await fetch(gw, f"/queues/{name}/stats", token=queue_token(name))
    assert reply.status == 200
    stats = reply.json()
    assert (stats["queue"], stats["pending"], stats["active"]) == (name, 2, 0)
    assert stats["totals"]["enqueued"] == 2

    assert (await fetch(gw, f"/queues/{name}/stats", token=job_token(name, a.id))).status == 403
    assert (await fetch(gw, f"/queues/{name}/stats", token=queue_token(f"{name}-x"))).status == 403
    assert (await fetch(gw, f"/queues/{name}/stats")).status == 401


# ---------------------------------------------------------------- POST /queues/<q>/jobs


async def test_enqueueing_over_http_is_off_by_default(gw: Gateway, name: str) -> None:
    assert (await post_job(gw, name, {"n": 1})).status == 404


async def test_enqueue_over_http_then_follow_the_job_with_the_token_returned(
    gateway: GatewayFactory, client: ConnectFactory, aqueue: anq.Queue, name: str
) -> None:
    gw = await gateway(enqueue_queues=[name], enqueue_key=KEY)
    reply = await post_job(gw, name, {"n": 1}, headers={"Origin": f"http://127.0.0.1:{gw.port}"})
    assert reply.status == 201
    created = reply.json()
    assert created["queue"] == name
    job = await aqueue.job(created["id"])
    assert (await job.info())["payload"] == {"n": 1}

    c = await client(gw)
    state = await c.follow(created["token"], name, job.id)
    assert state["state"] == "queued"
    await c.subscribe(created["token"], name)  # a job token: not the whole queue
    await c.error("forbidden")
    assert gw.stats()["http_enqueued"] == 1


async def test_enqueue_refusals(gateway: GatewayFactory, aqueue: anq.Queue, name: str) -> None:
    gw = await gateway(
        enqueue_queues=[name],
        enqueue_key=KEY,
        limits=Limits(max_body=1000),
        origins=["https://a.example"],
    )
    refusals: list[tuple[int, Callable[[], Any]]] = [
        (401, lambda: post_job(gw, name, 1, token="k" * 19 + "j")),
        (401, lambda: post_job(gw, name, 1, token=None)),
        (403, lambda: post_job(gw, f"{name}-x", 1)),
        (403, lambda: post_job(gw, name, 1, headers={"Origin": "https://evil.example"})),
        (415, lambda: post_job(gw, name, 1, headers={"Content-Type": "text/plain"})),
        (400, lambda: post_job(gw, name, 1, body=b"{not json")),
        (400, lambda: post_job(gw, name, 1, body=b"")),
        (413, lambda: post_job(gw, name, "x" * 2000)),
    ]
    for status, send in refusals:
        reply = await send()
        assert reply.status == status, (status, reply.body)
        assert reply.json()["error"]
    assert (await aqueue.stats())["totals"].get("enqueued", 0) == 0

    allowed = {"Origin": "https://a.example", "Content-Type": "application/json; charset=utf-8"}
    assert (await post_job(gw, name, "x" * 900, headers=allowed)).status == 201


# ---------------------------------------------------------------- static files and methods


@pytest.fixture
def static(tmp_path: pathlib.Path) -> pathlib.Path:
    folder = tmp_path / "static"
    (folder / "sub").mkdir(parents=True)
    (folder / "index.html").write_text("<!doctype html><title>demo</title>")
    (folder / "app.js").write_text("console.log('hi')")
    (folder / "sub" / "page.css").write_text("body { margin: 0 }")
    (tmp_path / "secret.txt").write_text("not for the web")
    return folder


async def test_static_files_are_served_with_their_type_and_a_csp(
    gateway: GatewayFactory, static: pathlib.Path
) -> None:
    gw = await gateway(static=static)
    for path in ("/", "/index.html"):
        reply = await fetch(gw, path)
        assert reply.status == 200
        assert reply.body == (static / "index.html").read_bytes()
        assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "default-src 'self'" in reply.headers["Content-Security-Policy"]
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
    script = await fetch(gw, "/app.js")
    assert script.status == 200
    assert script.body == b"console.log('hi')"
    assert script.headers["Content-Type"].endswith("javascript; charset=utf-8")
    assert "Content-Security-Policy" in script.headers
    css = await fetch(gw, "/sub/page.css")
    assert (css.status, css.headers["Content-Type"]) == (200, "text/css; charset=utf-8")


@pytest.mark.parametrize(
    "path",
    [
        "/../pyproject.toml",
        "/%2e%2e/x",
        "/..%2f..%2fetc/passwd",
        "/sub/../../secret.txt",
        "//etc/passwd",
        "/.hidden",
        "/missing.js",
        "/sub",
    ],
)
async def test_nothing_outside_the_static_folder_is_served(
    gateway: GatewayFactory, static: pathlib.Path, path: str
) -> None:
    gw = await gateway(static=static)
    reply = await fetch(gw, path)
    assert reply.status == 404
    assert reply.json() == {"error": "not found"}


async def test_without_a_static_folder_there_are_no_files(gw: Gateway) -> None:
    assert (await fetch(gw, "/")).status == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/healthz"),
        ("POST", "/healthz"),
        ("GET", "/queues/q/jobs"),
        ("PUT", "/jobs/j1"),
        ("POST", "/queues/q/stats"),
        ("POST", "/index.html"),
    ],
)
async def test_a_wrong_method_is_refused_with_405(gw: Gateway, method: str, path: str) -> None:
    assert (await fetch(gw, path, method)).status == 405


async def test_a_chunked_post_is_refused_with_411(gateway: GatewayFactory, name: str) -> None:
    gw = await gateway(enqueue_queues=[name], enqueue_key=KEY)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    body = b'{"n": 1}'
    writer.write(
        f"POST /queues/{name}/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    await writer.wait_closed()
    assert status.startswith(b"HTTP/1.1 411 "), status
