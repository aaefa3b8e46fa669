"""The browser gateway: job events pushed over WebSocket, and a small HTTP API, on one port.

A browser holding a token (``Job.token()``, ``Queue.token()``) subscribes to one job or to a
queue and is pushed its events (``notifyq.protocol``, ``docs/websocket-protocol.md``). One
gateway process holds thousands of connections on one Redis pub/sub connection
(``Fanout``): it subscribes to the events channel of every queue someone follows and fans
each event out in-process, by job id. Gateways keep no state of their own: run several.

How a subscription starts, so that nothing is missed and nothing is sent twice:

1. the queue's events channel is subscribed (or already was): every event published from
   now on reaches the gateway, and is held for the subscription until step 3;
2. a job subscription reads the job's state and the newest event id of the queue in one
   script (``scripts/snapshot.lua``) and sends it; a resume (``since``) replays the queue's
   event stream after that id instead, or sends ``gap`` if the stream no longer holds it;
3. the held events newer than what was sent go out, then every live event.

After the pub/sub connection is lost, every subscription goes through 2-3 again from the
last event it was sent. A client whose send buffer fills (it does not read) is closed with
code 4001; memory per client is bounded by ``Limits``.

HTTP on the same port: ``GET /jobs/<id>`` (bearer token: state and result, for clients that
poll), ``GET /queues/<q>/stats`` (queue token), ``POST /queues/<q>/jobs`` (off unless
queues are named and an enqueue key set), ``GET /metrics`` (Prometheus; off unless
``metrics=True``), ``GET /healthz`` and the static files of a folder (``web_demo/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hmac
import http
import json
import logging
import mimetypes
import pathlib
import re
import socket
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import access, codec, events, exporter, ops, protocol, scripts, tokens
from .asyncio.connection import Backend, new_backend
from .asyncio.hub import PubSub
from .cluster import Topology, channel_slot
from .codec import loose_text, text
from .connection import redact, resolve_url
from .errors import (
    AccessDenied,
    CorruptRecord,
    InvalidToken,
    NotifyQError,
    RedisUnavailable,
    ValidationError,
)
from .keys import QueueKeys, check_job_id, check_queue_name
from .logs import job_extra
from .metrics import CONTENT_TYPE, render
from .ops import Command, Flow, Pipeline, ScriptCall
from .protocol import ProtocolError, event_id, event_key

log = logging.getLogger("notifyq.gateway")
#: websockets' own log (a line per connection and HTTP request at INFO): warnings only,
#: unless the application sets this logger's level.
wslog = logging.getLogger("notifyq.gateway.websockets")
if wslog.level == logging.NOTSET:
    wslog.setLevel(logging.WARNING)

#: CLIENT SETNAME of the gateway's pub/sub connection.
CLIENT_NAME = "notifyq-gateway"
EventKey = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may cost the gateway."""

    max_message: int = 4096  # bytes in one frame from a client; larger: closed with 1009
    max_subscriptions: int = 64  # per connection
    send_buffer: int = 1 << 20  # characters queued for one client before it is cut off (4001)
    rate: float = 20.0  # frames per second a client may send, sustained...
    burst: int = 100  # ...and at once; beyond: closed with 1008
    max_errors: int = 20  # refused frames per connection before it is closed (1008)
    max_connections: int = 10_000  # per gateway; beyond: HTTP 503
    max_body: int = 64 * 1024  # bytes in a POST body
    replay: int = 20_000  # stream entries one resume may replay (and half the send buffer)
    heartbeat: float = 15.0  # seconds between heartbeat messages


# ---------------------------------------------------------------- one client's subscriptions


class Sub:
    """One subscription of one client: a job of a queue, or (``job`` None) the whole queue."""

    __slots__ = ("active", "due", "expires", "held", "held_size", "job", "keys", "last", "live",
                 "session", "since", "started", "told_unavailable")  # fmt: skip

    def __init__(
        self, session: Session, keys: QueueKeys, job: str | None, expires: int, since: str | None
    ) -> None:
        self.session, self.keys, self.job, self.expires = session, keys, job, expires
        self.since = since  # the client's resume point, until the first catch-up
        self.started = False  # has it been given a position (state, replay or tail)?
        self.last: EventKey = (0, 0)  # the newest event sent (or covered by the state sent)
        self.live = False  # False: events are held until the catch-up is done
        self.held: list[tuple[EventKey, str]] = []
        self.held_size = 0
        self.active = True  # False once unsubscribed or disconnected
        self.due = False  # waiting for a catch-up
        self.told_unavailable = False

    @property
    def channel(self) -> str:
        return self.keys.events

    def deliver(self, key: EventKey, message: str) -> None:
        if not self.live:
            self.held.append((key, message))
            self.held_size += len(message)
            if self.held_size > self.session.limits.send_buffer:
                self.session.cut_off()
        elif key > self.last:
            self.last = key
            self.session.send_event(message)

    def go_live(self) -> None:
        held, self.held, self.held_size = self.held, [], 0
        self.live = True
        for key, message in held:
            self.deliver(key, message)

    def pause(self) -> None:
        """The channel went down: hold events again until the next catch-up."""
        self.live, self.held, self.held_size = False, [], 0


class Session:
    """One WebSocket connection: its subscriptions and a bounded queue of messages to send."""

    def __init__(self, ws: ServerConnection, limits: Limits) -> None:
        self.ws, self.limits = ws, limits
        self.subs: dict[tuple[str, str | None], Sub] = {}
        self._out: deque[str] = deque()
        self._size = 0
        self._ready = asyncio.Event()
        self.closed = False
        self._allowance, self._stamp = float(limits.burst), time.monotonic()
        self.errors = 0
        self.cut_offs = 0
        self.events_sent = 0

    def send(self, message: str) -> None:
        if self.closed:
            return
        self._out.append(message)
        self._size += len(message)
        if self._size > self.limits.send_buffer:
            self.cut_off()
        else:
            self._ready.set()

    def send_event(self, message: str) -> None:
        """``send`` an event, counted (``notifyq_gateway_events_sent_total``)."""
        self.send(message)
        if not self.closed:
            self.events_sent += 1

    def cut_off(self) -> None:
        """The client does not read fast enough: drop what is queued and close (4001)."""
        if self.closed:
            return
        self.cut_offs += 1
        log.warning("closing a client that does not keep up (%s)", self.ws.remote_address)
        self.close(
            protocol.CLOSE_SLOW_CONSUMER, "send buffer full: the client did not read fast enough"
        )

    def close(self, code: int, reason: str) -> None:
        """Send nothing more and close, in the background: the session goes on reading (and
        dropping) frames, so that the client's close frame is read and the close completes."""
        if self.closed:
            return
        self.closed = True
        self._out.clear()
        self._size = 0
        task = asyncio.get_running_loop().create_task(self.ws.close(code, reason))
        _background.add(task)
        task.add_done_callback(_background.discard)

    def allow_frame(self) -> bool:
        """Token bucket: may the client send one more frame now?"""
        now = time.monotonic()
        self._allowance = min(
            float(self.limits.burst), self._allowance + (now - self._stamp) * self.limits.rate
        )
        self._stamp = now
        if self._allowance < 1:
            return False
        self._allowance -= 1
        return True

    async def pump(self) -> None:
        """Send queued messages in order; ``ws.send`` waits while the socket is full."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._out and not self.closed:
                    message = self._out.popleft()
                    self._size -= len(message)
                    await self.ws.send(message)


_background: set[asyncio.Task[Any]] = set()


# ---------------------------------------------------------------- reads, with no I/O


def snapshots(targets: Sequence[tuple[QueueKeys, str]]) -> Flow[list[Any]]:
    """Each job's (record, result, position) as of one point of its queue's stream; an
    exception in place of a reply that failed (a key of the wrong type)."""
    replies = yield Pipeline(
        [ScriptCall(scripts.SNAPSHOT, [k.job(j), k.result(j), k.events], []) for k, j in targets],
        errors_as_replies=True,
    )
    return list(replies)


def _record(flat: list[Any]) -> dict[str, str]:
    return {
        loose_text(flat[i]) or "": loose_text(flat[i + 1]) or "" for i in range(0, len(flat), 2)
    }


def replay(keys: QueueKeys, start: str, limit: int, page: int = 1000) -> Flow[Any]:
    """Stream entries from ``start`` (inclusive) to the end: (entries, complete), at most
    ``limit`` of them; ``complete`` False if more remain."""
    entries: list[tuple[str, Any]] = []
    low = start
    while True:
        batch = yield Command("XRANGE", keys.events, low, "+", "COUNT", page)
        entries += [(text(eid) or "", fields) for eid, fields in batch]
        if len(batch) < page:
            return entries, True
        if len(entries) >= limit:
            return entries, False
        low = "(" + entries[-1][0]


def newest_entries(keys: QueueKeys, count: int, page: int = 1000) -> Flow[list[Any]]:
    """The newest ``count`` stream entries (at most), oldest first."""
    entries: list[tuple[str, Any]] = []
    high = "+"
    while len(entries) < count:
        want = min(page, count - len(entries))
        batch = yield Command("XREVRANGE", keys.events, high, "-", "COUNT", want)
        entries += [(text(eid) or "", fields) for eid, fields in batch]
        if len(batch) < want:
            break
        high = "(" + entries[-1][0]
    return entries[::-1]


def _exist(keys: list[str]) -> Flow[list[bool]]:
    replies = yield Pipeline([Command("EXISTS", k) for k in keys])
    return [bool(r) for r in replies]


def newest(keys: QueueKeys) -> Flow[str]:
    reply = yield Command("XREVRANGE", keys.events, "+", "-", "COUNT", 1)
    return (text(reply[0][0]) if reply else None) or "0-0"


# ---------------------------------------------------------------- the fan-out


class Fanout(PubSub[Sub]):
    """The gateway's pub/sub connection: queue events channels, fanned out by job id."""

    def __init__(self, backend: Backend, limits: Limits) -> None:
        super().__init__(backend, CLIENT_NAME)
        self.limits = limits
        self._queue_subs: dict[str, set[Sub]] = {}  # channel -> whole-queue subscriptions
        self._job_subs: dict[str, dict[str, set[Sub]]] = {}  # channel -> job id -> subs
        self._due: dict[str, list[Sub]] = {}
        self._catch = asyncio.Event()
        self._generation = 0  # +1 each time the connection is lost
        self.counters: Counter[str] = Counter()

    def follow(self, sub: Sub) -> None:
        if sub.job is None:
            self._queue_subs.setdefault(sub.channel, set()).add(sub)
        else:
            self._job_subs.setdefault(sub.channel, {}).setdefault(sub.job, set()).add(sub)
        self.add(sub.channel, sub)

    def unfollow(self, sub: Sub) -> None:
        sub.active = False
        if sub.job is None:
            subs = self._queue_subs.get(sub.channel, set())
            subs.discard(sub)
            if not subs:
                self._queue_subs.pop(sub.channel, None)
        else:
            jobs = self._job_subs.get(sub.channel, {})
            subs = jobs.get(sub.job, set())
            subs.discard(sub)
            if not subs:
                jobs.pop(sub.job, None)
            if not jobs:
                self._job_subs.pop(sub.channel, None)
        self.remove(sub.channel, sub)

    # -- PubSub hooks
    def _more_tasks(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._catcher(), name="notifyq-gateway-catch-up")]

    def _live(self, items: list[Sub]) -> None:
        for sub in items:
            if sub.active and not sub.due:
                sub.due = True
                sub.pause()  # a catch-up replays up to now; what comes after is held
                self._due.setdefault(sub.channel, []).append(sub)
        self._catch.set()

    def _lost(self) -> None:
        self._generation += 1
        for subs in self._queue_subs.values():
            for sub in subs:
                sub.pause()
        for jobs in self._job_subs.values():
            for subs in jobs.values():
                for sub in subs:
                    sub.pause()

    def _message(self, channel: str, data: bytes) -> None:
        """An event published on a queue's channel, fanned out as it is (the same JSON), once
        checked: a message that is not a notifyq event is logged and dropped."""
        try:
            event = events.parse_published(channel, data)
        except CorruptRecord as exc:
            self.counters["skipped_messages"] += 1
            log.error("skipped: %s", exc)
            return
        self.counters["events"] += 1
        key, message = event_key(event.event_id), protocol.event_from_channel(data.decode())
        for sub in self._queue_subs.get(channel, ()):
            sub.deliver(key, message)
        for sub in self._job_subs.get(channel, {}).get(event.job_id, ()):
            sub.deliver(key, message)

    # -- catching subscriptions up
    async def _catcher(self) -> None:
        while True:
            await self._catch.wait()
            self._catch.clear()
            due, self._due = self._due, {}
            generation = self._generation
            batches = []
            for subs in due.values():
                for sub in subs:
                    sub.due = False
                batch = [s for s in subs if s.active]
                if batch:
                    batches.append(self._catch_up(batch, generation))
            await asyncio.gather(*batches)

    async def _catch_up(self, subs: list[Sub], generation: int) -> None:
        """Bring subscriptions of one queue up to date, then let them go live."""
        try:
            await self._positions(subs)
        except RedisUnavailable as exc:
            log.warning("catch-up failed, trying again: %s", exc)
            for sub in subs:
                if sub.active and not sub.told_unavailable:  # once; it goes on trying
                    sub.told_unavailable = True
                    sub.session.send(
                        ProtocolError(
                            protocol.UNAVAILABLE, "Redis is unavailable; the gateway keeps "
                            "trying and the subscription stays", queue=sub.keys.queue, job=sub.job,
                        ).reply()
                    )  # fmt: skip
            await asyncio.sleep(0.2)
            self._live(subs)
            return
        except AccessDenied as exc:  # the gateway's Redis user may not: say so in the log only
            self._refused(subs, exc)
            return
        except Exception as exc:  # e.g. a key of the wrong type: refuse, keep serving others
            log.exception("catch-up of queue %r failed", subs[0].keys.queue)
            for sub in subs:
                if sub.active:
                    self._refuse(sub, protocol.INTERNAL, f"cannot read the queue: {exc}")
            return
        if generation != self._generation:
            return  # the channel went down meanwhile: these come round again
        for sub in subs:
            if sub.active and sub.started:
                sub.go_live()

    async def _positions(self, subs: list[Sub]) -> None:
        keys = subs[0].keys
        fresh = [s for s in subs if not s.started and s.since is None]
        resuming = [s for s in subs if s not in fresh]
        if resuming:
            fresh += await self._replay(keys, resuming)
        jobs = [s for s in fresh if s.job is not None and s.active]
        if jobs:
            await self._snapshot(jobs)
        queues = [s for s in fresh if s.job is None and s.active]
        if queues:
            position = await self._backend.run(newest(keys))
            for sub in queues:  # live from here: the client can resume from this id
                sub.session.send(protocol.queue_state(keys.queue, position))
                sub.last, sub.started = event_key(position), True

    async def _snapshot(self, subs: list[Sub]) -> None:
        replies = await self._backend.run(snapshots([(s.keys, s.job or "") for s in subs]))
        for sub, reply in zip(subs, replies, strict=True):
            if isinstance(reply, ResponseError):
                self._refuse(sub, protocol.NOT_FOUND, f"job {sub.job!r} cannot be read: {reply}")
                continue
            flat, result, position = reply
            if not flat:
                self._refuse(
                    sub, protocol.NOT_FOUND, f"no job {sub.job!r} in queue {sub.keys.queue!r}"
                )
                continue
            state = protocol.job_state(
                sub.keys.queue, sub.job or "", _record(flat), text(result), text(position) or "0-0"
            )
            sub.session.send(protocol.state_message(state))
            sub.last, sub.started = event_key(state["event_id"]), True

    async def _check_jobs_exist(self, keys: QueueKeys, subs: list[Sub]) -> None:
        """A job resumed with ``since`` is refused if it has no record (it never existed,
        or it ended long enough ago that its record expired)."""
        jobs = [s for s in subs if s.job is not None and not s.started]
        if not jobs:
            return
        found = await self._backend.run(_exist([keys.job(s.job or "") for s in jobs]))
        for sub, exists in zip(jobs, found, strict=True):
            if not exists:
                self._refuse(sub, protocol.NOT_FOUND, f"no job {sub.job!r} in queue {keys.queue!r}")

    def _refused(self, subs: list[Sub], error: Exception) -> None:
        """The server's ACL rules refuse what these subscriptions need (their queue's
        channel or keys): each is ended with ``internal_error``; the details, which name
        the gateway's Redis user, go to the log, not to the clients."""
        log.error("cannot serve queue %r: %s", subs[0].keys.queue if subs else "?", error)
        for sub in subs:
            if sub.active:
                self._refuse(sub, protocol.INTERNAL, "the gateway may not read this queue")

    def _refuse(self, sub: Sub, code: str, message: str) -> None:
        sub.session.send(ProtocolError(code, message, queue=sub.keys.queue, job=sub.job).reply())
        sub.session.subs.pop((sub.keys.queue, sub.job), None)
        self.unfollow(sub)

    async def _replay(self, keys: QueueKeys, subs: list[Sub]) -> list[Sub]:
        """Send each resuming subscription the events after its position; those whose
        position the stream no longer holds are sent ``gap`` and returned, to start afresh."""
        starts = {s: event_id(s.last if s.started else event_key(s.since or "0-0")) for s in subs}
        start = min(starts.values(), key=event_key)
        entries, complete = await self._backend.run(replay(keys, start, self.limits.replay))
        if not complete:
            # the oldest position is too far back; the others may well not be: serve each
            # from the newest entries, and those whose position is older get a gap
            entries = await self._backend.run(newest_entries(keys, self.limits.replay))
            complete = True
        held = {eid for eid, _ in entries}
        parsed: list[tuple[EventKey, str, str]] = []
        first_seq = 1
        for eid, fields in entries:
            if not fields:
                continue
            try:
                event = events.parse(keys.queue, eid, fields.get(b"e", fields.get("e")))
            except CorruptRecord as exc:
                log.error("skipped: %s", exc)
                continue
            if not parsed:
                first_seq = event.seq
            parsed.append((event_key(eid), event.job_id, protocol.event_message(event.data)))
        await self._check_jobs_exist(keys, subs)
        afresh = []
        for sub, since in starts.items():
            if not sub.active:
                continue
            last = max(sub.last, event_key(since))
            missed = [(key, message) for key, job_id, message in parsed
                      if key > last and (sub.job is None or sub.job == job_id)]  # fmt: skip
            # from the start ("0-0"): only if the stream still begins with the queue's first
            # event; else from an id the stream still holds
            held_since = first_seq <= 1 if since == "0-0" else since in held
            # what cannot fit in the client's send buffer would only get it cut off (4001)
            fits = sum(len(m) for _, m in missed) <= self.limits.send_buffer // 2
            if not complete or not held_since or not fits:
                self.counters["gaps"] += 1
                sub.session.send(protocol.gap(keys.queue, sub.job, since))
                sub.started = False
                afresh.append(sub)
                continue
            for _, message in missed:
                sub.session.send_event(message)
            sub.last = missed[-1][0] if missed else last
            sub.started = True
        for sub in afresh:
            sub.since = None
        return afresh


# ---------------------------------------------------------------- HTTP bodies


class _Connection(ServerConnection):
    """websockets reads HTTP requests without a body. For a POST, this lifts the body off
    the wire first (at most ``MAX_BODY`` bytes), passes the request on with
    ``Content-Length: 0`` and keeps the body for the HTTP handler."""

    body: bytes | None = None
    body_too_large = False
    body_chunked = False  # Transfer-Encoding: not read; the handler answers 411
    body_length_bad = False  # a Content-Length that is not a number: the handler answers 400
    _buffer = b""
    _passing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the kernel's send buffer would otherwise hold megabytes for a client that does not
        # read, before the gateway's own bounded queue (Limits.send_buffer) even fills
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._passing:
            super().data_received(data)
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > 16384:  # let websockets refuse an endless head
                self._pass(self._buffer)
            return
        head, rest = self._buffer[: end + 4], self._buffer[end + 4 :]
        if _TRANSFER_ENCODING.search(head):
            self.body_chunked = True
            self._pass(_TRANSFER_ENCODING.sub(b"", head))
            return
        match = _CONTENT_LENGTH.search(head)
        if match and not match.group(1).isdigit():
            # websockets would drop the connection without a word: answer 400 instead
            self.body_length_bad = True
            self._pass(_CONTENT_LENGTH.sub(b"", head))
            return
        length = int(match.group(1)) if match else 0
        if length == 0:
            self._pass(self._buffer)
            return
        if length > MAX_BODY:
            self.body_too_large = True
        elif len(rest) < length:
            return  # wait for the rest of the body
        else:
            self.body = rest[:length]
        self._pass(_CONTENT_LENGTH.sub(b"\r\nContent-Length: 0", head))

    def _pass(self, data: bytes) -> None:
        self._passing, self._buffer = True, b""
        super().data_received(data)


#: The largest POST body any gateway reads (``Limits.max_body`` may set a lower limit).
MAX_BODY = 1 << 20
#: Bytes the kernel may hold for one client (Linux doubles it for bookkeeping).
SOCKET_SEND_BUFFER = 64 * 1024
_TRANSFER_ENCODING = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*", re.IGNORECASE)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([^\r\n]*?)[ \t]*(?=\r\n)", re.IGNORECASE)


# ---------------------------------------------------------------- the gateway


class Fanouts:
    """The gateway's fan-outs: one ``Fanout`` on a single server; on a Redis Cluster one
    per shard (sharded pub/sub delivers a channel's messages only on its own shard), each
    subscription going to the one of its queue's shard."""

    def __init__(self, backend: Backend, limits: Limits) -> None:
        self._backend, self.limits = backend, limits
        self._fanouts: dict[int, Fanout] = {}
        self._topology: Topology | None = None

    async def start(self) -> None:
        """Connect every fan-out (``RedisUnavailable`` if the server cannot be reached)."""
        if self._backend.sharded:  # a cluster: its shards, as the slot map has them now
            self._topology = await self._backend.topology()  # type: ignore[attr-defined]
            shards = await self._backend.shards()  # type: ignore[attr-defined]
            self._fanouts = {s.slot: Fanout(s, self.limits) for s in shards}
        else:
            self._fanouts = {0: Fanout(self._backend, self.limits)}
        await asyncio.gather(*(f.start() for f in self._fanouts.values()))

    def _of(self, channel: str) -> Fanout:
        if self._topology is None:
            return self._fanouts[0]
        return self._fanouts[self._topology.shard(channel_slot(channel))]

    def follow(self, sub: Sub) -> None:
        self._of(sub.channel).follow(sub)

    def unfollow(self, sub: Sub) -> None:
        self._of(sub.channel).unfollow(sub)

    @property
    def connected(self) -> bool:
        return all(f.connected for f in self._fanouts.values())

    @property
    def counters(self) -> Counter[str]:
        return sum((f.counters for f in self._fanouts.values()), Counter())

    async def close(self) -> None:
        await asyncio.gather(*(f.close() for f in self._fanouts.values()))


class Gateway:
    """The WebSocket + HTTP gateway. ``async with Gateway(url) as gw: await gw.serve_forever()``.

    ``secret`` signs and checks tokens (default ``NOTIFYQ_SECRET``). ``origins``: the
    ``Origin`` values allowed to open WebSockets and POST (default: the gateway's own
    origin only; ``["*"]``: any). ``enqueue_queues`` and ``enqueue_key`` turn on
    ``POST /queues/<q>/jobs`` for those queues (off by default). ``static``: a folder served
    at ``/`` (``web_demo/``). ``metrics``: serve ``GET /metrics`` (Prometheus, off by
    default), with the depths, counters and listener lag of ``metrics_queues`` (default:
    the enqueue queues); ``metrics_token`` (default ``NOTIFYQ_METRICS_TOKEN``), when set,
    must come as ``Authorization: Bearer <token>``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        secret: bytes | None = None,
        host: str = "127.0.0.1",
        port: int = 8765,
        static: str | pathlib.Path | None = None,
        origins: Sequence[str] | None = None,
        enqueue_queues: Iterable[str] = (),
        enqueue_key: str | None = None,
        token_ttl: float = 3600,
        limits: Limits | None = None,
        metrics: bool = False,
        metrics_queues: Iterable[str] | None = None,
        metrics_token: str | None = None,
    ) -> None:
        self.secret = tokens.check_secret(tokens.secret_from_env() if secret is None else secret)
        self.url = resolve_url(url)
        self.host, self._port = host, port
        self.static = pathlib.Path(static).resolve() if static else None
        if self.static is not None and not (self.static / "index.html").is_file():
            raise ValidationError(f"static folder {str(static)!r} has no index.html")
        self.origins = list(origins) if origins is not None else None
        self.enqueue_queues = {check_queue_name(q) for q in enqueue_queues}
        if self.enqueue_queues and (not enqueue_key or len(enqueue_key) < 16):
            raise ValidationError("HTTP enqueue needs an enqueue key of at least 16 characters")
        self.enqueue_key = enqueue_key or ""
        self.token_ttl = tokens.check_ttl(token_ttl, "token_ttl")
        self.limits = limits or Limits()
        self.metrics = bool(metrics)
        names = self.enqueue_queues if metrics_queues is None else metrics_queues
        self.metrics_queues = sorted({check_queue_name(q) for q in names})
        if len(self.metrics_queues) > exporter.MAX_QUEUES:
            raise ValidationError(f"metrics_queues: at most {exporter.MAX_QUEUES} queues")
        self.metrics_token = (
            exporter.token_from_env()
            if metrics_token is None
            else exporter.check_token(metrics_token)
        )
        self.sessions: set[Session] = set()
        self.counters: Counter[str] = Counter()
        self._backend: Backend | None = None
        self._fanout: Fanouts | None = None
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None

    # -- life cycle
    async def start(self) -> None:
        self._backend = new_backend(self.url)
        self._fanout = Fanouts(self._backend, self.limits)
        await self._fanout.start()  # RedisUnavailable here: better than serving blind
        try:
            await self._check_access()
        except BaseException:
            await self.close()
            raise

        self._server = await serve(
            self._session, self.host, self._port,
            process_request=self._http, create_connection=_Connection, server_header="notifyq",
            logger=wslog,
            max_size=self.limits.max_message, max_queue=4, compression=None,
            write_limit=64 * 1024, ping_interval=20, ping_timeout=20, close_timeout=5,
        )  # fmt: skip
        self._ticker = asyncio.create_task(self._tick(), name="notifyq-gateway-heartbeat")
        log.info("gateway listening on %s", self.address)

    async def _check_access(self) -> None:
        """``AccessDenied`` if the server's ACL rules refuse the gateway's user a command it
        needs on the queues it takes jobs for (``notifyq.access``). The queues browsers
        follow are not known in advance: a refusal there ends that subscription."""
        assert self._backend is not None
        queues = [QueueKeys(q) for q in sorted(self.enqueue_queues)]
        roles = ["gateway", "http-enqueue"]
        await self._backend.run(access.check(roles, queues, redact(self.url)))
        if self.metrics:
            watched = [QueueKeys(q) for q in self.metrics_queues]
            await self._backend.run(access.check(["metrics"], watched, redact(self.url)))

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def serve_forever(self) -> None:
        assert self._server is not None, "start() first"
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._server is not None:
            self._server.close()  # each client is sent 1001 (going away)
            await self._server.wait_closed()
        if self._fanout is not None:
            await self._fanout.close()
        if self._backend is not None:
            await self._backend.close()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stats(self) -> dict[str, Any]:
        fanout = self._fanout.counters if self._fanout else Counter()
        return {"clients": len(self.sessions), **self.counters, **fanout}

    # -- WebSocket sessions
    async def _session(self, ws: ServerConnection) -> None:
        session = Session(ws, self.limits)
        self.sessions.add(session)
        self.counters["connections"] += 1
        pump = asyncio.create_task(session.pump())
        try:
            async for frame in ws:
                self._receive(session, frame)
        except ConnectionClosed:
            pass
        finally:
            session.closed = True
            self.counters["slow_consumers"] += session.cut_offs
            self.counters["events_sent"] += session.events_sent
            for sub in session.subs.values():
                self._fanout_now().unfollow(sub)
            session.subs.clear()
            pump.cancel()
            self.sessions.discard(session)

    def _receive(self, session: Session, frame: str | bytes) -> None:
        """Handle one frame; once the connection is closing, frames are dropped."""
        if session.closed:
            return
        if not session.allow_frame():
            session.close(protocol.CLOSE_TOO_MANY_MESSAGES, "too many messages")
            return
        try:
            request = protocol.parse(frame)
            if isinstance(request, protocol.Subscribe):
                self._subscribe(session, request)
            elif isinstance(request, protocol.Unsubscribe):
                self._unsubscribe(session, request)
            else:
                session.send(protocol.PONG)
        except ProtocolError as exc:
            session.send(exc.reply())
            session.errors += 1
            if session.errors >= self.limits.max_errors:
                session.close(protocol.CLOSE_TOO_MANY_MESSAGES, "too many bad messages")

    def _subscribe(self, session: Session, request: protocol.Subscribe) -> None:
        queue, job = request.queue, request.job
        try:
            grant = tokens.verify(self.secret, request.token)
        except InvalidToken as exc:
            raise ProtocolError(protocol.INVALID_TOKEN, str(exc), queue=queue, job=job) from None
        if not grant.allows(queue, job):
            what = f"job {job!r} of queue {queue!r}" if job else f"queue {queue!r}"
            raise ProtocolError(
                protocol.FORBIDDEN, f"the token does not grant {what}", queue=queue, job=job
            )
        if (queue, job) in session.subs:
            raise ProtocolError(
                protocol.ALREADY_SUBSCRIBED, "already subscribed", queue=queue, job=job
            )
        if len(session.subs) >= self.limits.max_subscriptions:
            raise ProtocolError(
                protocol.TOO_MANY_SUBSCRIPTIONS,
                f"at most {self.limits.max_subscriptions} subscriptions per connection",
                queue=queue, job=job,
            )  # fmt: skip
        sub = Sub(session, QueueKeys(queue), job, grant.expires, request.since)
        session.subs[(queue, job)] = sub
        session.send(protocol.subscribed(queue, job))
        self._fanout_now().follow(sub)

    def _unsubscribe(self, session: Session, request: protocol.Unsubscribe) -> None:
        sub = session.subs.pop((request.queue, request.job), None)
        if sub is None:
            raise ProtocolError(
                protocol.NOT_SUBSCRIBED, "not subscribed", queue=request.queue, job=request.job
            )
        self._fanout_now().unfollow(sub)
        session.send(protocol.unsubscribed(request.queue, request.job))

    def _fanout_now(self) -> Fanouts:
        assert self._fanout is not None, "start() first"
        return self._fanout

    async def _tick(self) -> None:
        """Every second: end subscriptions whose token expired; every ``heartbeat``
        seconds, a heartbeat to every client (browsers cannot see WebSocket pings)."""
        beat = 0.0
        interval = min(1.0, self.limits.heartbeat)
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            self._expire(now)
            beat += interval
            if beat >= self.limits.heartbeat:
                beat = 0.0
                message = protocol.heartbeat(int(now * 1000))
                for session in list(self.sessions):
                    session.send(message)

    def _expire(self, now: float) -> None:
        for session in list(self.sessions):
            for key, sub in list(session.subs.items()):
                if sub.expires <= now:
                    del session.subs[key]
                    self._fanout_now().unfollow(sub)
                    message = "the token expired; subscribe again with a new one"
                    expired = ProtocolError(
                        protocol.TOKEN_EXPIRED, message, queue=key[0], job=key[1]
                    )
                    session.send(expired.reply())

    # -- HTTP
    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        headers = request.headers
        if headers.get("Upgrade", "").lower() == "websocket":
            if path != "/ws":
                return _json(404, {"error": "WebSockets connect to /ws"})
            if not self._origin_allowed(headers):
                self.counters["refused_origin"] += 1
                return _json(403, {"error": "origin not allowed"})
            if len(self.sessions) >= self.limits.max_connections:
                return _json(503, {"error": "too many connections"})
            return None
        try:
            return await self._route(connection, request, path)
        except (RedisUnavailable, AccessDenied) as exc:  # the details name the server: log only
            log.warning("%s %s: %s", request.method, path, exc)
            return _json(503, {"error": "Redis unavailable"})
        except CorruptRecord as exc:  # a queue key something else wrote: not the client's fault
            log.error("%s %s: %s", request.method, path, exc)
            return _json(500, {"error": f"the gateway cannot read the queue: {exc}"})
        except _HttpError as exc:
            return _json(exc.status, {"error": exc.message}, exc.headers)

    async def _route(self, connection: ServerConnection, request: Request, path: str) -> Response:
        method = request.method
        parts = path.strip("/").split("/")
        if path == "/healthz":
            _allow(method, "GET")
            return await self._health(connection)
        if path == "/metrics":
            _allow(method, "GET")
            return await self._metrics(request)
        if len(parts) == 2 and parts[0] == "jobs":
            _allow(method, "GET")
            return await self._get_job(connection, request, parts[1])
        if len(parts) == 3 and parts[0] == "queues" and parts[2] == "stats":
            _allow(method, "GET")
            return await self._get_stats(connection, request, parts[1])
        if len(parts) == 3 and parts[0] == "queues" and parts[2] == "jobs":
            _allow(method, "POST")
            return await self._post_job(connection, request, parts[1])
        _allow(method, "GET")
        return self._file(connection, path)

    async def _health(self, connection: ServerConnection) -> Response:
        backend, fanout = self._backend, self._fanout
        assert backend is not None and fanout is not None
        try:
            async with asyncio.timeout(2):
                await backend.client.ping()
            ok = fanout.connected
        except Exception:
            ok = False
        body = {"ok": ok, "redis": "up" if ok else "down", **self.stats()}
        return _json(200 if ok else 503, body)

    async def _metrics(self, request: Request) -> Response:
        """Prometheus' scrape: the gateway's own series, and those of ``metrics_queues``
        read from Redis now (each queue within ``exporter.SCRAPE_TIMEOUT``; one that cannot
        be read is reported with ``notifyq_queue_up`` 0, the others as usual)."""
        if not self.metrics:
            raise _HttpError(404, "not found")
        if not exporter.authorised(request.headers.get("Authorization"), self.metrics_token):
            raise _HttpError(401, "a valid metrics token is required", bearer=True)
        live = list(self.sessions)
        fanout = self._fanout.counters if self._fanout else Counter()
        counts = {
            **self.counters,
            "events_received": fanout["events"],
            "events_sent": self.counters["events_sent"] + sum(s.events_sent for s in live),
            "slow_consumers": self.counters["slow_consumers"] + sum(s.cut_offs for s in live),
        }
        subscriptions = sum(len(s.subs) for s in live)
        families = exporter.gateway_families(len(live), subscriptions, counts)
        readings = await asyncio.gather(*(self._read_queue(q) for q in self.metrics_queues))
        families += exporter.queue_families(list(zip(self.metrics_queues, readings, strict=True)))
        return _response(
            200, render(families).encode(), CONTENT_TYPE, {"Cache-Control": "no-store"}
        )

    async def _read_queue(self, queue: str) -> exporter.QueueReading | None:
        assert self._backend is not None
        try:
            async with asyncio.timeout(exporter.SCRAPE_TIMEOUT):
                return await self._backend.run(exporter.read_queue(QueueKeys(queue)))
        except (NotifyQError, ResponseError, TimeoutError) as exc:
            log.warning("metrics: cannot read queue %s: %s", queue, exc)
            return None

    def _grant(self, request: Request) -> tokens.Grant:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _HttpError(401, "send the token as 'Authorization: Bearer <token>'", bearer=True)
        try:
            return tokens.verify(self.secret, token.strip())
        except InvalidToken as exc:
            raise _HttpError(401, str(exc), bearer=True) from None

    async def _get_job(self, connection: ServerConnection, request: Request, job: str) -> Response:
        grant = self._grant(request)
        try:
            check_job_id(job)
        except ValidationError as exc:
            raise _HttpError(400, str(exc)) from None
        if not grant.allows(grant.queue, job):
            raise _HttpError(403, f"the token does not grant job {job!r}")
        keys = QueueKeys(grant.queue)
        assert self._backend is not None
        [reply] = await self._backend.run(snapshots([(keys, job)]))
        if isinstance(reply, ResponseError) or not reply[0]:
            raise _HttpError(404, f"no job {job!r} in queue {grant.queue!r}")
        flat, result, position = reply
        state = protocol.job_state(
            grant.queue, job, _record(flat), text(result), text(position) or "0-0"
        )
        return _json(200, state)

    async def _get_stats(
        self, connection: ServerConnection, request: Request, queue: str
    ) -> Response:
        grant = self._grant(request)
        if grant.scope != "queue" or grant.queue != queue:
            raise _HttpError(403, f"the token does not grant queue {queue!r}")
        assert self._backend is not None
        return _json(200, await self._backend.run(ops.stats(QueueKeys(queue))))

    async def _post_job(
        self, connection: ServerConnection, request: Request, queue: str
    ) -> Response:
        if not self.enqueue_queues:
            raise _HttpError(404, "enqueueing over HTTP is off on this gateway")
        if queue not in self.enqueue_queues:
            raise _HttpError(403, f"queue {queue!r} does not take jobs over HTTP")
        if not self._origin_allowed(request.headers):
            raise _HttpError(403, "origin not allowed")
        auth = request.headers.get("Authorization", "")
        given = auth[7:] if auth[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(given.encode(), self.enqueue_key.encode()):
            raise _HttpError(401, "a valid enqueue key is required", bearer=True)
        if request.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise _HttpError(415, "send the payload as application/json")
        if getattr(connection, "body_length_bad", False):
            raise _HttpError(400, "Content-Length must be a number of bytes")
        if getattr(connection, "body_chunked", False):
            raise _HttpError(411, "send the body with a Content-Length (no chunked encoding)")
        body = getattr(connection, "body", None)
        if getattr(connection, "body_too_large", False) or len(body or b"") > self.limits.max_body:
            raise _HttpError(413, f"the body is over {self.limits.max_body} bytes")
        if body is None:
            raise _HttpError(400, "the body must hold the job's payload as JSON")
        try:
            payload = codec.decode(body, what="the body")
        except CorruptRecord as exc:
            raise _HttpError(400, str(exc)) from None
        assert self._backend is not None
        keys = QueueKeys(queue)
        try:
            spec = ops.job_spec(payload, max_payload=self.limits.max_body)
            [(job_id, _)] = await self._backend.run(ops.enqueue(keys, [spec]))
        except ValidationError as exc:
            raise _HttpError(400, str(exc)) from None
        token = tokens.issue(self.secret, queue, job_id, ttl=self.token_ttl)
        self.counters["http_enqueued"] += 1
        log.debug("job %s enqueued over HTTP", job_id, extra=job_extra(queue, job_id))
        return _json(201, {"queue": queue, "id": job_id, "token": token})

    def _file(self, connection: ServerConnection, path: str) -> Response:
        if self.static is None:
            raise _HttpError(404, "not found")
        name = "index.html" if path in ("", "/") else path.lstrip("/")
        if not _STATIC_PATH.fullmatch(name):
            raise _HttpError(404, "not found")
        target = (self.static / name).resolve()
        if not target.is_relative_to(self.static) or not target.is_file():
            raise _HttpError(404, "not found")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        headers = {"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"}
        return _response(200, target.read_bytes(), kind, headers)

    def _origin_allowed(self, headers: Any) -> bool:
        origin = headers.get("Origin")
        if origin is None:
            return True  # not a browser (browsers always send it on WebSockets and POST)
        if self.origins is None:
            host = headers.get("Host", "")
            return origin in (f"http://{host}", f"https://{host}")
        return "*" in self.origins or origin in self.origins


_STATIC_PATH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._/-]{0,200}")
_CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'"
)


class _HttpError(Exception):
    def __init__(self, status: int, message: str, *, bearer: bool = False) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.headers = {"WWW-Authenticate": "Bearer"} if bearer else {}


def _allow(method: str, expected: str) -> None:
    if method != expected:
        raise _HttpError(405, f"use {expected}")


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    return _response(
        status, data, "application/json", {"Cache-Control": "no-store", **(headers or {})}
    )


def _response(status: int, body: bytes, kind: str, headers: dict[str, str]) -> Response:
    code = http.HTTPStatus(status)
    return Response(
        code.value,
        code.phrase,
        Headers(
            {
                "Date": email.utils.formatdate(usegmt=True),
                "Connection": "close",
                "Content-Type": kind,
                "Content-Length": str(len(body)),
                "X-Content-Type-Options": "nosniff",
                **headers,
            }
        ),
        body,
    )


async def run(gateway: Gateway) -> None:
    """Serve until cancelled (Ctrl-C), then close every connection cleanly."""
    async with gateway:
        await gateway.serve_forever()


__all__ = ["Gateway", "Limits", "run"]
