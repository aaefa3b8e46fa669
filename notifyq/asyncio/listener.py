"""The asyncio listener: a task that reads queue events and sends the blinker signals.

Same behaviour as ``notifyq.Listener`` (anonymous or named, catch-up, gap signal); async
receivers are awaited, plain ones called in the loop (keep them quick)::

    async with notifyq.asyncio.Listener(["orders"], name="billing"):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from .. import events as ev
from ..errors import AccessDenied, CorruptRecord, RedisUnavailable
from ..events import Event
from ..listener import MAX_PAUSE, ListenerBase
from ..logs import job_extra
from .client import Queue
from .connection import Backend, shared_backend

log = logging.getLogger("notifyq.listener")


class Listener(ListenerBase):
    """Awaits the receivers of ``notifyq.signals`` for the events of ``queues``."""

    def __init__(
        self,
        queues: str | Queue | Sequence[str | Queue],
        name: str | None = None,
        *,
        url: str | None = None,
        client: aioredis.Redis | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(queues, name, **settings)
        first = queues if isinstance(queues, str | Queue) else queues[0]
        if client is None and url is None and isinstance(first, Queue):
            client, url = (first._own.client if first._own else None), first.url
        self._client = client
        self._url = url if client is not None else ev.resolve(url)
        self._backend: Backend | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping, self._reading = False, False

    @property
    def label(self) -> str:
        return f"notifyq-listener:{self.name or 'anonymous'}"

    async def start(self) -> Listener:
        """Subscribe (events from this moment on are delivered), then read in a task."""
        await self._open()
        self._task = asyncio.create_task(self._loop(), name=self.label)
        return self

    async def stop(self) -> None:
        """Stop reading; the batch being handled finishes first (and is acknowledged)."""
        self._stopping = True
        if self._task is not None:
            if self._reading:  # interrupt the blocking read, never a batch being handled
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._backend is not None:
            if self.name:
                with contextlib.suppress(RedisUnavailable, AccessDenied):
                    await self._backend.run(ev.leave_group(self.queues, self.name, self.consumer))
            await self._backend.close()
            self._backend = None

    async def __aenter__(self) -> Listener:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Listen until cancelled."""
        await self._open()
        try:
            await self._loop()
        finally:
            self._task = None
            await self.stop()

    async def _open(self) -> None:
        self._stopping = False
        base = Backend(self._url or "(client)", self._client) if self._client else None
        base = base or shared_backend(self._url or "")
        self._backend = base.dedicated(self.label)  # its own connections: it blocks
        await self._join()

    async def _join(self) -> None:
        assert self._backend is not None
        await self._backend.run(self._access_flow(self._backend.url))
        if self.name:
            await self._backend.run(ev.join_group(self.keys, self.name))
        elif not self._positions:
            self._positions = await self._backend.run(ev.tail(self.keys))

    async def _loop(self) -> None:
        assert self._backend is not None
        delay = 0.05
        self._pending, self._last_claim = True, time.monotonic()
        while not self._stopping:
            try:
                self._reading = True
                try:
                    batch = await self._read()
                finally:
                    self._reading = False
                await self._handle(batch)
                delay = 0.05
            except ev.GroupLost:
                log.warning("listener %s: its group is gone; joining again", self.label)
                assert self.name is not None
                try:
                    await self._backend.run(ev.join_group(self.keys, self.name, start="0"))
                except (RedisUnavailable, AccessDenied) as exc:  # not at once, not in a loop
                    log.warning("listener %s: %s", self.label, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            except (RedisUnavailable, AccessDenied) as exc:  # an ACL rule may yet change
                log.warning("listener %s: %s; trying again in %.2fs", self.label, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_PAUSE)
                self._pending = True
                with contextlib.suppress(RedisUnavailable, AccessDenied):
                    await self._resync()
            except CorruptRecord as exc:  # a stream key something else overwrote
                log.error("listener %s: %s; trying again in %.2fs", self.label, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_PAUSE)
            except Exception:
                log.exception("listener %s: unexpected error; continuing", self.label)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_PAUSE)

    async def _read(self) -> list[Event]:
        assert self._backend is not None
        return await self._backend.run(self._read_flow())

    async def _resync(self) -> None:
        """After a reconnect: re-join the group if it was lost (at its oldest event)."""
        if self.name and self._backend is not None:
            await self._backend.run(ev.join_group(self.keys, self.name, start="0"))

    async def _handle(self, batch: list[Event]) -> None:
        if not batch:
            return
        assert self._backend is not None
        if self.name:
            await self._dispatch(batch)
            await self._backend.run(ev.ack(self.name, [e for e in batch if e.type != "gap"]))
        else:
            await self._dispatch(ev.advance(self._positions, batch) + batch)

    async def _dispatch(self, batch: list[Event]) -> None:
        for event in batch:
            for receiver in self._receivers(event):
                try:
                    result = receiver(event.queue, event=event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception(
                        "receiver %r failed on event %s", receiver, event.event_id,
                        extra=job_extra(event.queue, event.job_id, event.attempt),
                    )  # fmt: skip
            if event.type != "gap":
                self.handled += 1
