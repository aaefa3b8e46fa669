"""Runs one workload of one adapter, in a process of its own, and writes what it measured.

    python -m adapters.harness run PEER WORKLOAD --out FILE --pids FILE --log FILE [sizes]
    python -m adapters.harness worker PEER

``run`` is what bench/peers/run.py starts for every (peer, workload, run): it writes one
JSON object to ``--out`` (the numbers, or ``{"error": ...}``), appends the id of every
worker process it starts to ``--pids`` (so that the parent can end them if this process
hangs), and sends the workers' output to ``--log``. ``worker`` runs the worker of a
library that has no worker CLI (its module's ``run_worker()``). Both run in bench/peers.

Workloads (every wait is bounded; see docs/benchmarks.md, section Peers):

- ``enqueue`` (W1): ``WARMUP`` enqueues, then ``jobs`` timed single enqueues with no
  worker running; Redis memory before and after them (``MEMORY USAGE`` of every key)
  gives the bytes per queued job. Then ``enqueue_many`` where the adapter has it.
- ``drain`` (W2): ``jobs`` enqueued with ``fill``, then the worker process starts and the
  clock runs until ``completed`` counts every result. Memory then gives the bytes per
  finished job, and every result is read back through the library and checked.
- ``latency`` (W3): the worker starts and answers ``LAT_WARMUP`` untimed rounds; then up to
  ``samples`` sequential rounds of enqueue -> wait, within ``budget`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import importlib
import inspect
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis

from . import PEERS
from .base import PEERS_DIR, Adapter, WaitTimeout, expected

WARMUP = 50  # untimed enqueues before W1 (connections, script caches)
LAT_WARMUP = 20  # untimed rounds before W3 (--warmup)
STARTUP_TIMEOUT = 60.0  # the first W3 wait also waits for the worker to start
WAIT_TIMEOUT = 10.0  # one W3 wait; a wait that runs out is counted and kept as a sample
POLL = 0.005  # seconds between W2 progress polls
STOP_GRACE = 10.0  # seconds a worker has to exit after SIGTERM before it is killed
MEMORY_BATCH = 500


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call an adapter method, awaiting it if it is a coroutine."""
    value = fn(*args)
    if inspect.isawaitable(value):
        value = await value
    return value


def load(peer: str) -> Adapter:
    module = importlib.import_module(f"adapters.{PEERS[peer]}")
    adapter: Adapter = module.Peer()
    return adapter


# ------------------------------------------------------------ worker processes


def kill_group(pgid: int) -> None:
    """SIGKILL whatever is left of a process group this harness (or run.py) started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class WorkerProcess:
    """A library's worker, started its documented way in a session of its own (so that
    it and any pool processes it forks can be ended together)."""

    def __init__(self, argv: Sequence[str], log: str, pids: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PEERS_DIR, env.get("PYTHONPATH", "")) if p)
        self.log = log
        with open(log, "ab") as out:
            out.write(f"\n$ {' '.join(argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                list(argv),
                cwd=PEERS_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with open(pids, "a") as f:
            f.write(f"{self.proc.pid}\n")

    def exited(self) -> int | None:
        return self.proc.poll()

    def tail(self, chars: int = 600) -> str:
        with open(self.log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - chars))
            return f.read().decode(errors="replace").strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_GRACE)
        kill_group(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


# ------------------------------------------------------------ memory


def memory(r: redis.Redis, job_keys: Sequence[str]) -> dict[str, Any]:
    """``MEMORY USAGE key SAMPLES 0`` (exact) of every key in the database, in total and
    split into the adapter's per-job key patterns and the rest."""
    keys = list(r.scan_iter(count=1000))
    sizes: list[int] = []
    for start in range(0, len(keys), MEMORY_BATCH):
        pipe = r.pipeline(transaction=False)
        for key in keys[start : start + MEMORY_BATCH]:
            pipe.memory_usage(key, samples=0)
        sizes += [int(s or 0) for s in pipe.execute()]
    groups: dict[str, list[int]] = {}
    for key, size in zip(keys, sizes, strict=True):
        name = key.decode(errors="replace")
        group = next((p for p in job_keys if fnmatch.fnmatchcase(name, p)), "other")
        groups.setdefault(group, [0, 0])
        groups[group][0] += 1
        groups[group][1] += size
    return {"keys": len(keys), "bytes": sum(sizes), "groups": groups}


def per_job(before: dict[str, Any], after: dict[str, Any], n: int) -> dict[str, Any]:
    """What ``n`` jobs added between two ``memory`` snapshots, per job."""
    groups = {}
    for name, (count, size) in after["groups"].items():
        count0, size0 = before["groups"].get(name, (0, 0))
        groups[name] = {"keys": count - count0, "bytes_per_job": (size - size0) / n}
    return {"bytes_per_job": (after["bytes"] - before["bytes"]) / n, "groups": groups}


EMPTY = {"keys": 0, "bytes": 0, "groups": {}}


# ------------------------------------------------------------ workloads


async def w1_enqueue(a: Adapter, jobs: int, timeout: float) -> dict[str, Any]:
    for k in range(WARMUP):
        await call(a.enqueue, jobs + k)
    before = memory(a.r, a.about.job_keys)
    enqueue, deadline = a.enqueue, time.monotonic() + timeout
    t0 = time.perf_counter()
    for i in range(jobs):
        await call(enqueue, i)
        if i % 100 == 0 and time.monotonic() > deadline:
            raise TimeoutError(f"only {i:,} of {jobs:,} enqueued in {timeout:g} s")
    seconds = time.perf_counter() - t0
    out = {"jobs": jobs, "seconds": seconds, "rate": jobs / seconds}
    out["memory"] = per_job(before, memory(a.r, a.about.job_keys), jobs)
    if many := getattr(a, "enqueue_many", None):
        t0 = time.perf_counter()
        await call(many, jobs)
        out["many_rate"] = jobs / (time.perf_counter() - t0)
    return out


async def w2_drain(a: Adapter, jobs: int, timeout: float, log: str, pids: str) -> dict[str, Any]:
    """W2. A drain that runs out of time, or whose results are not all right, is a failure
    that still measured something: it returns its numbers with ``error`` and ``measured``."""
    t0 = time.perf_counter()
    handles = await call(a.fill, jobs)
    fill_s = time.perf_counter() - t0
    if len(handles) != jobs:
        raise RuntimeError(f"fill returned {len(handles)} handles for {jobs} jobs")
    worker = WorkerProcess(a.worker_command(), log, pids)
    try:
        t_start = time.monotonic()
        t_first = None
        while True:
            done = await call(a.completed, handles)
            now = time.monotonic()
            if done and t_first is None:
                t_first = now
            if done >= jobs or now - t_start > timeout:
                break
            if (code := worker.exited()) is not None:
                raise RuntimeError(
                    f"worker exited with code {code} after {done:,} of {jobs:,} results: "
                    f"{worker.tail()}"
                )
            await asyncio.sleep(POLL)
        seconds = now - t_start
        out: dict[str, Any] = {
            "jobs": jobs,
            "done": done,
            "fill_s": fill_s,
            "drain_s": seconds,
            "rate": done / seconds,
            "first_s": (t_first or now) - t_start,
        }
        if done < jobs:  # out of time: the rate so far is all there is
            error = f"{done:,} of {jobs:,} results after {timeout:g} s"
            return {**out, "error": f"TimeoutError: {error}", "measured": True, "partial": True}
        out["memory"] = per_job(EMPTY, memory(a.r, a.about.job_keys), jobs)
        out["checked"], wrong = await check_results(a, handles, timeout)
    finally:
        worker.stop()
    if wrong:
        error = f"{len(wrong):,} of {out['checked']:,} results wrong: {'; '.join(wrong[:3])}"
        return {**out, "error": error, "measured": True}
    return out


async def check_results(a: Adapter, handles: list[Any], timeout: float) -> tuple[int, list[str]]:
    """Read every result back through the library (within ``timeout``): how many were
    read, and what was wrong with the ones that did not match."""
    wrong: list[str] = []
    deadline = time.monotonic() + timeout
    for i, handle in enumerate(handles):
        got = await call(a.result, handle)
        if got != expected(i):
            wrong.append(f"job {i}: {got!r}")
        if i % 100 == 99 and time.monotonic() > deadline:
            return i + 1, wrong
    return len(handles), wrong


def percentiles(seconds: list[float]) -> dict[str, float]:
    data = sorted(1000 * s for s in seconds)
    cuts = statistics.quantiles(data, n=100, method="inclusive")
    return {"p50": statistics.median(data), "p90": cuts[89], "p99": cuts[98], "max": data[-1]}


async def w3_latency(
    a: Adapter, samples: int, budget: float, warmup: int, log: str, pids: str
) -> dict[str, Any]:
    worker = WorkerProcess(a.worker_command(), log, pids)
    try:
        first = time.monotonic()
        for k in range(max(1, warmup)):
            i = samples + k
            handle = await call(a.enqueue, i)
            got = await call(a.wait, handle, STARTUP_TIMEOUT if k == 0 else WAIT_TIMEOUT)
            if got != expected(i):
                raise RuntimeError(f"warm-up job {i}: the library returned {got!r}")
        warm_s = time.monotonic() - first
        enqueue, wait = a.enqueue, a.wait
        lat: list[float] = []
        timeouts = 0
        end = time.monotonic() + budget
        for i in range(samples):
            if time.monotonic() > end:
                break
            t0 = time.perf_counter()
            handle = await call(enqueue, i)
            try:
                got = await call(wait, handle, WAIT_TIMEOUT)
            except WaitTimeout:
                timeouts += 1
                lat.append(time.perf_counter() - t0)
                continue
            lat.append(time.perf_counter() - t0)
            if got != expected(i):
                raise RuntimeError(f"job {i}: the library returned {got!r}")
            if (code := worker.exited()) is not None:
                raise RuntimeError(f"worker exited with code {code}: {worker.tail()}")
    finally:
        worker.stop()
    if len(lat) < 2:
        raise RuntimeError(f"only {len(lat)} samples within the {budget:g} s budget")
    return {
        "samples": len(lat),
        "requested": samples,
        "timeouts": timeouts,
        "budget_s": budget,
        "warmup_s": warm_s,
        **percentiles(lat),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    a = load(args.peer)
    await call(a.setup)
    try:
        if args.workload == "enqueue":
            return await w1_enqueue(a, args.jobs, args.timeout)
        if args.workload == "drain":
            return await w2_drain(a, args.jobs, args.timeout, args.log, args.pids)
        return await w3_latency(a, args.samples, args.budget, args.warmup, args.log, args.pids)
    finally:
        await call(a.close)
        a.r.close()


def run_worker(peer: str) -> None:
    module = importlib.import_module(f"adapters.{PEERS[peer]}")
    worker: Callable[[], Awaitable[None]] = module.run_worker
    asyncio.run(worker())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.harness")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("peer", choices=list(PEERS))
    p.add_argument("workload", choices=["enqueue", "drain", "latency"])
    p.add_argument("--out", required=True)
    p.add_argument("--pids", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--budget", type=float, default=60.0)
    p.add_argument("--warmup", type=int, default=LAT_WARMUP)
    w = sub.add_parser("worker")
    w.add_argument("peer", choices=list(PEERS))
    args = parser.parse_args(argv)

    if args.command == "worker":
        run_worker(args.peer)
        return 0
    try:
        out: dict[str, Any] = asyncio.run(run(args))
    except Exception as exc:
        tb = traceback.format_exc(limit=-3)
        out = {"error": f"{type(exc).__name__}: {exc}".strip(), "traceback": tb}
    with open(args.out, "w") as f:
        json.dump(out, f)
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
