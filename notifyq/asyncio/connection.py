"""Asyncio I/O: the same flows as ``notifyq.connection``, driven with ``await``."""

from __future__ import annotations

import asyncio
import functools
import weakref
from typing import TYPE_CHECKING, Any, TypeVar, cast

import redis
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from .. import sentinel
from ..connection import _args, pack, reraise, reruns, shape, tcp_options
from ..ops import Command, Flow, Op, ScriptCall, repeatable

if TYPE_CHECKING:
    from .hub import WaitHub

T = TypeVar("T")

#: Connections one backend may open (a pool that blocks, never refuses, when all are busy).
MAX_CONNECTIONS = 64


class Backend:
    """One asyncio Redis client and one wait hub, shared by the queues of an event loop.

    As the blocking backend, it sends commands on its own connections (made with the
    client's settings, at most ``MAX_CONNECTIONS`` at once; callers beyond wait), not through
    ``client.execute_command`` (docs/design-notes.md).
    """

    sharded = False  # classic pub/sub (a cluster's backend subscribes per shard)

    def __init__(
        self, url: str, client: aioredis.Redis | None = None, *, owns_client: bool | None = None
    ) -> None:
        self.url = url
        self.owns_client = client is None if owns_client is None else owns_client
        if client is None:
            client = client_for(url)
        self.client: aioredis.Redis = client
        self._hub: WaitHub | None = None
        own = client.connection_pool
        self._new_connection = functools.partial(own.connection_class, **own.connection_kwargs)
        self._idle: list[Any] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._closed = False

    @property
    def hub(self) -> WaitHub:
        if self._hub is None:
            from .hub import WaitHub

            self._hub = WaitHub(self)
        return self._hub

    async def pubsub_connection(self, client_name: str) -> Any:
        """A new connection for pub/sub (not yet connected): no read timeout, named."""
        pool = self.client.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": None, "health_check_interval": 0}
        return pool.connection_class(**{**kwargs, "client_name": client_name})

    def dedicated(self, name: str) -> Backend:
        """A backend on the same server with connections of its own, named ``name``, without
        a read timeout: for a reader that blocks (a listener)."""
        return Backend(self.url, dedicated_client(self.client, name), owns_client=True)

    async def run(self, flow: Flow[T]) -> T:
        """Drive a flow: send each operation it yields, hand it the reply."""
        op: Op | None = None
        try:
            op = next(flow)
            while True:
                op = flow.send(await self.execute(op))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except Exception as exc:
            reraise(exc, self.url, op)

    async def execute(self, op: Op) -> Any:
        async with self._slots:
            conn = self._idle.pop() if self._idle else self._new_connection()
            try:
                try:
                    reply = await self._send(conn, op)
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    await conn.disconnect()  # once more on a new socket, as redis-py does
                    if not repeatable(op):
                        raise
                    reply = await self._send(conn, op)
            except BaseException as exc:  # cancelled mid-command: the socket is out of step
                if not isinstance(exc, ResponseError):
                    await asyncio.shield(conn.disconnect())
                self._release(conn)
                raise
            self._release(conn)
            return reply

    def _release(self, conn: Any) -> None:
        if self._closed:
            _background(conn.disconnect())
        else:
            self._idle.append(conn)

    async def _send(self, conn: Any, op: Op) -> Any:
        if not conn.is_connected:  # connect(), not the send's own: a sentinel-managed
            await conn.connect()  # connection asks where the primary is only in connect()
        if isinstance(op, Command | ScriptCall):
            try:
                return await self._call(conn, _args(op, sha=True))
            except NoScriptError:
                if isinstance(op, Command):
                    raise
                return await self._call(conn, _args(op, sha=False))
        await conn.send_packed_command([pack(_args(c, sha=True)) for c in op.calls])
        replies: list[Any] = []
        for call in op.calls:
            try:
                replies.append(await self._reply(conn, _args(call, sha=True)[0]))
            except ResponseError as exc:
                replies.append(exc)
        for i in reruns(op, replies):
            replies[i] = await self._call(conn, _args(op.calls[i], sha=False))
        return replies

    async def _call(self, conn: Any, args: tuple[Any, ...]) -> Any:
        await conn.send_packed_command([pack(args)])
        return await self._reply(conn, args[0])

    async def _reply(self, conn: Any, command: str) -> Any:
        return shape(self.client, command, await conn.read_response())

    async def close(self) -> None:
        if self._hub is not None:
            await self._hub.close()
            self._hub = None
        self._closed = True
        while self._idle:
            await self._idle.pop().disconnect()
        if self.owns_client:  # a client you passed in stays yours to close
            await self.client.aclose()
            for watcher in sentinel.watchers(self.client):  # their connections, too
                await watcher.aclose()


_tasks: set[asyncio.Task[Any]] = set()


def _background(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def client_for(url: str, **options: Any) -> aioredis.Redis:
    """A redis-py asyncio client for ``url``: through the sentinels for
    ``redis+sentinel://``. Its pool blocks, never refuses, when all connections are busy."""
    options = {**tcp_options(url), **options}
    if sentinel.is_sentinel_url(url):
        return sentinel.async_client(url, **options)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=None, **options
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes its pool


def named_client(url: str, name: str) -> aioredis.Redis:
    """A client for ``url`` whose connections are named ``name``, without a read timeout."""
    return client_for(url, client_name=name, socket_timeout=None)


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
        backend = per_loop[url] = new_backend(url)
    return backend


def new_backend(url: str) -> Backend:
    """A backend of its own for ``url``: a ``cluster.ClusterBackend`` (the same methods)
    for a ``redis+cluster://`` URL."""
    from .. import cluster

    if cluster.is_cluster_url(url):
        from .cluster import ClusterBackend

        return cast(Backend, ClusterBackend(url))
    return Backend(url)


async def close_shared() -> None:
    """Close the backends of the running loop."""
    per_loop = _shared.pop(asyncio.get_running_loop(), {})
    for backend in per_loop.values():
        await backend.close()
