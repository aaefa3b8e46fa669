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


def fill(queue: notifyq.Queue) -> tuple[list[str], str, notifyq.ServerFull]:
    """Enqueue until the server refuses: the ids it acknowledged, the id it refused and its
    error. (Memory moves a little around the limit, so the enqueue after a refusal may be
    taken: each refusal is checked where it happens.)"""
    ids: list[str] = []
    for i in range(10_000):  # 4 MB hold about 1,500 of these
        job_id = f"j{i}"
        try:
            queue.enqueue(PAYLOAD, job_id=job_id)
        except notifyq.ServerFull as exc:
            return ids, job_id, exc
        ids.append(job_id)
    raise AssertionError("the server never filled up")


def test_a_full_server_refuses_enqueue_and_loses_nothing(small: Node) -> None:
    queue = notifyq.Queue("full", small.url)
    ids, refused, error = fill(queue)
    assert "is full (maxmemory reached)" in str(error)
    assert isinstance(error, notifyq.RedisUnavailable)  # callers' retry paths apply
    assert not small.client().exists(queue.keys.job(refused))  # nothing half written

    # the asyncio API says the same
    async def enqueue() -> None:
        aqueue = anq.Queue("full", small.url)
        try:
            for i in range(1_000):
                try:
                    await aqueue.enqueue(PAYLOAD, job_id=f"a{i}")
                except notifyq.ServerFull:
                    assert not small.client().exists(queue.keys.job(f"a{i}"))
                    return
                ids.append(f"a{i}")
            raise AssertionError("the asyncio enqueue was never refused")
        finally:
            await aqueue.close()

    asyncio.run(enqueue())
    assert queue.stats()["pending"] == len(ids)

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
        # memory freed: every acknowledged job completes, none is lost
        small.client().config_set("maxmemory", "0")
        eventually(lambda: queue.stats()["totals"].get("completed", 0) >= len(ids), 120)
    finally:
        worker.stop()
        thread.join(30)
    states = [queue.job(i).status() for i in ids]
    assert set(states) == {"completed"}
    assert queue.stats()["totals"]["completed"] == len(ids)  # each once
    queue.close()
