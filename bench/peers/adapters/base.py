"""The interface every adapter implements, and what the adapters share.

An adapter module defines ``Peer``, a subclass of ``Adapter`` below, with an ``about``
(how the library is set up, for the report) and these methods. Each may be a plain method
or a coroutine, whichever the library's own API is; the harness awaits what needs it.

    setup() / close()               connect; disconnect
    enqueue(i) -> handle            the library's normal single enqueue of ``payload(i)``
    fill(n) -> [handle]             n jobs before a drain, the fastest documented way
    completed(handles) -> int       how many of them have a stored result now (cheap)
    result(handle) -> value | None  the stored result, through the library, without waiting
    wait(handle, timeout) -> value  the library's recommended wait for one result;
                                    raises ``WaitTimeout`` when ``timeout`` runs out
    worker_command() -> argv        how the worker process is started (its CLI, or
                                    ``harness_worker(name)`` for a library that has none)

``enqueue_many(n)`` exists only where a library's batch call is reported as its own row.
The harness runs worker commands in ``bench/peers`` with that directory on ``PYTHONPATH``,
and every process finds the server in ``PEERS_BENCH_URL``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import redis

URL_ENV = "PEERS_BENCH_URL"
QUEUE = "bench"  # every library's queue name, where it takes one
PEERS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WaitTimeout(Exception):
    """A wait for one result ran out of time (each adapter maps its library's error)."""


def url() -> str:
    return os.environ[URL_ENV]


def payload(i: int) -> dict[str, int]:
    return {"order_id": i}


def expected(i: int) -> dict[str, Any]:
    """What every handler returns for ``payload(i)``."""
    return {"order_id": i, "ok": True}


def handle(order: dict[str, Any]) -> dict[str, Any]:
    """The handler body the adapters' handlers share."""
    return {"order_id": order["order_id"], "ok": True}


def console_script(name: str) -> str:
    """A command installed in this environment (the worker CLIs live beside python)."""
    return os.path.join(os.path.dirname(sys.executable), name)


def harness_worker(peer: str) -> list[str]:
    """The worker command of a library without a worker CLI: ``run_worker()`` of its module."""
    return [sys.executable, "-m", "adapters.harness", "worker", peer]


async def until_stopped() -> None:
    """Return on SIGTERM or SIGINT (what the harness sends a worker to stop it)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@dataclass(frozen=True)
class About:
    """How a library is set up in this benchmark; printed with its numbers."""

    name: str
    package: str  # the distribution whose version is reported
    concurrency: str  # the worker's concurrency as run (the library's default)
    wait: str  # how W3 waits for a result
    worker: str  # how the worker is started
    fill: str  # how W2's jobs are enqueued before the worker starts
    keeps: str  # what stays in Redis once a job has finished (its defaults)
    job_keys: tuple[str, ...] = ()  # globs of keys written once per job (memory breakdown)
    notes: tuple[str, ...] = field(default_factory=tuple)


class Adapter:
    about: ClassVar[About]

    def __init__(self) -> None:
        # a plain client for measuring (progress counts, MEMORY USAGE), not the library's
        self.r = redis.Redis.from_url(url())

    def setup(self) -> Any:
        return None

    def close(self) -> Any:
        return None

    def worker_command(self) -> list[str]:
        raise NotImplementedError


class KeyProgress:
    """How many of ``keys`` exist. Jobs finish in about the order they were enqueued, so
    each call checks the next chunk with one EXISTS and moves past the chunks that are
    complete: a poll costs one or two round trips, not one per job."""

    def __init__(self, client: redis.Redis, keys: Sequence[str], chunk: int = 500) -> None:
        self.client, self.keys, self.chunk = client, list(keys), chunk
        self.done = 0

    def __call__(self) -> int:
        while self.done < len(self.keys):
            part = self.keys[self.done : self.done + self.chunk]
            found = int(self.client.exists(*part))
            if found < len(part):
                return self.done + found
            self.done += len(part)
        return self.done
