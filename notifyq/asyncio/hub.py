"""The asyncio wait hub: one pub/sub connection per event loop, for any number of waits.

``wait()`` registers and awaits a future; three tasks do the I/O and batch it:
the *writer* sends SUBSCRIBE/UNSUBSCRIBE for every channel that changed since it last ran,
the *reader* takes confirmations and messages, and the *checker* reads the result keys of
waits whose channel just went live, all in one pipeline. 10,000 concurrent waits cost a
handful of round trips and one connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import redis

from ..codec import text
from ..connection import redact
from ..errors import RedisUnavailable, ResultTimeout
from ..hub import HUB_CLIENT_NAME, RECHECK_DELAY
from ..keys import QueueKeys
from ..waiting import Subscriptions, check

if TYPE_CHECKING:
    from .connection import Backend

log = logging.getLogger("notifyq.wait")


class _Wait:
    __slots__ = ("future", "job_id", "keys")

    def __init__(self, keys: QueueKeys, job_id: str, future: asyncio.Future[object]) -> None:
        self.keys, self.job_id, self.future = keys, job_id, future

    def resolve(self, value: object) -> None:
        if not self.future.done():
            self.future.set_result(value)


class WaitHub:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._subs: Subscriptions[_Wait] = Subscriptions()
        self._conn: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._write = asyncio.Event()
        self._checks: list[_Wait] = []
        self._check = asyncio.Event()
        self._connected = asyncio.Event()
        self._starting = asyncio.Lock()

    async def wait(self, keys: QueueKeys, job_id: str, timeout: float | None) -> object:
        """Wait for the job's outcome: raw outcome bytes, or ``waiting.MISSING``."""
        if not self._tasks:
            async with self._starting:  # concurrent first waits start the hub once
                if not self._tasks:
                    await self._start()
        w = _Wait(keys, job_id, asyncio.get_running_loop().create_future())
        channel = keys.done_channel(job_id)
        if self._subs.add(channel, w):
            self._checks.append(w)
            self._check.set()
        self._write.set()
        try:
            async with asyncio.timeout(timeout):
                return await w.future
        except TimeoutError:
            raise ResultTimeout(job_id, timeout or 0.0) from None
        finally:
            self._subs.remove(channel, w)
            self._write.set()

    async def _start(self) -> None:
        await self._connect()
        self._tasks = [
            asyncio.create_task(self._reader(), name="notifyq-wait-reader"),
            asyncio.create_task(self._writer(), name="notifyq-wait-writer"),
            asyncio.create_task(self._checker(), name="notifyq-wait-checker"),
        ]

    async def _connect(self) -> None:
        pool = self._backend.client.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": None, "health_check_interval": 0}
        kwargs["client_name"] = HUB_CLIENT_NAME
        conn = pool.connection_class(**kwargs)
        try:
            await conn.connect()
        except (redis.ConnectionError, OSError) as exc:
            raise RedisUnavailable(redact(self._backend.url), str(exc)) from exc
        self._conn = conn
        self._connected.set()

    async def _writer(self) -> None:
        while True:
            await self._write.wait()
            self._write.clear()
            await self._connected.wait()
            subscribe, unsubscribe = self._subs.plan()
            try:
                if subscribe:
                    await self._conn.send_command("SUBSCRIBE", *subscribe)
                if unsubscribe:
                    await self._conn.send_command("UNSUBSCRIBE", *unsubscribe)
            except (redis.ConnectionError, OSError):
                pass  # the reader sees it too, resets and reconnects

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
            except RedisUnavailable as exc:
                log.debug("check failed, retrying: %s", exc)
                self._checks += waits  # the pub/sub connection may be fine: check again
                await asyncio.sleep(RECHECK_DELAY)
                self._check.set()
                continue
            for w, value in zip(waits, found, strict=True):
                if value is not None:
                    w.resolve(value)

    async def _reader(self) -> None:
        delay = 0.05
        while True:
            try:
                reply = await self._conn.read_response(push_request=True)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                self._connected.clear()
                self._subs.reset()
                while True:
                    log.warning("wait hub lost its connection; reconnecting in %.2fs", delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    try:
                        await self._connect()
                        break
                    except RedisUnavailable:
                        continue
                self._write.set()
                continue
            delay = 0.05
            kind, channel = text(reply[0]), text(reply[1]) or ""
            if kind == "message":
                for w in self._subs.message(channel):
                    w.resolve(reply[2])
            elif kind == "subscribe":
                waits = self._subs.confirmed(channel)
                if waits:
                    self._checks += waits
                    self._check.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._conn is not None:
            await self._conn.disconnect()
