"""Many channels on one pub/sub connection, for asyncio: the wait hub and its base.

``PubSub`` owns the connection. Callers ``add``/``remove`` (channel, item) pairs; the
*writer* task sends SUBSCRIBE/UNSUBSCRIBE for every channel that changed since it last ran,
the *reader* takes confirmations and messages. When a channel goes live (its SUBSCRIBE is
confirmed, or it already was), ``_live`` is called with the items registered on it, so a
subclass can read what happened before (a result key, a stream); after a lost connection
it reconnects, subscribes again and calls ``_live`` for every item, since messages may
have been missed. Subclasses: ``WaitHub`` (``Job.wait()``) and the gateway's fan-out.

``WaitHub``: ``wait()`` registers and awaits a future; a *checker* task reads the result
keys of waits whose channel just went live, all in one pipeline. 10,000 concurrent waits
cost a handful of round trips and one connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import redis

from ..cluster import message_kind, subscribe_commands
from ..codec import text
from ..connection import reraise, wrap
from ..errors import AccessDenied, RedisUnavailable, ResultTimeout
from ..hub import HUB_CLIENT_NAME, RECHECK_DELAY
from ..keys import QueueKeys
from ..ops import Command
from ..waiting import Subscriptions, check, done_message

if TYPE_CHECKING:
    from .connection import Backend

log = logging.getLogger("notifyq.wait")

W = TypeVar("W")


class PubSub(Generic[W]):
    """One pub/sub connection shared by any number of (channel, item) registrations."""

    def __init__(self, backend: Backend, client_name: str) -> None:
        self._backend = backend
        self._client_name = client_name
        self._subs: Subscriptions[W] = Subscriptions()
        self._conn: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._write = asyncio.Event()
        self._connected = asyncio.Event()
        self._starting = asyncio.Lock()

    # -- for subclasses
    def _message(self, channel: str, data: bytes) -> None:
        """A message arrived on ``channel``."""

    def _live(self, items: list[W]) -> None:
        """These items' channel is live: anything published from now on reaches them."""

    def _lost(self) -> None:
        """The connection was lost; ``_live`` follows for every item once it is back."""

    def _refused(self, items: list[W], error: Exception) -> None:
        """The server refused to subscribe these items' channel (its ACL rules)."""

    def _more_tasks(self) -> list[asyncio.Task[None]]:
        return []

    # -- registrations
    async def start(self) -> None:
        """Connect (``RedisUnavailable`` if the server cannot be reached) and start the tasks."""
        if not self._tasks:
            async with self._starting:  # concurrent first callers start it once
                if not self._tasks:
                    await self._connect()
                    self._tasks = [
                        asyncio.create_task(self._reader(), name=f"{self._client_name}-reader"),
                        asyncio.create_task(self._writer(), name=f"{self._client_name}-writer"),
                        *self._more_tasks(),
                    ]

    def add(self, channel: str, item: W) -> None:
        if self._subs.add(channel, item):
            self._live([item])
        self._write.set()

    def remove(self, channel: str, item: W) -> None:
        self._subs.remove(channel, item)
        self._write.set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- I/O
    async def _connect(self) -> None:
        try:
            conn = await self._backend.pubsub_connection(self._client_name)
            await conn.connect()
        except (redis.RedisError, OSError) as exc:  # RedisUnavailable, or AccessDenied
            await conn.disconnect()
            reraise(exc, self._backend.url, Command("CLIENT", "SETNAME", self._client_name))
        self._conn = conn
        self._connected.set()

    async def _writer(self) -> None:
        while True:
            await self._write.wait()
            self._write.clear()
            await self._connected.wait()
            subscribe, unsubscribe = self._subs.plan()
            sharded = self._backend.sharded
            try:
                for command in subscribe_commands("SUBSCRIBE", subscribe, sharded):
                    await self._conn.send_command(*command)
                for command in subscribe_commands("UNSUBSCRIBE", unsubscribe, sharded):
                    await self._conn.send_command(*command)
            except (redis.ConnectionError, OSError):
                pass  # the reader sees it too, resets and reconnects

    async def _reader(self) -> None:
        delay = 0.05
        read = 0
        while True:
            read += 1
            if read % 64 == 0:  # a burst is already buffered: let other tasks run between
                await asyncio.sleep(0)
            try:
                reply = await self._conn.read_response(push_request=True)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                self._connected.clear()
                self._subs.reset()
                self._lost()
                while True:
                    log.warning(
                        "%s lost its connection; reconnecting in %.2fs", self._client_name, delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    try:
                        await self._connect()
                        break
                    except (RedisUnavailable, AccessDenied) as exc:
                        log.warning("%s: %s", self._client_name, exc)
                        continue
                self._write.set()
                continue
            except redis.ResponseError as exc:
                self._refusal(exc)
                continue
            delay = 0.05
            kind, channel = message_kind(text(reply[0]) or ""), text(reply[1]) or ""
            if kind == "message":
                self._message(channel, reply[2])
            elif kind == "subscribe":
                items = self._subs.confirmed(channel)
                if items:
                    self._live(items)

    def _refusal(self, exc: redis.ResponseError) -> None:
        """An error reply on the pub/sub connection: the server refused a SUBSCRIBE."""
        if "'unsubscribe'" in str(exc):
            log.error("%s: %s", self._client_name, wrap(exc, self._backend.url))
            return
        channels, items = self._subs.refused()
        self._refused(items, wrap(exc, self._backend.url, Command("SUBSCRIBE", *channels)))
        self._write.set()  # channels still wanted are asked for again

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._conn is not None:
            await self._conn.disconnect()
            self._conn = None
        self._connected.clear()


class _Wait:
    __slots__ = ("future", "job_id", "keys")

    def __init__(self, keys: QueueKeys, job_id: str, future: asyncio.Future[object]) -> None:
        self.keys, self.job_id, self.future = keys, job_id, future

    def resolve(self, value: object) -> None:
        if self.future.done():
            return
        if isinstance(value, Exception):  # the result key holds something else
            self.future.set_exception(value)
        else:
            self.future.set_result(value)

    def fail(self, error: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class WaitHub(PubSub[_Wait]):
    def __init__(self, backend: Backend) -> None:
        super().__init__(backend, HUB_CLIENT_NAME)
        self._checks: list[_Wait] = []
        self._check = asyncio.Event()

    async def wait(self, keys: QueueKeys, job_id: str, timeout: float | None) -> object:
        """Wait for the job's outcome: its outcome record, or ``waiting.MISSING``;
        ``CorruptRecord`` if its result key holds something else."""
        await self.start()
        w = _Wait(keys, job_id, asyncio.get_running_loop().create_future())
        channel = keys.done_channel(job_id)
        self.add(channel, w)
        try:
            async with asyncio.timeout(timeout):
                return await w.future
        except TimeoutError:
            raise ResultTimeout(job_id, timeout or 0.0) from None
        finally:
            self.remove(channel, w)

    def _more_tasks(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._checker(), name="notifyq-wait-checker")]

    def _live(self, items: list[_Wait]) -> None:
        self._checks += items
        self._check.set()

    def _message(self, channel: str, data: bytes) -> None:
        waits = self._subs.message(channel)
        record = done_message(channel, data, waits[0].job_id) if waits else None
        for w in waits if record is not None else ():
            w.resolve(record)

    def _refused(self, items: list[_Wait], error: Exception) -> None:
        for w in items:
            w.fail(error)

    async def _checker(self) -> None:
        while True:
            await self._check.wait()
            self._check.clear()
            waits = [w for w in self._checks if not w.future.done()]
            self._checks = []
            if not waits:
                continue
            try:
                found = await self._backend.run(check([(w.keys, w.job_id) for w in waits]))
            except AccessDenied as exc:  # not an outage: these waits cannot succeed
                self._refused(waits, exc)
                continue
            except RedisUnavailable as exc:
                log.debug("check failed, retrying: %s", exc)
                self._checks += waits  # the pub/sub connection may be fine: check again
                await asyncio.sleep(RECHECK_DELAY)
                self._check.set()
                continue
            for w, value in zip(waits, found, strict=True):
                if value is not None:
                    w.resolve(value)
