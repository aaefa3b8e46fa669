"""Helpers shared by the tests."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

import notifyq
import notifyq.asyncio
from notifyq.asyncio import connection as aconnection
from notifyq.cluster import message_kind


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


async def eventually_async(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """``eventually`` for an async condition held by the server (no event to await)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@contextmanager
def running_async(worker: notifyq.asyncio.Worker) -> Iterator[notifyq.asyncio.Worker]:
    """Run an asyncio worker in a thread with its own event loop for the duration of the
    block, so that one test body (blocking calls) can watch either worker flavour."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def main() -> None:
        task = asyncio.create_task(worker.run())
        started.set()
        try:
            await task
        finally:
            await aconnection.close_shared()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(worker.stop)
        thread.join(timeout=30)
        assert not thread.is_alive(), "worker did not stop"
        loop.close()


class LogCount(logging.Handler):
    """Counts the log records whose message holds ``text``, from any thread."""

    def __init__(self, text: str, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.text, self.count = text, 0
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.text in message:
            self.count += 1
            self.messages.append(message)


@contextmanager
def counting_logs(
    text: str, logger: str = "notifyq", level: int = logging.DEBUG
) -> Iterator[LogCount]:
    """Count what ``logger`` (and its children) logs at ``level`` or above with ``text``
    in the block."""
    handler, log = LogCount(text, level), logging.getLogger(logger)
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def server_of(r: redis.Redis, queue: str) -> redis.Redis:
    """The client of the server that holds ``queue``: ``r`` itself, or on a cluster the
    client of the master that holds the queue's slot (CLIENT LIST, PUBSUB and INFO are per
    node)."""
    if isinstance(r, redis.RedisCluster):
        node = r.get_node_from_key(f"nq:{{{queue}}}:")
        return r.get_redis_connection(node)
    return r


class Subscriber:
    """A test's own pub/sub subscriber on one channel of ``queue``; sharded on a cluster,
    where notifyq publishes with SPUBLISH."""

    def __init__(self, r: redis.Redis, queue: str, channel: str) -> None:
        self.sharded = isinstance(r, redis.RedisCluster)
        self.pubsub = server_of(r, queue).pubsub()  # type: ignore[no-untyped-call]
        if self.sharded:
            self.pubsub.ssubscribe(channel)
        else:
            self.pubsub.subscribe(channel)

    def get(self, timeout: float) -> dict[str, Any] | None:
        """The next message or confirmation (``type`` without the sharded ``s``)."""
        read = self.pubsub.get_sharded_message if self.sharded else self.pubsub.get_message
        message = read(timeout=timeout)
        if message is not None:
            message = {**message, "type": message_kind(str(message["type"]))}
        return message  # type: ignore[no-any-return]

    def close(self) -> None:
        self.pubsub.close()


def channels(r: redis.Redis, queue: str, pattern: str) -> list[Any]:
    """The channels matching ``pattern`` that have subscribers (shard channels on a cluster)."""
    server = server_of(r, queue)
    if isinstance(r, redis.RedisCluster):
        return list(server.execute_command("PUBSUB", "SHARDCHANNELS", pattern))
    return list(server.pubsub_channels(pattern))


def subscribers(r: redis.Redis, queue: str, channel: str) -> int:
    """How many connections subscribe to ``channel`` (shard subscribers on a cluster)."""
    server = server_of(r, queue)
    if isinstance(r, redis.RedisCluster):
        return int(server.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1])
    return int(server.pubsub_numsub(channel)[0][1])


@contextmanager
def spawner(script: pathlib.Path, *head: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``python script *head *args`` processes, each waited for until it prints
    "ready"; any still running at the end are killed, by their PID, and reaped."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        cmd = [sys.executable, str(script), *head, *args]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        return p

    try:
        yield start
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
            if p.stdout:
                p.stdout.close()
