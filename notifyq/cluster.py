"""Redis Cluster: which node holds a queue, and the blocking backend that routes to it.

Every key and channel of queue ``q`` carries the hash tag ``{q}`` (docs/key-schema.md), so
a queue lives in one slot, on one master, and every script and pipeline of one queue runs
there unchanged. A cluster is named by a URL with the scheme ``redis+cluster://`` (or
``rediss+cluster://`` for TLS) and the address of any one node; the rest of the cluster is
read from it with ``CLUSTER SLOTS``.

``ClusterBackend`` keeps a ``connection.Backend`` per master and sends each operation to
the master of its slot; a pipeline that spans queues on several masters is split per master
and its replies put back in order. A redirection (``MOVED``, ``ASK``), ``CLUSTERDOWN``,
``TRYAGAIN`` or a lost node makes it read the slot map again and repeat the operation,
for up to ``failover_timeout`` seconds (every operation is safe to repeat:
docs/guarantees.md). Scripts run in their sharded flavour (``SPUBLISH``) and waits
subscribe with ``SSUBSCRIBE`` on the master of the job's queue (one wait hub per shard).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, ResponseError, TryAgainError

from .connection import wrap
from .errors import RedisUnavailable, ValidationError
from .ops import Command, Flow, Op, Pipeline, ScriptCall, repeatable

if TYPE_CHECKING:
    from .connection import Backend
    from .hub import WaitHub
    from .keys import QueueKeys

log = logging.getLogger("notifyq.cluster")

T = TypeVar("T")

SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
#: Seconds an operation is repeated while the cluster fails over or moves slots.
FAILOVER_TIMEOUT = 20.0
#: Error replies that mean "ask the cluster where the slot is now, then repeat" (redis-py
#: parses some of them into their own classes, whose text lacks the first word).
REDIRECTS = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")
REDIRECT_ERRORS = (AskError, TryAgainError, ClusterDownError)  # MovedError is an AskError

# commands whose keys are not just the first argument
_KEYLESS = frozenset({"PING", "TIME", "INFO", "CLIENT", "SCRIPT", "CLUSTER", "ECHO", "PUBSUB"})
_ALL_KEYS = frozenset({"DEL", "EXISTS", "UNLINK", "MGET", "TOUCH"})
_BLOCKING_POPS = frozenset({"BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"})
_SUBCOMMANDS = frozenset({"XINFO", "XGROUP", "OBJECT", "MEMORY"})  # the key comes second


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in SCHEMES


def node_url(url: str, address: str) -> str:
    """The URL of one node (``host:port``): the cluster URL's scheme, user, password and
    TLS parameters, with that address and database 0 (a cluster has no other)."""
    parts = urlsplit(url)
    scheme = SCHEMES.get(parts.scheme, parts.scheme)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((scheme, userinfo + address, "/0", parts.query, ""))


def seed(url: str) -> str:
    """The ``host:port`` a cluster URL names."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1]


def keys_of(call: Command | ScriptCall) -> list[str]:
    """The keys an operation touches, as the cluster routes it."""
    if isinstance(call, ScriptCall):
        return list(call.keys)
    name = str(call.args[0]).upper()
    rest = [a.decode() if isinstance(a, bytes) else str(a) for a in call.args[1:]]
    if name in _KEYLESS or not rest:
        return []
    if name in _ALL_KEYS:
        return rest
    if name in _BLOCKING_POPS:
        return rest[:-1]
    if name in _SUBCOMMANDS:
        return rest[1:2]
    if name in ("XREAD", "XREADGROUP"):
        upper = [a.upper() for a in rest]
        streams = rest[upper.index("STREAMS") + 1 :]
        return streams[: len(streams) // 2]
    return rest[:1]


def slot_of(call: Command | ScriptCall) -> int | None:
    """The one slot an operation touches; None for a keyless command."""
    slots = {key_slot(k.encode()) for k in keys_of(call)}
    if len(slots) > 1:
        raise ValidationError(
            f"{call.args[0] if isinstance(call, Command) else call.script.name}: one command "
            "touches several queues, which a Redis Cluster holds in different slots; use one "
            "queue per worker or listener there (docs/scaling.md)"
        )
    return slots.pop() if slots else None


def channel_slot(channel: str) -> int:
    return int(key_slot(channel.encode()))


def subscribe_commands(verb: str, channels: Iterable[str], sharded: bool) -> list[tuple[str, ...]]:
    """SUBSCRIBE/UNSUBSCRIBE commands for ``channels``. Sharded ones go one slot per
    command (SSUBSCRIBE refuses channels of several slots)."""
    channels = list(channels)
    if not channels:
        return []
    if not sharded:
        return [(verb, *channels)]
    by_slot: dict[int, list[str]] = {}
    for channel in channels:
        by_slot.setdefault(channel_slot(channel), []).append(channel)
    return [(f"S{verb}", *group) for group in by_slot.values()]


def message_kind(kind: str) -> str:
    """A pub/sub reply's kind with the sharded ``s`` taken off: ``smessage`` → ``message``."""
    return kind[1:] if kind in ("smessage", "ssubscribe", "sunsubscribe") else kind


def redirected(exc: BaseException) -> bool:
    return isinstance(exc, REDIRECT_ERRORS) or (
        isinstance(exc, ResponseError) and str(exc).startswith(REDIRECTS)
    )


def retryable(exc: BaseException) -> bool:
    """An error the cluster recovers from by itself: a failover or a slot on the move."""
    return redirected(exc) or isinstance(
        exc, RedisUnavailable | redis.ConnectionError | redis.TimeoutError | OSError
    )


class Topology:
    """Slot → master (``host:port``), read from a ``CLUSTER SLOTS`` reply."""

    def __init__(self, reply: Sequence[Any]) -> None:
        self._ranges: list[tuple[int, int, str]] = []
        self.addresses: list[str] = []  # masters first, then replicas: places to ask again
        for entry in reply:
            start, end, master = int(entry[0]), int(entry[1]), entry[2]
            address = _address(master)
            self._ranges.append((start, end, address))
            for node in entry[2:]:
                if (a := _address(node)) not in self.addresses:
                    self.addresses.append(a)
        self._ranges.sort()
        if not self._ranges:
            raise RedisUnavailable("(cluster)", "the cluster has no slots assigned")

    def _range(self, slot: int) -> tuple[int, int, str]:
        for r in self._ranges:
            if r[0] <= slot <= r[1]:
                return r
        raise RedisUnavailable("(cluster)", f"no node serves slot {slot}")

    def master(self, slot: int) -> str:
        return self._range(slot)[2]

    def shard(self, slot: int) -> int:
        """A name for the shard holding ``slot``: the first slot of its range."""
        return self._range(slot)[0]

    @property
    def shards(self) -> list[int]:
        """Every shard's name (``shard``)."""
        return [r[0] for r in self._ranges]

    @property
    def masters(self) -> list[str]:
        return sorted({r[2] for r in self._ranges})


def _address(node: Sequence[Any]) -> str:
    host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
    return f"{host or '127.0.0.1'}:{int(node[1])}"


def group_by_node(
    calls: Sequence[Command | ScriptCall], topology: Topology
) -> dict[str, list[int]]:
    """Which calls of a pipeline go to which master (indexes, in order). A keyless command
    goes with the call before it, on the same connection: ``WAIT`` after an enqueue counts
    the replicas that hold that enqueue."""
    groups: dict[str, list[int]] = {}
    address = topology.masters[0]
    for i, call in enumerate(calls):
        slot = slot_of(call)
        if slot is not None:
            address = topology.master(slot)
        groups.setdefault(address, []).append(i)
    return groups


def sharded(call: Command | ScriptCall) -> Command | ScriptCall:
    """A script call in its cluster flavour (SPUBLISH)."""
    if isinstance(call, ScriptCall) and call.script.sharded is not None:
        return replace(call, script=call.script.sharded)
    return call


class ClusterBackend:
    """The blocking backend for a Redis Cluster: one ``Backend`` per master, routed by slot."""

    sharded = True

    def __init__(
        self, url: str, *, failover_timeout: float = FAILOVER_TIMEOUT, name: str | None = None
    ) -> None:
        self.url = url
        self.failover_timeout = failover_timeout
        self._name = name  # CLIENT SETNAME, and no read timeout: see dedicated()
        self._nodes: dict[str, Backend] = {}
        self._topology: Topology | None = None
        self._seeds = [seed(url)]
        self._lock = threading.Lock()
        self._hubs: dict[int, WaitHub] = {}
        self._client: redis.RedisCluster | None = None
        self._closed = False

    # -- the slot map
    def topology(self) -> Topology:
        if self._topology is None:
            self.refresh()
        assert self._topology is not None
        return self._topology

    def refresh(self) -> Topology:
        """Read the slot map again from the first node that answers."""
        known = self._topology.addresses if self._topology else []
        seeds = list(dict.fromkeys(self._seeds + known))
        last: Exception | None = None
        for address in seeds:
            try:
                reply = self.node(address).run(_slots())
            except Exception as exc:  # that node is down: ask the next
                last = exc
                continue
            topology = Topology(reply)
            with self._lock:
                self._topology = topology
            return topology
        raise RedisUnavailable(self.url, f"no cluster node answers: {last}")

    def node(self, address: str) -> Backend:
        from .connection import Backend, named_client

        with self._lock:
            backend = self._nodes.get(address)
            if backend is None:
                url = node_url(self.url, address)
                if self._name is None:
                    backend = Backend(url)
                else:
                    backend = Backend(url, named_client(url, self._name), owns_client=True)
                self._nodes[address] = backend
            return backend

    def dedicated(self, name: str) -> ClusterBackend:
        """The same cluster on connections of its own, named ``name``, without a read
        timeout (``Backend.dedicated``)."""
        return ClusterBackend(self.url, failover_timeout=self.failover_timeout, name=name)

    def master_for(self, slot: int) -> Backend:
        return self.node(self.topology().master(slot))

    # -- operations
    def run(self, flow: Flow[T]) -> T:
        """Drive a flow, as ``Backend.run`` does."""
        try:
            op = next(flow)
            while True:
                op = flow.send(self.execute(op))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except Exception as exc:
            err = wrap(exc, self.url)
            if err is exc:
                raise
            raise err from exc

    def execute(self, op: Op) -> Any:
        deadline = time.monotonic() + self.failover_timeout
        delay = 0.05
        while True:
            try:
                return self._execute(op)
            except Exception as exc:
                if (
                    not retryable(exc)
                    or not repeatable(op)
                    or self._closed
                    or time.monotonic() > deadline
                ):
                    raise
                log.warning("cluster: %s; reading the slot map again in %.2fs", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            try:
                self.refresh()
            except RedisUnavailable as exc:
                log.warning("cluster: %s", exc)

    def _execute(self, op: Op) -> Any:
        topology = self.topology()
        if not isinstance(op, Pipeline):
            slot = slot_of(op)
            address = topology.masters[0] if slot is None else topology.master(slot)
            return self.node(address).execute(sharded(op))
        replies: list[Any] = [None] * len(op.calls)
        for address, indexes in group_by_node(op.calls, topology).items():
            calls = [sharded(op.calls[i]) for i in indexes]
            part = Pipeline(calls, op.errors_as_replies, op.rerun_after_scripts, op.repeatable)
            for i, reply in zip(indexes, self.node(address).execute(part), strict=True):
                if isinstance(reply, Exception) and redirected(reply):
                    raise reply
                replies[i] = reply
        return replies

    # -- pub/sub
    @property
    def hub(self) -> ClusterHub:
        return ClusterHub(self)

    def shard_hub(self, slot: int) -> WaitHub:
        from .hub import WaitHub

        shard = self.topology().shard(slot)
        with self._lock:
            hub = self._hubs.get(shard)
            if hub is None:
                hub = self._hubs[shard] = WaitHub(cast("Backend", Shard(self, slot)))
            return hub

    @property
    def client(self) -> redis.RedisCluster:
        """A redis-py cluster client on the same cluster (``Queue.client``)."""
        with self._lock:
            if self._client is None:
                self._client = redis.RedisCluster.from_url(node_url(self.url, self._seeds[0]))
            return self._client

    def close(self) -> None:
        self._closed = True
        with self._lock:
            hubs, nodes, client = (
                list(self._hubs.values()),
                list(self._nodes.values()),
                self._client,
            )
            self._hubs, self._nodes, self._client = {}, {}, None
        for hub in hubs:
            hub.close()
        for node in nodes:
            node.close()
        if client is not None:
            client.close()


class Shard:
    """What a wait hub needs of a backend, for the shard that holds one slot: the
    connections go to whichever node is that shard's master when they are made."""

    sharded = True

    def __init__(self, cluster: ClusterBackend, slot: int) -> None:
        self.cluster, self.slot = cluster, slot

    @property
    def url(self) -> str:
        return self.cluster.master_for(self.slot).url

    def run(self, flow: Flow[T]) -> T:
        return self.cluster.run(flow)

    def pubsub_connection(self, client_name: str) -> Any:
        try:
            self.cluster.refresh()  # a (re)connection may follow a failover
        except RedisUnavailable as exc:
            log.warning("cluster: %s", exc)
        return self.cluster.master_for(self.slot).pubsub_connection(client_name)


class ClusterHub:
    """``Job.wait()`` on a cluster: the wait goes to the hub of the job's shard."""

    def __init__(self, cluster: ClusterBackend) -> None:
        self.cluster = cluster

    def wait(self, keys: QueueKeys, job_id: str, timeout: float) -> object:
        slot = channel_slot(keys.done_channel(job_id))
        return self.cluster.shard_hub(slot).wait(keys, job_id, timeout)


def _slots() -> Flow[Any]:
    return (yield Command("CLUSTER", "SLOTS"))
