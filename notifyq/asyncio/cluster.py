"""Redis Cluster for asyncio: the same routing as ``notifyq.cluster``, driven with ``await``.

One ``Backend`` per master; each operation goes to the master of its queue's slot, a
pipeline over several masters is split and its parts sent at once; redirections and lost
nodes make it read the slot map again and repeat (``notifyq.cluster`` explains each rule).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, TypeVar, cast

import redis.asyncio as aioredis

from ..cluster import (
    FAILOVER_TIMEOUT,
    Topology,
    channel_slot,
    group_by_node,
    node_url,
    redirected,
    retryable,
    seed,
    sharded,
    slot_of,
)
from ..connection import wrap
from ..errors import RedisUnavailable
from ..ops import Command, Flow, Op, Pipeline, repeatable

if TYPE_CHECKING:
    from ..keys import QueueKeys
    from .connection import Backend
    from .hub import WaitHub

log = logging.getLogger("notifyq.cluster")

T = TypeVar("T")


class ClusterBackend:
    """The asyncio backend for a Redis Cluster: one ``Backend`` per master, routed by slot."""

    sharded = True

    def __init__(
        self, url: str, *, failover_timeout: float = FAILOVER_TIMEOUT, name: str | None = None
    ) -> None:
        self.url = url
        self.failover_timeout = failover_timeout
        self._name = name
        self._nodes: dict[str, Backend] = {}
        self._topology: Topology | None = None
        self._seeds = [seed(url)]
        self._hubs: dict[int, WaitHub] = {}
        self._client: aioredis.RedisCluster | None = None
        self._closed = False

    # -- the slot map
    async def topology(self) -> Topology:
        if self._topology is None:
            await self.refresh()
        assert self._topology is not None
        return self._topology

    async def refresh(self) -> Topology:
        """Read the slot map again from the first node that answers."""
        known = self._topology.addresses if self._topology else []
        last: Exception | None = None
        for address in dict.fromkeys(self._seeds + known):
            try:
                reply = await self.node(address).run(_slots())
            except Exception as exc:  # that node is down: ask the next
                last = exc
                continue
            self._topology = Topology(reply)
            return self._topology
        raise RedisUnavailable(self.url, f"no cluster node answers: {last}")

    def node(self, address: str) -> Backend:
        from .connection import Backend, named_client

        backend = self._nodes.get(address)
        if backend is None:
            url = node_url(self.url, address)
            if self._name is None:
                backend = Backend(url)
            else:
                backend = Backend(url, named_client(url, self._name), owns_client=True)
            self._nodes[address] = backend
        return backend

    async def master_for(self, slot: int) -> Backend:
        return self.node((await self.topology()).master(slot))

    def dedicated(self, name: str) -> ClusterBackend:
        """The same cluster on connections of its own (``Backend.dedicated``)."""
        return ClusterBackend(self.url, failover_timeout=self.failover_timeout, name=name)

    # -- operations
    async def run(self, flow: Flow[T]) -> T:
        """Drive a flow, as ``Backend.run`` does."""
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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.failover_timeout
        delay = 0.05
        while True:
            try:
                return await self._execute(op)
            except Exception as exc:
                if (
                    not retryable(exc)
                    or not repeatable(op)
                    or self._closed
                    or loop.time() > deadline
                ):
                    raise
                log.warning("cluster: %s; reading the slot map again in %.2fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            try:
                await self.refresh()
            except RedisUnavailable as exc:
                log.warning("cluster: %s", exc)

    async def _execute(self, op: Op) -> Any:
        topology = await self.topology()
        if not isinstance(op, Pipeline):
            slot = slot_of(op)
            address = topology.masters[0] if slot is None else topology.master(slot)
            return await self.node(address).execute(sharded(op))
        groups = group_by_node(op.calls, topology).items()
        parts = await asyncio.gather(
            *(
                self.node(address).execute(
                    Pipeline(
                        [sharded(op.calls[i]) for i in indexes],
                        op.errors_as_replies,
                        op.rerun_after_scripts,
                        op.repeatable,
                    )
                )
                for address, indexes in groups
            )
        )
        replies: list[Any] = [None] * len(op.calls)
        for (_, indexes), part in zip(groups, parts, strict=True):
            for i, reply in zip(indexes, part, strict=True):
                if isinstance(reply, Exception) and redirected(reply):
                    raise reply
                replies[i] = reply
        return replies

    # -- pub/sub
    @property
    def hub(self) -> ClusterHub:
        return ClusterHub(self)

    async def shard_hub(self, slot: int) -> WaitHub:
        from .hub import WaitHub

        shard = (await self.topology()).shard(slot)
        hub = self._hubs.get(shard)
        if hub is None:
            hub = self._hubs[shard] = WaitHub(cast("Backend", Shard(self, slot)))
        return hub

    async def shards(self) -> list[Shard]:
        """One stand-in backend per shard of the cluster (the gateway's fan-outs)."""
        topology = await self.topology()
        return [Shard(self, slot) for slot in topology.shards]

    @property
    def client(self) -> aioredis.RedisCluster:
        """A redis-py asyncio cluster client on the same cluster (``Queue.client``)."""
        if self._client is None:
            self._client = aioredis.RedisCluster.from_url(node_url(self.url, self._seeds[0]))
        return self._client

    async def close(self) -> None:
        self._closed = True
        hubs, nodes = list(self._hubs.values()), list(self._nodes.values())
        client, self._client = self._client, None
        self._hubs, self._nodes = {}, {}
        for hub in hubs:
            await hub.close()
        for node in nodes:
            await node.close()
        if client is not None:
            await client.aclose()


class Shard:
    """What a pub/sub hub needs of a backend, for the shard that holds one slot: its
    connections go to whichever node is that shard's master when they are made."""

    sharded = True

    def __init__(self, cluster: ClusterBackend, slot: int) -> None:
        self.cluster, self.slot = cluster, slot

    @property
    def url(self) -> str:
        return self.cluster.url

    async def run(self, flow: Flow[T]) -> T:
        return await self.cluster.run(flow)

    async def pubsub_connection(self, client_name: str) -> Any:
        try:
            await self.cluster.refresh()  # a (re)connection may follow a failover
        except RedisUnavailable as exc:
            log.warning("cluster: %s", exc)
        master = await self.cluster.master_for(self.slot)
        return await master.pubsub_connection(client_name)


class ClusterHub:
    """``Job.wait()`` on a cluster: the wait goes to the hub of the job's shard."""

    def __init__(self, cluster: ClusterBackend) -> None:
        self.cluster = cluster

    async def wait(self, keys: QueueKeys, job_id: str, timeout: float | None) -> object:
        hub = await self.cluster.shard_hub(channel_slot(keys.done_channel(job_id)))
        return await hub.wait(keys, job_id, timeout)


def _slots() -> Flow[Any]:
    return (yield Command("CLUSTER", "SLOTS"))
