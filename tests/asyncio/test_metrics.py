"""The asyncio worker's metrics endpoint (a thread of its own beside the event loop)."""

from __future__ import annotations

import asyncio
import time
import urllib.error

import pytest

import notifyq.asyncio as anq

from .. import promtext


async def test_a_scrape_counts_the_jobs_and_their_durations(aqueue: anq.Queue) -> None:
    for payload in promtext.KNOWN_PAYLOADS:
        await aqueue.enqueue(payload, max_attempts=2)

    async def handler(payload: object) -> object:
        return promtext.known_handler(payload)

    worker = anq.Worker(aqueue, handler, metrics_port=0, backoff=(0.01, 0.05), concurrency=3)
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 30
        while worker.processed < promtext.KNOWN_ATTEMPTS:
            assert time.monotonic() < deadline, "the jobs did not run"
            await asyncio.sleep(0.01)
        assert worker.metrics_address is not None  # served from run()'s start
        url = promtext.url_of(worker.metrics_address)
        status, body, _ = await asyncio.to_thread(promtext.scrape, url)
        assert status == 200
        promtext.check_known_jobs(body, aqueue.name, concurrency=3)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    with pytest.raises(urllib.error.URLError):  # closed when the worker stopped
        await asyncio.to_thread(promtext.scrape, url)
