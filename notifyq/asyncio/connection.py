"""Asyncio I/O: the same flows as ``notifyq.connection``, driven with ``await``."""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from ..connection import _args, tcp_options, wrap
from ..ops import Command, Flow, Op, ScriptCall

if TYPE_CHECKING:
    from .hub import WaitHub

T = TypeVar("T")

#: Connections one backend may open (a pool that blocks, never refuses, when all are busy).
MAX_CONNECTIONS = 64


class Backend:
    """One asyncio Redis client and one wait hub, shared by the queues of an event loop."""

    def __init__(
        self, url: str, client: aioredis.Redis | None = None, *, owns_client: bool | None = None
    ) -> None:
        self.url = url
        self.owns_client = client is None if owns_client is None else owns_client
        if client is None:
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=MAX_CONNECTIONS, timeout=None, **tcp_options(url)
            )
            client = aioredis.Redis.from_pool(pool)  # closing the client closes its pool
        self.client: aioredis.Redis = client
        self._hub: WaitHub | None = None

    @property
    def hub(self) -> WaitHub:
        if self._hub is None:
            from .hub import WaitHub

            self._hub = WaitHub(self)
        return self._hub

    async def run(self, flow: Flow[T]) -> T:
        """Drive a flow: send each operation it yields, hand it the reply."""
        try:
            op = next(flow)
            while True:
                op = flow.send(await self.execute(op))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except Exception as exc:
            err = wrap(exc, self.url)
            if err is exc:
                raise
            raise err from exc

    async def execute(self, op: Op) -> Any:
        client = self.client
        if isinstance(op, Command):
            return await client.execute_command(*op.args)
        if isinstance(op, ScriptCall):
            try:
                return await client.execute_command(*_args(op, sha=True))
            except NoScriptError:
                return await client.execute_command(*_args(op, sha=False))
        pipe = client.pipeline(transaction=False)
        for call in op.calls:
            pipe.execute_command(*_args(call, sha=True))
        replies = await pipe.execute(raise_on_error=False)
        for i, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):  # not run: safe to run again
                replies[i] = await client.execute_command(*_args(op.calls[i], sha=False))
            elif isinstance(reply, Exception) and not op.errors_as_replies:
                raise reply
        return replies

    async def close(self) -> None:
        if self._hub is not None:
            await self._hub.close()
            self._hub = None
        if self.owns_client:  # a client you passed in stays yours to close
            await self.client.aclose()


def dedicated_client(client: aioredis.Redis, name: str) -> aioredis.Redis:
    """A client on the same server with its own connections, named ``name`` in CLIENT LIST
    and without a read timeout (for blocking reads)."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "client_name": name, "socket_timeout": None}
    own = aioredis.ConnectionPool(
        connection_class=pool.connection_class, max_connections=8, **kwargs
    )
    return aioredis.Redis.from_pool(own)


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Backend]] = (
    weakref.WeakKeyDictionary()
)


def shared_backend(url: str) -> Backend:
    """The backend for a resolved ``url`` in the running event loop (one hub per loop)."""
    per_loop = _shared.setdefault(asyncio.get_running_loop(), {})
    backend = per_loop.get(url)
    if backend is None:
        backend = per_loop[url] = Backend(url)
    return backend


async def close_shared() -> None:
    """Close the backends of the running loop."""
    per_loop = _shared.pop(asyncio.get_running_loop(), {})
    for backend in per_loop.values():
        await backend.close()
