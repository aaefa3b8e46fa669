"""``preflight.check`` asks every server that holds queues: each master of a cluster."""

from __future__ import annotations

import re

import redis

from notifyq import connection, preflight


def test_check_asks_each_master(redis_url: str, r: redis.Redis) -> None:
    results = preflight.check(connection.shared_backend(redis_url))
    if isinstance(r, redis.RedisCluster):
        ports = sorted(int(re.findall(r":(\d+)", url)[-1]) for url, _ in results)
        assert ports == sorted(node.port for node in r.get_primaries())
    else:
        assert [url for url, _ in results] == [connection.redact(redis_url)]
    for _, found in results:
        assert [f.topic for f in found] == ["version", "eviction", "persistence", "replication"]
