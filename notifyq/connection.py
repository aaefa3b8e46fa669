"""Blocking I/O: open clients, run operation flows, wrap redis-py errors.

This is the only module of the blocking API that talks to Redis (with ``hub.py`` for
pub/sub); everything it runs is built by ``ops.py``.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import hiredis
import redis
from redis.connection import parse_url
from redis.exceptions import NoPermissionError, NoScriptError, ResponseError

from . import sentinel
from .errors import (
    AccessDenied,
    NotifyQError,
    RedisUnavailable,
    ValidationError,
    reply_error,
)
from .ops import Command, Flow, Op, Pipeline, ScriptCall, repeatable

if TYPE_CHECKING:
    from .hub import WaitHub

T = TypeVar("T")

#: Errors that mean "the server cannot be reached right now".
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, OSError)
#: Idle connections a backend keeps open.
MAX_IDLE = 64


def resolve_url(url: str | None) -> str:
    """The URL to use: the argument, else ``NOTIFYQ_URL``, else the embedded server.
    ``ValidationError`` if it is not a Redis URL."""
    if url:
        return check_url(url)
    env = os.environ.get("NOTIFYQ_URL")
    if env:
        return check_url(env, "NOTIFYQ_URL")
    from . import embedded

    return embedded.ensure_server()


def cluster_scheme(url: str) -> str:
    """``redis`` or ``rediss`` for a ``redis+cluster://`` or ``rediss+cluster://`` URL, else
    ``""`` (kept here, not in ``cluster``, which imports this module)."""
    return {"redis+cluster": "redis", "rediss+cluster": "rediss"}.get(urlsplit(url).scheme, "")


def check_url(url: object, what: str = "the Redis URL") -> str:
    """``url`` if redis-py can connect with it; else ``ValidationError`` saying why (redis-py
    would raise a bare ``ValueError``, or fail only at the first command)."""
    if not isinstance(url, str):
        raise ValidationError(f"{what} must be a string, not {type(url).__name__}")
    try:
        if sentinel.is_sentinel_url(url):
            sentinel.parse(url)  # a ValidationError of its own
        elif cluster_scheme(url):  # a node's URL, as the cluster backend makes them
            parse_url(urlunsplit(urlsplit(url)._replace(scheme=cluster_scheme(url))))
        else:
            parse_url(url)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{what} {redact(url)!r} is not a Redis URL: {exc}") from None
    return url


def redact(url: str) -> str:
    """The URL without its passwords, for messages and logs: the one after the user name,
    and any query parameter redis-py takes a password from (``password=``,
    ``ssl_password=``, the key file's passphrase)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a URL that cannot be parsed)"  # it may hold a password: do not show it
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        parts = parts._replace(netloc=user + netloc)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any("password" in name for name, _ in query):
        hidden = [(n, "***" if "password" in n else v) for n, v in query]
        parts = parts._replace(query=urlencode(hidden, safe="/*:,"))
    return urlunsplit(parts)


def tcp_options(url: str) -> dict[str, object]:
    """Keepalive and health checks for TCP URLs (unix sockets take neither)."""
    if urlsplit(url).scheme in ("redis", "rediss", "redis+sentinel", "rediss+sentinel"):
        return {"socket_keepalive": True, "health_check_interval": 30}
    return {}


def client_for(url: str, **options: Any) -> redis.Redis:
    """A redis-py client for ``url``: through the sentinels for ``redis+sentinel://``."""
    options = {**tcp_options(url), **options}
    if sentinel.is_sentinel_url(url):
        return sentinel.client(url, **options)
    return redis.Redis.from_url(url, **options)


def reraise(exc: Exception, url: str, op: Op | None = None) -> NoReturn:
    """Raise the notifyq error for ``exc`` from it, or ``exc`` itself if it has none."""
    err = wrap(exc, url, op)
    if err is exc:
        raise exc
    raise err from exc


def wrap(exc: Exception, url: str, op: Op | None = None) -> Exception:
    """The notifyq error for a redis-py error (to ``raise ... from exc``); ``op`` is what
    was sent, to say what an ACL refusal was about."""
    if isinstance(exc, NotifyQError):  # raised by a flow (AccessDenied is an OSError too)
        return exc
    if isinstance(exc, UNAVAILABLE):
        return RedisUnavailable(redact(url), str(exc) or type(exc).__name__)
    if is_refusal(exc):
        return AccessDenied(redact(url), refused(op, str(exc)), str(exc))
    if isinstance(exc, ResponseError):
        return reply_error(exc, redact(url))
    return exc


#: How servers word an ACL refusal inside a script: Redis 7.0, then Redis 7.2+ and Valkey.
#: (Refusals of a command sent directly are NOPERM replies: ``NoPermissionError``.)
_SCRIPT_REFUSALS = ("The user executing the script can't", "ACL failure in script")
_SCRIPT_LINE = re.compile(r"@user_script:([0-9]+)")


def is_refusal(exc: BaseException) -> bool:
    """Is this reply the server's ACL refusing a command, a key or a channel?"""
    if isinstance(exc, NoPermissionError):
        return True
    return isinstance(exc, ResponseError) and any(m in str(exc) for m in _SCRIPT_REFUSALS)


def refused(op: Op | None, message: str) -> str:
    """What the server refused, in words: the line of the script it stopped at (the server
    names the line, and only Redis 7.2+ and Valkey the command), else what was sent."""
    calls = [] if op is None else list(op.calls) if isinstance(op, Pipeline) else [op]
    line = _SCRIPT_LINE.search(message)
    scripts = {c.script for c in calls if isinstance(c, ScriptCall)}
    script = next((s for s in scripts if s.sha in message), None)
    if script is None and len(scripts) == 1:
        script = scripts.pop()
    if line and script is not None and any(m in message for m in _SCRIPT_REFUSALS):
        lines = script.source.splitlines()
        number = int(line.group(1))
        code = lines[number - 1].strip() if 0 < number <= len(lines) else "?"
        return f"a command of script {script.name}.lua (line {number}: {code})"
    shown = [_describe(c) for c in calls[:3]] + (["..."] if len(calls) > 3 else [])
    return ", ".join(shown) or "a command"


def _describe(call: Command | ScriptCall) -> str:
    if isinstance(call, ScriptCall):
        return " ".join([f"script {call.script.name}.lua", *call.keys[:1]])
    return " ".join(str(a) for a in call.args[:2])


class Backend:
    """One Redis client and one wait hub, shared by every Queue of a process on one URL.

    Commands go straight to connections made with the client's settings, kept in a small
    free list, not through ``client.execute_command``: redis-py 8's per-call machinery
    (pool checkout, retry wrapper, metrics hooks) costs about three times the round trip
    itself on loopback (docs/design-notes.md). The client's reply callbacks still apply.
    """

    sharded = False  # classic pub/sub (a cluster's backend subscribes per shard)

    def __init__(
        self, url: str, client: redis.Redis | None = None, *, owns_client: bool | None = None
    ) -> None:
        self.url = url
        self.owns_client = client is None if owns_client is None else owns_client
        self.client: redis.Redis = client or client_for(url)
        self._hub: WaitHub | None = None
        self._lock = threading.Lock()
        pool = self.client.connection_pool
        self._new_connection = functools.partial(pool.connection_class, **pool.connection_kwargs)
        self._idle: list[Any] = []  # connections not in use (list.pop/append are atomic)
        self._closed = False

    @property
    def hub(self) -> WaitHub:
        with self._lock:
            if self._hub is None:
                from .hub import WaitHub

                self._hub = WaitHub(self)
            return self._hub

    def pubsub_connection(self, client_name: str) -> Any:
        """A new connection for pub/sub (not yet connected): no read timeout, named."""
        pool = self.client.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": None, "health_check_interval": 0}
        return pool.connection_class(**{**kwargs, "client_name": client_name})

    def dedicated(self, name: str) -> Backend:
        """A backend on the same server with connections of its own, named ``name``, without
        a read timeout: for a reader that blocks (a listener)."""
        return Backend(self.url, dedicated_client(self.client, name), owns_client=True)

    def run(self, flow: Flow[T]) -> T:
        """Drive a flow: send each operation it yields, hand it the reply."""
        op: Op | None = None
        try:
            op = next(flow)
            while True:
                op = flow.send(self.execute(op))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except Exception as exc:
            reraise(exc, self.url, op)

    def execute(self, op: Op) -> Any:
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._new_connection()
        try:
            try:
                reply = self._send(conn, op)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                # once more on a new socket, as redis-py does: the server may have closed
                # an idle connection (docs/design-notes.md: what may be sent twice)
                conn.disconnect()
                if not repeatable(op):
                    raise
                reply = self._send(conn, op)
        except BaseException as exc:
            if not isinstance(exc, ResponseError):  # a reply that is an error leaves it clean
                conn.disconnect()
            self._release(conn)
            raise
        self._release(conn)
        return reply

    def _release(self, conn: Any) -> None:
        if self._closed or len(self._idle) >= MAX_IDLE:
            conn.disconnect()
        else:
            self._idle.append(conn)

    def _send(self, conn: Any, op: Op) -> Any:
        if not conn.is_connected:  # connect(), not the send's own: a sentinel-managed
            conn.connect()  # connection asks where the primary is only in connect()
        if isinstance(op, Command | ScriptCall):
            try:
                return self._call(conn, _args(op, sha=True))
            except NoScriptError:
                if isinstance(op, Command):
                    raise
                return self._call(conn, _args(op, sha=False))
        conn.send_packed_command([pack(_args(c, sha=True)) for c in op.calls])
        replies: list[Any] = []
        for call in op.calls:
            try:
                replies.append(self._reply(conn, _args(call, sha=True)[0]))
            except ResponseError as exc:
                replies.append(exc)
        for i in reruns(op, replies):
            replies[i] = self._call(conn, _args(op.calls[i], sha=False))
        return replies

    def _call(self, conn: Any, args: tuple[Any, ...]) -> Any:
        conn.send_packed_command([pack(args)])
        return self._reply(conn, args[0])

    def _reply(self, conn: Any, command: str) -> Any:
        return shape(self.client, command, conn.read_response())

    def close(self) -> None:
        with self._lock:
            if self._hub is not None:
                self._hub.close()
                self._hub = None
        self._closed = True
        while self._idle:
            self._idle.pop().disconnect()
        if self.owns_client:  # a client you passed in stays yours to close
            self.client.close()
            for watcher in sentinel.watchers(self.client):  # their connections, too
                watcher.close()


def pack(args: tuple[Any, ...]) -> bytes:
    """One command in RESP, packed by hiredis (C): for a settle batch of 32 jobs about
    10 µs, where redis.asyncio's own packer takes about 75 µs."""
    return hiredis.pack_command(args)  # type: ignore[no-any-return]


def shape(client: Any, command: str, reply: Any) -> Any:
    """A reply as ``client.execute_command`` would return it (the client's callbacks)."""
    callback = client.response_callbacks.get(command)
    return callback(reply) if callback else reply


def reruns(op: Pipeline, replies: list[Any]) -> Iterator[int]:
    """The pipeline calls to run again, in order: scripts the server did not know (not run:
    safe to run again; they go with EVAL), and with ``op.rerun_after_scripts`` every call
    after the first of them (a ``WAIT`` must follow the write it waits for). Raises the first
    other error, unless the pipeline takes errors as replies."""
    rerunning = False
    for i, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            rerunning = op.rerun_after_scripts
            yield i
        elif rerunning:
            yield i
        elif isinstance(reply, Exception) and not op.errors_as_replies:
            raise reply


def _args(call: Command | ScriptCall, *, sha: bool) -> tuple[Any, ...]:
    if isinstance(call, Command):
        return call.args
    head = ("EVALSHA", call.script.sha) if sha else ("EVAL", call.script.source)
    return (*head, len(call.keys), *call.keys, *call.args)


def named_client(url: str, name: str) -> redis.Redis:
    """A client for ``url`` whose connections are named ``name``, without a read timeout."""
    return client_for(url, client_name=name, socket_timeout=None)


def dedicated_client(client: redis.Redis, name: str) -> redis.Redis:
    """A client on the same server with its own connections, named ``name`` in CLIENT LIST
    and without a read timeout (for blocking reads)."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "client_name": name, "socket_timeout": None}
    own = redis.ConnectionPool(connection_class=pool.connection_class, max_connections=8, **kwargs)
    return redis.Redis(connection_pool=own)


_shared: dict[str, Backend] = {}
_shared_lock = threading.Lock()


def shared_backend(url: str | None) -> Backend:
    """The process-wide backend for ``url`` (so all queues share one hub connection); a
    ``redis+cluster://`` URL gets a ``cluster.ClusterBackend`` (same methods)."""
    resolved = resolve_url(url)
    with _shared_lock:
        backend = _shared.get(resolved)
        if backend is None:
            from . import cluster

            if cluster.is_cluster_url(resolved):  # duck-typed: the same methods as Backend
                backend = cast(Backend, cluster.ClusterBackend(resolved))
            else:
                backend = Backend(resolved)
            _shared[resolved] = backend
        return backend


def close_shared() -> None:
    """Close every shared backend (tests, and processes that fork)."""
    with _shared_lock:
        backends = list(_shared.values())
        _shared.clear()
    for backend in backends:
        backend.close()
