"""Fixtures for the gateway: an in-process gateway on the test server, WebSocket clients
that speak the protocol, an asyncio worker run as a task, and a handler the test steps.

Every gateway, client and worker a test starts is closed when the test ends, and so are
the shared asyncio backends of the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import notifyq.asyncio as anq
from notifyq import tokens
from notifyq.asyncio import connection as aconnection
from notifyq.gateway import CLIENT_NAME, Gateway, Limits

from ..support import server_of

SECRET = b"gateway-tests-secret-0123456789"
TIMEOUT = 10.0  # seconds any one expected message may take
TERMINAL = {"completed", "dead", "cancelled"}

Message = dict[str, Any]


class Client:
    """One WebSocket connection to a gateway, with the protocol's steps as methods."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, frame: Message | str | bytes) -> None:
        await self.ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def recv(self) -> Message:
        """The next message, heartbeats left out."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            message = await self.raw(max(deadline - time.monotonic(), 0.001))
            if message["type"] != "heartbeat":
                return message

    async def expect(self, kind: str, **fields: Any) -> Message:
        """The next message, which must be of type ``kind`` and hold ``fields``."""
        message = await self.recv()
        assert message["type"] == kind, message
        for name, value in fields.items():
            assert message.get(name) == value, (name, message)
        return message

    async def error(self, code: str) -> Message:
        return await self.expect("error", code=code)

    async def subscribe(
        self, token: str, queue: str, job: str | None = None, since: str | None = None
    ) -> None:
        """Send a subscribe request (``job`` and ``since`` only when given)."""
        request: Message = {"op": "subscribe", "token": token, "queue": queue}
        if job is not None:
            request["job"] = job
        if since is not None:
            request["since"] = since
        await self.send(request)

    async def follow(self, token: str, queue: str, job: str, since: str | None = None) -> Message:
        """Subscribe to a job; its ``state`` message (``since``: none is expected)."""
        await self.subscribe(token, queue, job, since)
        await self.expect("subscribed", queue=queue, job=job)
        if since is not None:
            return {}
        return await self.expect("state", queue=queue, job=job)

    async def events(self, count: int) -> list[Message]:
        """The next ``count`` messages, each an event: the events themselves."""
        found = []
        for _ in range(count):
            message = await self.expect("event")
            found.append(message["event"])
        return found

    async def until_done(self, job: str, limit: int = 100) -> list[Message]:
        """Events up to and including the job's final one (at most ``limit`` messages)."""
        found: list[Message] = []
        for _ in range(limit):
            event = (await self.expect("event"))["event"]
            found.append(event)
            if event["id"] == job and event["type"] in TERMINAL:
                return found
        raise AssertionError(f"no final event for {job} in {limit} messages: {found}")

    async def quiet(self) -> None:
        """Nothing is queued for this client: a ping's pong is the very next message."""
        await self.send({"op": "ping"})
        await self.expect("pong")

    async def raw(self, timeout: float = TIMEOUT) -> Message:
        """The next message, whatever it is."""
        message: Message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        return message

    async def drain(self, limit: int = 100_000) -> tuple[list[Message], int | None]:
        """Read until the connection closes: the messages read and the close code sent."""
        messages = []
        try:
            for _ in range(limit):
                messages.append(await self.raw())
        except ConnectionClosed as exc:
            return messages, exc.rcvd.code if exc.rcvd else None
        raise AssertionError(f"still open after {limit} messages")

    async def close_code(self) -> int | None:
        return (await self.drain())[1]


GatewayFactory = Callable[..., Awaitable[Gateway]]
ConnectFactory = Callable[..., Awaitable[Client]]


@pytest.fixture(autouse=True)
async def _close_shared_backends() -> AsyncIterator[None]:
    yield
    await aconnection.close_shared()


@pytest.fixture
async def gateway(redis_url: str) -> AsyncIterator[GatewayFactory]:
    """``await gateway(limits=Limits(...), **options)``: a started gateway on a free port."""
    started: list[Gateway] = []

    async def start(limits: Limits | None = None, **options: Any) -> Gateway:
        gw = Gateway(redis_url, secret=SECRET, port=0, limits=limits, **options)
        await gw.start()
        started.append(gw)
        return gw

    yield start
    for gw in reversed(started):
        await gw.close()


@pytest.fixture
async def gw(gateway: GatewayFactory) -> Gateway:
    """A gateway with the default limits."""
    return await gateway()


@pytest.fixture
async def client() -> AsyncIterator[ConnectFactory]:
    """``await client(gw, **options)``: a WebSocket connection to ``gw``."""
    opened: list[Client] = []

    async def open_one(gw: Gateway, **options: Any) -> Client:
        ws = await connect(ws_url(gw), proxy=None, compression=None, **options)
        opened.append(Client(ws))
        return opened[-1]

    yield open_one
    await asyncio.gather(*(c.ws.close() for c in opened))


def ws_url(gw: Gateway, path: str = "/ws") -> str:
    return f"ws://127.0.0.1:{gw.port}{path}"


def small_window_socket(gw: Gateway) -> socket.socket:
    """A socket connected to ``gw`` whose receive window is tiny: the gateway's sends back
    up as soon as the client stops reading."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gw.port))
    sock.setblocking(False)
    return sock


@pytest.fixture
async def start_worker(aqueue: anq.Queue) -> AsyncIterator[Callable[..., anq.Worker]]:
    """``start_worker(handler, **settings)``: an asyncio worker on ``aqueue``, as a task."""
    running: list[tuple[anq.Worker, asyncio.Task[None]]] = []

    def start(handler: Callable[..., Any], **settings: Any) -> anq.Worker:
        settings.setdefault("backoff", (0.01, 0.05))
        settings.setdefault("grace", 1.0)
        worker = anq.Worker(aqueue, handler, **settings)
        running.append((worker, asyncio.create_task(worker.run())))
        return worker

    yield start
    for worker, task in reversed(running):
        worker.stop()
        await asyncio.wait_for(task, 30)


class Steps:
    """An asyncio handler the test drives: each ``step()`` lets it report the next progress
    value (1, 2, ...) and returns once that is stored; ``finish()`` lets it return its
    payload. ``started`` is set when it begins."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self._go: asyncio.Queue[bool] = asyncio.Queue()
        self._stored: asyncio.Queue[int] = asyncio.Queue()

    async def __call__(self, payload: Any, job: anq.ActiveJob) -> Any:
        self.started.set()
        for n in range(1, 1000):
            if await self._go.get():
                return payload
            await job.set_progress(n)
            self._stored.put_nowait(n)
        raise AssertionError("too many steps")

    async def step(self) -> int:
        self._go.put_nowait(False)
        return await asyncio.wait_for(self._stored.get(), TIMEOUT)

    def finish(self) -> None:
        self._go.put_nowait(True)


class Storm:
    """An asyncio handler that reports progress 0, 1, 2, ... as fast as it can (an event
    per round trip) from when it starts (``running``) until ``stop()``; returns "done"."""

    def __init__(self, most: int = 50_000) -> None:
        self.running = asyncio.Event()
        self._stop = asyncio.Event()
        self._most = most

    async def __call__(self, payload: Any, job: anq.ActiveJob) -> str:
        for n in range(self._most):
            await job.set_progress(n)
            self.running.set()
            if self._stop.is_set():
                return "done"
        raise AssertionError("never told to stop")

    def stop(self) -> None:
        self._stop.set()


async def until(check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll a condition that no message announces (bounded in time)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def job_token(queue: str, job: str, ttl: float = 600, **options: Any) -> str:
    return tokens.issue(SECRET, queue, job, ttl=ttl, **options)


def queue_token(queue: str, ttl: float = 600) -> str:
    return tokens.issue(SECRET, queue, ttl=ttl)


def newest_event(r: redis.Redis, queue: str) -> str:
    """The id of the newest entry of the queue's event stream."""
    [(eid, _)] = r.xrevrange(f"nq:{{{queue}}}:events", count=1)
    return str(eid.decode())


def stream_events(r: redis.Redis, queue: str, after: str = "0-0") -> list[Message]:
    """The queue's events as the stream holds them, after ``after``, each with its id."""
    found = []
    for eid, fields in r.xrange(f"nq:{{{queue}}}:events", min=f"({after}"):
        found.append({**json.loads(fields[b"e"]), "event_id": eid.decode()})
    return found


def gateway_connections(r: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The clients named as a gateway's pub/sub connection on the server holding ``queue``."""
    return [c for c in server_of(r, queue).client_list() if c.get("name") == CLIENT_NAME]
