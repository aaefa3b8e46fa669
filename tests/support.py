"""Helpers shared by the tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

import notifyq
from notifyq.cluster import message_kind


@contextmanager
def running(worker: notifyq.Worker) -> Iterator[notifyq.Worker]:
    """Run a blocking worker in a thread for the duration of the block."""
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "worker did not stop"


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition that has no event to await (state in another process or server)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def server_of(r: redis.Redis, queue: str) -> redis.Redis:
    """The client of the server that holds ``queue``: ``r`` itself, or on a cluster the
    client of the master that holds the queue's slot (CLIENT LIST, PUBSUB and INFO are per
    node)."""
    if isinstance(r, redis.RedisCluster):
        node = r.get_node_from_key(f"nq:{{{queue}}}:")
        return r.get_redis_connection(node)  # type: ignore[no-any-return]
    return r


class Subscriber:
    """A test's own pub/sub subscriber on one channel of ``queue``; sharded on a cluster,
    where notifyq publishes with SPUBLISH."""

    def __init__(self, r: redis.Redis, queue: str, channel: str) -> None:
        self.sharded = isinstance(r, redis.RedisCluster)
        self.pubsub = server_of(r, queue).pubsub()
        if self.sharded:
            self.pubsub.ssubscribe(channel)
        else:
            self.pubsub.subscribe(channel)

    def get(self, timeout: float) -> dict[str, Any] | None:
        """The next message or confirmation (``type`` without the sharded ``s``)."""
        read = self.pubsub.get_sharded_message if self.sharded else self.pubsub.get_message
        message = read(timeout=timeout)
        if message is not None:
            message = {**message, "type": message_kind(str(message["type"]))}
        return message  # type: ignore[no-any-return]

    def close(self) -> None:
        self.pubsub.close()


def channels(r: redis.Redis, queue: str, pattern: str) -> list[bytes]:
    """The channels matching ``pattern`` that have subscribers (shard channels on a cluster)."""
    server = server_of(r, queue)
    if isinstance(r, redis.RedisCluster):
        return list(server.execute_command("PUBSUB", "SHARDCHANNELS", pattern))
    return list(server.pubsub_channels(pattern))


def subscribers(r: redis.Redis, queue: str, channel: str) -> int:
    """How many connections subscribe to ``channel`` (shard subscribers on a cluster)."""
    server = server_of(r, queue)
    if isinstance(r, redis.RedisCluster):
        return int(server.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1])
    return int(server.pubsub_numsub(channel)[0][1])
