"""Consumption windows, asyncio worker: the same rules as the blocking one."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import notifyq.asyncio as anq
from notifyq.errors import ValidationError

from ..clocks import SimClock
from ..support import counting_logs
from ..sync.test_windows import BAD_WINDOWS

PARIS = ZoneInfo("Europe/Paris")
NIGHT = datetime(2026, 6, 1, 3, 0, tzinfo=PARIS)  # the shop's window is closed
DAYTIME = datetime(2026, 6, 1, 12, 0, tzinfo=PARIS)  # and open
SHOP: dict[str, Any] = {"windows": ["05:00-24:00"], "timezone": "Europe/Paris"}
QUICK: dict[str, Any] = {"lease": 0.6, "backoff": (0.01, 0.05)}  # a tick of 0.2 s


async def echo(payload: Any) -> Any:
    return payload


async def stopped(worker: anq.Worker, task: asyncio.Task[None]) -> None:
    worker.stop()
    await asyncio.wait_for(task, 30)


async def test_a_job_waits_outside_the_window_and_runs_once_it_opens(aqueue: anq.Queue) -> None:
    clock = SimClock(NIGHT)
    job = await aqueue.enqueue({"order": 1})
    worker = anq.Worker(aqueue, echo, clock=clock, **SHOP, **QUICK)
    with counting_logs("outside its window") as closed:
        task = asyncio.create_task(worker.run())
        await clock.reads_after(5)  # the claim loop went round five times...
        assert await job.status() == "queued"  # ...and claimed nothing
        assert closed.messages == [
            f"queue {aqueue.name}: outside its window until 05:00 Europe/Paris (in 2h00m)"
        ]
        clock.set(DAYTIME)
        assert await job.wait(timeout=30) == {"order": 1}
        await stopped(worker, task)
    assert worker.processed == 1


async def test_a_job_running_when_the_window_closes_completes(aqueue: anq.Queue) -> None:
    clock = SimClock(DAYTIME)
    started, release = asyncio.Event(), asyncio.Event()

    async def long(payload: str) -> str:
        started.set()
        await asyncio.wait_for(release.wait(), 30)
        return payload

    worker = anq.Worker(aqueue, long, clock=clock, **SHOP, **QUICK)
    task = asyncio.create_task(worker.run())
    first = await aqueue.enqueue("running at closing time")
    await asyncio.wait_for(started.wait(), 30)
    clock.set(NIGHT)
    await clock.reads_after(2)  # the loop has seen the window close
    second = await aqueue.enqueue("arrives after closing")
    await clock.reads_after(8)  # 1.6 s at least: longer than the 0.6 s lease, so it was renewed
    assert await first.status() == "active"
    release.set()
    assert await first.wait(timeout=30) == "running at closing time"
    assert (await first.info())["attempt"] == 1  # never handed to anyone else
    await clock.reads_after(3)
    assert await second.status() == "queued"
    clock.set(DAYTIME)
    assert await second.wait(timeout=30) == "arrives after closing"
    await stopped(worker, task)


async def test_pause_and_resume_still_hold_inside_the_window(aqueue: anq.Queue) -> None:
    clock = SimClock(DAYTIME)
    await aqueue.pause()
    job = await aqueue.enqueue("paused")
    worker = anq.Worker(aqueue, echo, clock=clock, **SHOP, **QUICK)
    task = asyncio.create_task(worker.run())
    await clock.reads_after(5)
    assert await job.status() == "queued"
    await aqueue.resume()
    assert await job.wait(timeout=30) == "paused"
    await stopped(worker, task)


async def test_a_burst_worker_outside_its_window_stops_at_once(aqueue: anq.Queue) -> None:
    job = await aqueue.enqueue("later")
    clock = SimClock(NIGHT)
    with counting_logs("burst run ends here: its window is closed") as said:
        await anq.Worker(aqueue, echo, clock=clock, **SHOP).run(burst=True)
    assert said.count == 1
    assert await job.status() == "queued"
    clock.set(DAYTIME)
    await anq.Worker(aqueue, echo, clock=clock, **SHOP).run(burst=True)
    assert await job.result() == "later"


async def test_windows_default_to_utc_and_use_the_real_clock(aqueue: anq.Queue) -> None:
    job = await aqueue.enqueue("any time")
    await anq.Worker(aqueue, echo, windows="00:00-24:00").run(burst=True)
    assert await job.result() == "any time"


@pytest.mark.parametrize(
    ("settings", "words"), [c[1:] for c in BAD_WINDOWS], ids=[c[0] for c in BAD_WINDOWS]
)
async def test_a_worker_refuses_bad_windows(
    aqueue: anq.Queue, settings: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValidationError, match=words):
        anq.Worker(aqueue, echo, **settings)
