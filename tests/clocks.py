"""A wall clock that tests set by hand, for workers with consumption windows."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime


class SimClock:
    """Seconds since the epoch, as ``time.time`` gives them, at the instant last ``set``.

    It counts its reads: a worker with windows reads it once each time round its claim
    loop, so a test can wait until the loop has gone round, not sleep and hope.
    """

    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()
        self.reads = 0
        self._read = threading.Condition()

    def __call__(self) -> float:
        with self._read:
            self.reads += 1
            self._read.notify_all()
            return self.now

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()

    def wait_reads(self, more: int, timeout: float = 30.0) -> None:
        """Block until the clock has been read ``more`` times from now."""
        with self._read:
            target = self.reads + more
            assert self._read.wait_for(lambda: self.reads >= target, timeout), (
                f"the clock was read {self.reads - target + more} of {more} times"
            )

    async def reads_after(self, more: int, timeout: float = 30.0) -> None:
        """``wait_reads`` for a worker on the running event loop (polled: the loop must
        go on running the worker meanwhile)."""
        target, deadline = self.reads + more, time.monotonic() + timeout
        while self.reads < target:
            assert time.monotonic() < deadline, f"the clock was not read {more} times"
            await asyncio.sleep(0.01)
