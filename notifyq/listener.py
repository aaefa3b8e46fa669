"""The blocking listener: a thread that reads queue events and sends the blinker signals.

    with notifyq.Listener(["orders"]):           # anonymous: live events from now on
        ...
    notifyq.Listener(["orders"], name="billing")  # named: durable, resumes where it left

An anonymous listener reads each queue's event stream from its newest event; after a lost
connection it resumes from the last event it saw (a ``gap`` signal says if the stream was
trimmed past it). A named listener reads through a consumer group named after it: the
checkpoint lives in Redis, a restart replays what was missed, events are acknowledged only
after every receiver ran (at-least-once), and processes sharing the name share the events.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

from . import access, ops, signals
from . import events as ev
from .client import Queue
from .connection import Backend, redact, shared_backend
from .errors import AccessDenied, CorruptRecord, RedisUnavailable, ValidationError
from .events import Event
from .keys import QueueKeys, check_queue_name
from .logs import job_extra
from .ops import Flow

log = logging.getLogger("notifyq.listener")

#: Seconds between looks for events that a dead member of the group never acknowledged.
RECLAIM_EVERY = 5.0
#: Longest pause of a listener after a failed read; it starts at 0.05 s and doubles.
MAX_PAUSE = 5.0


class ListenerBase:
    """Settings and bookkeeping both listeners share; the loops live in each flavour."""

    def __init__(
        self,
        queues: str | Any | Sequence[str | Any],
        name: str | None = None,
        *,
        batch: int = 500,
        block: float = 1.0,
        claim_after: float = 30.0,
    ) -> None:
        if isinstance(queues, str) or hasattr(queues, "keys"):
            queues = [queues]
        names = [check_queue_name(q if isinstance(q, str) else q.name) for q in queues]
        if not names:
            raise ValidationError("a listener needs at least one queue")
        self.keys = [QueueKeys(n) for n in names]
        self.queues = {k.events: k.queue for k in self.keys}  # stream -> queue name
        self.name = None if name is None else ev.check_listener_name(name)
        self.consumer = f"{self.name}:{ev.new_consumer_id()}" if self.name else ""
        self.batch = ops.check_int(batch, "batch")
        self.block_ms = max(1, round(ops.seconds(block, "block", allow_zero=False) * 1000))
        claim_after = ops.seconds(claim_after, "claim_after", allow_zero=False)
        self.claim_after_ms = max(1, round(claim_after * 1000))
        self.handled = 0  # job events handed to receivers (gap signals not counted)
        self._positions: dict[str, ev.Position] = {}
        self._pending, self._last_claim = True, 0.0

    def _access_flow(self, url: str) -> Flow[None]:
        """``AccessDenied`` if the server's ACL rules refuse the listener's user a command
        it needs (``notifyq.access``): said at ``start()``, not later in its thread."""
        role = "named-listener" if self.name else "listener"
        return access.check([role], self.keys, redact(url))

    def _read_flow(self) -> Flow[list[Event]]:
        """The next read: anonymous, events after the positions; named, now and then the
        events a dead member left unacknowledged, then this consumer's own unacknowledged
        ones (after a reconnect or restart), then new ones."""
        if not self.name:
            return (yield from ev.read(self._positions, self.queues, self.batch, self.block_ms))
        if time.monotonic() - self._last_claim > RECLAIM_EVERY:
            self._last_claim = time.monotonic()
            flow = ev.reclaim(self.queues, self.name, self.consumer, self.claim_after_ms)
            if batch := (yield from flow):
                return batch
        batch = yield from ev.read_group(
            self.keys, self.name, self.consumer, self.batch, self.block_ms, self._pending
        )
        self._pending = self._pending and any(e.type != "gap" for e in batch)
        return batch

    def _receivers(self, event: Event) -> list[Any]:
        sigs = (
            [signals.gap] if event.type == "gap" else [signals.BY_TYPE[event.type], signals.event]
        )
        return [r for s in sigs for r in s.receivers_for(event.queue)]


class Listener(ListenerBase):
    """Calls the receivers of ``notifyq.signals`` for the events of ``queues``, in a thread."""

    def __init__(
        self,
        queues: str | Queue | Sequence[str | Queue],
        name: str | None = None,
        *,
        url: str | None = None,
        client: redis.Redis | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(queues, name, **settings)
        first = queues if isinstance(queues, str | Queue) else queues[0]
        if client is not None:
            backend = Backend(url or "(client)", client)
        elif isinstance(first, Queue) and url is None:
            backend = first._backend
        else:
            backend = shared_backend(url)
        self._backend = backend.dedicated(self.label)  # its own connections: it blocks
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def label(self) -> str:
        """CLIENT SETNAME of the listener's connection."""
        return f"notifyq-listener:{self.name or 'anonymous'}"

    def start(self) -> Listener:
        """Subscribe (events from this moment on are delivered), then read in a thread."""
        self._stop.clear()
        self._join()
        self._thread = threading.Thread(target=self._loop, name=self.label, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading; events being handled finish first (and are acknowledged)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.name:
            with contextlib.suppress(RedisUnavailable, AccessDenied):
                self._backend.run(ev.leave_group(self.queues, self.name, self.consumer))
        self._backend.close()

    def __enter__(self) -> Listener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self) -> None:
        """Listen in this thread until ``stop()`` is called from another."""
        self._stop.clear()
        self._join()
        self._loop()

    # ------------------------------------------------------------ reading

    def _join(self) -> None:
        self._backend.run(self._access_flow(self._backend.url))
        if self.name:
            self._backend.run(ev.join_group(self.keys, self.name))
        elif not self._positions:
            self._positions = self._backend.run(ev.tail(self.keys))

    def _loop(self) -> None:
        delay = 0.05
        self._pending, self._last_claim = True, time.monotonic()
        while not self._stop.is_set():
            try:
                self._handle(self._read())
                delay = 0.05
            except ev.GroupLost:
                log.warning("listener %s: its group is gone; joining again", self.label)
                assert self.name is not None
                try:
                    self._backend.run(ev.join_group(self.keys, self.name, start="0"))
                except (RedisUnavailable, AccessDenied) as exc:  # not at once, not in a loop
                    log.warning("listener %s: %s", self.label, exc)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 5.0)
            except (RedisUnavailable, AccessDenied) as exc:  # an ACL rule may yet change
                log.warning("listener %s: %s; trying again in %.2fs", self.label, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_PAUSE)
                self._pending = True
                with contextlib.suppress(RedisUnavailable, AccessDenied):
                    self._resync()
            except CorruptRecord as exc:  # a stream key something else overwrote
                log.error("listener %s: %s; trying again in %.2fs", self.label, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_PAUSE)
            except Exception:
                log.exception("listener %s: unexpected error; continuing", self.label)
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_PAUSE)

    def _read(self) -> list[Event]:
        return self._backend.run(self._read_flow())

    def _resync(self) -> None:
        """After a reconnect: a named listener re-joins its group if it was lost (at its
        oldest event); an anonymous one resumes from its positions (``advance`` reports
        any gap)."""
        if self.name:
            self._backend.run(ev.join_group(self.keys, self.name, start="0"))

    def _handle(self, batch: list[Event]) -> None:
        if not batch:
            return
        if self.name:
            self._dispatch(batch)
            self._backend.run(ev.ack(self.name, [e for e in batch if e.type != "gap"]))
        else:
            self._dispatch(ev.advance(self._positions, batch) + batch)

    def _dispatch(self, batch: list[Event]) -> None:
        for event in batch:
            for receiver in self._receivers(event):
                try:
                    receiver(event.queue, event=event)
                except Exception:
                    log.exception(
                        "receiver %r failed on event %s", receiver, event.event_id,
                        extra=job_extra(event.queue, event.job_id, event.attempt),
                    )  # fmt: skip
            if event.type != "gap":
                self.handled += 1
