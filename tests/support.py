"""Helpers shared by the tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

import notifyq


@contextmanager
def running(worker: notifyq.Worker) -> Iterator[notifyq.Worker]:
    """Run a blocking worker in a thread for the duration of the block."""
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "worker did not stop"


def blocked_read(r: redis.Redis, name: str) -> list[dict[str, str]]:
    """The connections named ``name``, once one of them is blocked in XREADGROUP."""

    def blocked() -> list[dict[str, str]]:
        return [c for c in r.client_list() if c["name"] == name and c["cmd"] == "xreadgroup"
                and "b" in c["flags"]]  # fmt: skip

    eventually(lambda: bool(blocked()))
    return blocked()


def eventually(check: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> None:
    """Poll a condition that has no event to await (state in another process or server)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)
