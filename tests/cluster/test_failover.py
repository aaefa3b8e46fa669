"""Failover: a master of a real cluster is SIGKILLed while jobs flow; its replica is promoted
and the run completes. With ``Queue(replicas=1)`` (WAIT) no acknowledged job is lost."""

from __future__ import annotations

import contextlib
import pathlib
import threading
import time
from collections.abc import Iterator

import pytest
from redis.crc import key_slot

import notifyq
from notifyq import connection
from notifyq.errors import NotReplicated, RedisUnavailable

from ..servers import Cluster, Node, running_cluster, wait_until
from ..support import running

JOBS = 300
KILL_AT = 100  # acknowledged enqueues before the master is killed


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, masters=3, replicas=1) as c:
        yield c
    connection.close_shared()


def master_of(cluster: Cluster, queue: str) -> Node:
    slot = key_slot(f"{{{queue}}}".encode())
    for node in cluster.masters:
        ranges = node.client().execute_command("CLUSTER", "SLOTS")
        for start, end, master, *_ in ranges:
            if start <= slot <= end and int(master[1]) == node.port:
                return node
    raise AssertionError(f"no master holds slot {slot}")


def produce(queue: notifyq.Queue, acked: list[str], killed: threading.Event) -> None:
    """Enqueue JOBS jobs, each with an idempotency key, retrying until acknowledged."""
    for i in range(JOBS):
        deadline = time.monotonic() + 60
        while True:
            try:
                acked.append(queue.enqueue({"i": i}, idempotency_key=f"k{i}").id)
                break
            except (NotReplicated, RedisUnavailable):
                assert time.monotonic() < deadline, f"job {i} never acknowledged"
                killed.wait(0.1)  # a failover is under way: try again


@pytest.mark.parametrize("replicas", [1, 0], ids=["wait", "no-wait"])
def test_master_killed_mid_run_replica_takes_over(
    cluster: Cluster, replicas: int, record_property: pytest.RecordProperty
) -> None:
    url = cluster.url.replace("redis://", "redis+cluster://")
    name = f"failover-{replicas}"
    queue = notifyq.Queue(name, url, replicas=replicas, replica_timeout=2)
    victim = master_of(cluster, name)
    acked: list[str] = []
    killed = threading.Event()
    done: dict[str, object] = {}
    worker = notifyq.Worker(queue, lambda p: p["i"], lease=1.0, concurrency=4)
    with running(worker):
        producer = threading.Thread(target=produce, args=(queue, acked, killed))
        producer.start()
        wait_until(lambda: len(acked) >= KILL_AT, "the first jobs acknowledged")
        victim.kill()
        killed.set()
        producer.join(timeout=120)
        assert not producer.is_alive()
        promoted = [r for r in cluster.replicas if r.role() == "master"]
        assert len(promoted) == 1  # the dead master's replica took over its slots
        for job_id in acked:
            with contextlib.suppress(notifyq.JobNotFound):  # lost with the master: counted below
                done[job_id] = queue.job(job_id).wait(timeout=30)
    lost = [j for j in acked if j not in done]
    record_property("acknowledged", len(acked))
    record_property("lost", len(lost))
    print(f"replicas={replicas}: {len(acked)} acknowledged, {len(lost)} lost in the failover")
    assert len(set(acked)) == JOBS  # one job per key, however often an enqueue was retried
    assert sorted(v for v in done.values()) == sorted(
        set(done.values())
    )  # none ran twice to completion
    if replicas:
        assert lost == []  # WAIT: an acknowledged job is on the replica that took over
