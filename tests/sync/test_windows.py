"""Consumption windows, blocking worker: outside its windows it claims nothing, inside it
works; running jobs finish; pause/resume still hold; bad settings are refused."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import notifyq
from notifyq import Queue
from notifyq.errors import ValidationError

from ..clocks import SimClock
from ..support import counting_logs, running

PARIS = ZoneInfo("Europe/Paris")
NIGHT = datetime(2026, 6, 1, 3, 0, tzinfo=PARIS)  # the shop's window is closed
DAYTIME = datetime(2026, 6, 1, 12, 0, tzinfo=PARIS)  # and open
SHOP: dict[str, Any] = {"windows": ["05:00-24:00"], "timezone": "Europe/Paris"}
QUICK: dict[str, Any] = {"lease": 0.6, "backoff": (0.01, 0.05)}  # a tick of 0.2 s


def test_a_job_waits_outside_the_window_and_runs_once_it_opens(queue: Queue) -> None:
    clock = SimClock(NIGHT)
    job = queue.enqueue({"order": 1})
    worker = notifyq.Worker(queue, lambda p: p["order"], clock=clock, **SHOP, **QUICK)
    with counting_logs("outside its window") as closed, running(worker):
        clock.wait_reads(5)  # the claim loop went round five times...
        assert job.status() == "queued"  # ...and claimed nothing
        assert closed.messages == [
            f"queue {queue.name}: outside its window until 05:00 Europe/Paris (in 2h00m)"
        ]
        clock.set(DAYTIME)
        assert job.wait(timeout=30) == 1
    assert worker.processed == 1


def test_a_job_running_when_the_window_closes_completes(queue: Queue) -> None:
    clock = SimClock(DAYTIME)
    started, release = threading.Event(), threading.Event()

    def long(payload: str) -> str:
        started.set()
        assert release.wait(30)
        return payload

    worker = notifyq.Worker(queue, long, clock=clock, **SHOP, **QUICK)
    with running(worker):
        first = queue.enqueue("running at closing time")
        assert started.wait(30)
        clock.set(NIGHT)
        clock.wait_reads(2)  # the loop has seen the window close
        second = queue.enqueue("arrives after closing")
        clock.wait_reads(8)  # 1.6 s at least: longer than the 0.6 s lease, so it was renewed
        assert first.status() == "active"
        release.set()
        assert first.wait(timeout=30) == "running at closing time"
        assert first.info()["attempt"] == 1  # never handed to anyone else
        clock.wait_reads(3)
        assert second.status() == "queued"
        clock.set(DAYTIME)
        assert second.wait(timeout=30) == "arrives after closing"


def test_pause_and_resume_still_hold_inside_the_window(queue: Queue) -> None:
    clock = SimClock(DAYTIME)
    worker = notifyq.Worker(queue, lambda p: p, clock=clock, **SHOP, **QUICK)
    queue.pause()
    job = queue.enqueue("paused")
    with running(worker):
        clock.wait_reads(5)
        assert job.status() == "queued"
        queue.resume()
        assert job.wait(timeout=30) == "paused"


def test_a_burst_worker_outside_its_window_stops_at_once(queue: Queue) -> None:
    job = queue.enqueue("later")
    clock = SimClock(NIGHT)
    with counting_logs("burst run ends here: its window is closed") as said:
        notifyq.Worker(queue, lambda p: p, clock=clock, **SHOP).run(burst=True)
    assert said.count == 1
    assert job.status() == "queued"
    clock.set(DAYTIME)
    notifyq.Worker(queue, lambda p: p, clock=clock, **SHOP).run(burst=True)
    assert job.result() == "later"


def test_windows_default_to_utc_and_use_the_real_clock(queue: Queue) -> None:
    job = queue.enqueue("any time")
    notifyq.Worker(queue, lambda p: p, windows="00:00-24:00").run(burst=True)
    assert job.result() == "any time"


BAD_WINDOWS: list[tuple[str, dict[str, Any], str]] = [
    ("hour-25", {"windows": ["25:00-26:00"]}, "25:00 is not a time of day"),
    ("no-length", {"windows": "05:00-05:00"}, "starts and ends at 05:00"),
    ("garbage", {"windows": ["shop hours"]}, "invalid window 'shop hours'"),
    ("empty", {"windows": []}, "at least one range"),
    ("zone", {"windows": "05:00-24:00", "timezone": "Europe/Atlantis"}, "unknown time zone"),
    ("zone-only", {"timezone": "Europe/Paris"}, "timezone is used only with windows"),
    ("clock", {"windows": "05:00-24:00", "clock": "now"}, "clock must be a callable"),
]


@pytest.mark.parametrize(
    ("settings", "words"), [c[1:] for c in BAD_WINDOWS], ids=[c[0] for c in BAD_WINDOWS]
)
def test_a_worker_refuses_bad_windows(queue: Queue, settings: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        notifyq.Worker(queue, lambda p: p, **settings)
