"""A server at ``maxmemory`` under ``noeviction``: enqueue says so, workers stall safely,
and every job acknowledged before runs once the memory is freed."""

from __future__ import annotations

import asyncio
import pathlib
import threading
from collections.abc import Iterator

import pytest

import notifyq
import notifyq.asyncio as anq
from tests.servers import Node, running_node
from tests.support import counting_logs, eventually

pytestmark = pytest.mark.standalone(reason="it starts a small server of its own")

PAYLOAD = {"note": "x" * 2000}


@pytest.fixture
def small(tmp_path: pathlib.Path) -> Iterator[Node]:
    with running_node(tmp_path / "small", "--maxmemory", "4mb", "--maxmemory-policy",
                      "noeviction") as node:  # fmt: skip
        yield node


def fill(queue: notifyq.Queue) -> list[str]:
    """Enqueue until the server refuses: the ids it acknowledged."""
    ids: list[str] = []
    for _ in range(10_000):  # 4 MB hold about 1,500 of these
        try:
            ids.append(queue.enqueue(PAYLOAD).id)
        except notifyq.ServerFull:
            return ids
    raise AssertionError("the server never filled up")


def test_a_full_server_refuses_enqueue_and_loses_nothing(small: Node) -> None:
    queue = notifyq.Queue("full", small.url)
    ids = fill(queue)
    with pytest.raises(notifyq.ServerFull, match=r"is full \(maxmemory reached\)") as caught:
        queue.enqueue(PAYLOAD, job_id="refused-one")
    assert isinstance(caught.value, notifyq.RedisUnavailable)  # callers' retry paths apply
    assert not small.client().exists("nq:{full}:job:refused-one")  # nothing half written
    assert queue.stats()["pending"] == len(ids)

    # the asyncio API says the same
    async def enqueue() -> None:
        aqueue = anq.Queue("full", small.url)
        try:
            with pytest.raises(notifyq.ServerFull):
                await aqueue.enqueue(PAYLOAD)
        finally:
            await aqueue.close()

    asyncio.run(enqueue())

    # a worker on the full server cannot store results; it must not lose the jobs either
    ran = threading.Event()

    def handle(payload: object, job: notifyq.ActiveJob) -> dict[str, str]:
        ran.set()
        return {"result": "y" * 500}

    worker = notifyq.Worker(queue, handle, lease=1.0, concurrency=2)
    thread = threading.Thread(target=worker.run, daemon=True)
    try:
        with counting_logs("is full (maxmemory reached)", "notifyq.worker") as refusals:
            thread.start()
            assert ran.wait(30), "the worker never ran a job"
            # it tried to store the result (or renew the lease) and was refused
            eventually(lambda: refusals.count > 0, 30)
        assert queue.stats()["totals"].get("completed", 0) == 0
        # memory freed: every acknowledged job completes, none is lost
        small.client().config_set("maxmemory", "0")
        eventually(lambda: queue.stats()["totals"].get("completed", 0) >= len(ids), 120)
    finally:
        worker.stop()
        thread.join(30)
    states = [queue.job(i).status() for i in ids]
    assert set(states) == {"completed"}
    queue.close()
