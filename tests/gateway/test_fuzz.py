"""The gateway's WebSocket handler fuzzed on a live gateway: arbitrary frames (text,
binary, JSON, request-shaped, too big, not UTF-8), a few per connection, each get only
documented answers, an ``error`` message or a close with a documented code, while a good
client on another connection goes on being served. ``tests/core/test_protocol.py`` fuzzes
the parser alone; this fuzzes the handler around it."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import notifyq.asyncio as anq
from notifyq import protocol
from notifyq.gateway import Gateway

from ..strategies import json_values, requests
from ..support import LogCount
from .conftest import ConnectFactory, job_token, queue_token, until, ws_url

#: What the gateway may send (docs/websocket-protocol.md).
TYPES = {"subscribed", "state", "event", "gap", "unsubscribed", "error", "heartbeat", "pong"}
CODES = {
    protocol.BAD_JSON, protocol.BAD_MESSAGE, protocol.UNKNOWN_OP, protocol.INVALID_TOKEN,
    protocol.FORBIDDEN, protocol.NOT_FOUND, protocol.ALREADY_SUBSCRIBED, protocol.NOT_SUBSCRIBED,
}  # fmt: skip
#: Close codes a client's frames may cause: 1007 text that is not UTF-8, 1008 too many bad
#: frames or too fast, 1009 a frame over ``max_message``.
CLOSES = {1007, 1008, 1009}

Frame = tuple[str, bytes | str]  # ("text" | "binary" | "raw-text", data)


def _with_token(request: dict[str, Any], token: str) -> dict[str, Any]:
    return {**request, "token": token} if "token" in request else request


def frames(queue: str, job: str) -> st.SearchStrategy[list[Frame]]:
    """One to four frames of any kind, some of them requests with a valid token (for the
    queue, or for the job), some about the queue and job that exist."""
    tokens = st.sampled_from([job_token(queue, job), queue_token(queue), "x.y"])
    known = requests.map(lambda r: {**r, "queue": queue} if "queue" in r else r)
    shaped = st.builds(_with_token, requests | known, tokens).map(json.dumps)
    one = st.one_of(
        st.tuples(st.just("text"), st.text(max_size=200)),
        st.tuples(st.just("text"), json_values.map(json.dumps)),
        st.tuples(st.just("text"), shaped),
        st.tuples(st.just("binary"), st.binary(max_size=100)),
        st.tuples(st.just("text"), st.integers(4000, 6000).map(lambda n: "x" * n)),  # too big?
        st.tuples(st.just("raw-text"), st.binary(min_size=1, max_size=20)),  # maybe not UTF-8
    )
    return st.lists(one, min_size=1, max_size=4)


def answers(url: str, sent: list[Frame]) -> None:
    """Send ``sent`` on a new connection, then a ping; check every answer up to the pong,
    or the close."""
    with connect(url, compression=None, max_size=None, open_timeout=10) as ws:
        try:
            for kind, data in sent:
                if kind == "raw-text":
                    ws.send(data, text=True)  # bytes as a text frame: maybe not UTF-8
                else:
                    ws.send(data)
            ws.send('{"op": "ping"}')
            for _ in range(100):
                message = json.loads(ws.recv(timeout=10))
                assert isinstance(message, dict) and message.get("type") in TYPES, message
                if message["type"] == "error":
                    assert message["code"] in CODES, message
                    assert isinstance(message["message"], str)
                if message["type"] == "pong":
                    return
            raise AssertionError("no pong after 100 messages")
        except ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code in CLOSES, exc


@pytest.mark.standalone(reason="protocol fuzzing: the server behind the gateway adds nothing")
async def test_any_frames_get_documented_answers_and_the_gateway_keeps_serving(
    gw: Gateway, client: ConnectFactory, aqueue: anq.Queue, name: str
) -> None:
    job = await aqueue.enqueue("followed")
    good = await client(gw)
    await good.follow(job_token(name, job.id), name, job.id)
    errors = LogCount("", logging.ERROR)
    logging.getLogger("notifyq.gateway").addHandler(errors)

    @settings(
        max_examples=80,
        deadline=5000,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,  # a thread of its own: keep no state between runs
    )
    @given(frames(name, job.id))
    def fuzz(sent: list[Frame]) -> None:
        answers(ws_url(gw), sent)

    try:
        await asyncio.to_thread(fuzz)
    finally:
        logging.getLogger("notifyq.gateway").removeHandler(errors)
    assert errors.messages == []  # nothing went wrong inside the gateway
    await good.quiet()  # the good client is still served, on the same connection
    await anq.Worker(aqueue, lambda p: p).run(burst=True)
    events = await good.until_done(job.id)
    assert [e["type"] for e in events] == ["started", "completed"]
    await until(lambda: len(gw.sessions) == 1)  # every fuzzing connection ended
