"""Throughput of 8 queues on a Redis Cluster of 1 master against 3 masters.

    python bench/cluster.py [--queues 8] [--jobs 20000] [--runs 3]

For each size the program starts a real cluster on loopback (the embedded Valkey binary,
``tests/servers.py``), loads ``--jobs`` jobs into each of ``--queues`` queues with
``enqueue_many``, then starts one asyncio worker process per queue (``burst``: each exits
when its queue is empty) and times the drain from their start to the last exit. The same
notifyq code runs against both (``redis+cluster://``); only the number of masters the
queues' slots spread over changes. It also reports, per master, how many of the queues it
held and how much CPU its server process used during the drain.

Every number is printed with the machine's core count: on a machine with fewer cores than
worker processes plus masters, the masters compete with the workers for CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import pathlib
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import notifyq.asyncio as anq
from notifyq.asyncio.connection import close_shared
from tests.servers import Cluster, running_cluster


async def handler(payload: dict[str, Any], job: Any) -> dict[str, Any]:
    return {"order_id": payload["order_id"], "ok": True}


def drain(url: str, queue: str) -> None:
    async def main() -> None:
        await anq.Worker(anq.Queue(queue, url), handler).run(burst=True)
        await close_shared()

    asyncio.run(main())


async def fill(url: str, queues: list[str], jobs: int) -> None:
    for name in queues:
        queue = anq.Queue(name, url)
        for start in range(0, jobs, 1000):
            await queue.enqueue_many([{"order_id": i} for i in range(start, start + 1000)])
    await close_shared()


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(cluster: Cluster, queues: list[str], jobs: int) -> dict[str, Any]:
    url = cluster.url.replace("redis://", "redis+cluster://")
    asyncio.run(fill(url, queues, jobs))
    pids = [m.proc.pid for m in cluster.masters if m.proc]
    before = [cpu_seconds(p) for p in pids]
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=drain, args=(url, q)) for q in queues]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=600)
        assert w.exitcode == 0, f"a worker failed (exit code {w.exitcode})"
    elapsed = time.perf_counter() - start
    cpu = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
    held = [0] * len(cluster.masters)
    client = cluster.masters[0].client()
    for name in queues:
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", f"{{{name}}}"))
        for i, master in enumerate(cluster.masters):
            ranges = master.client().execute_command("CLUSTER", "SLOTS")
            if any(int(a) <= slot <= int(b) and int(m[1]) == master.port for a, b, m, *_ in ranges):
                held[i] += 1
    return {"rate": len(queues) * jobs / elapsed, "seconds": elapsed, "cpu": cpu, "held": held}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per queue")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    queues = [f"bench-{i}" for i in range(args.queues)]
    print(f"{args.queues} queues x {args.jobs:,} jobs, one worker process per queue, "
          f"{os.cpu_count()} cores, load1={os.getloadavg()[0]:.2f}")  # fmt: skip
    rates: dict[int, list[float]] = {1: [], 3: []}
    for run_no in range(args.runs):
        for masters in (1, 3):
            with (
                tempfile.TemporaryDirectory(prefix="notifyq-bench-cluster-") as folder,
                running_cluster(pathlib.Path(folder), masters=masters) as cluster,
            ):
                r = run(cluster, queues, args.jobs)
            rates[masters].append(r["rate"])
            cpu = ", ".join(f"{c:.1f}" for c in r["cpu"])
            print(f"run {run_no + 1}, {masters} master(s): {r['rate']:9,.0f} jobs/s "
                  f"({r['seconds']:.1f} s); queues per master {r['held']}; "
                  f"server CPU s per master [{cpu}]")  # fmt: skip
    one, three = sorted(rates[1])[len(rates[1]) // 2], sorted(rates[3])[len(rates[3]) // 2]
    print(f"median: 1 master {one:,.0f} jobs/s, 3 masters {three:,.0f} jobs/s, "
          f"ratio {three / one:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
