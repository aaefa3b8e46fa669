"""The run itself: start a server and every process, break things while the jobs flow, let
the queue drain, stop everything by pid, and hand what was left behind to the checker.

Timeline (``S`` = the producers' ``seconds``):

* before: the server, the named listener, the gateway, the WebSocket clients, the
  workers, then the producers, which spread the jobs evenly over ``S``;
* during ``S``: a random worker is SIGKILLed every 0.5-2 s and replaced; the listener's
  and the gateway's Redis connections are killed (``CLIENT KILL``) three times each; the
  server is stopped with SIGTERM at 0.3 S (and started again at once) and with SIGKILL at
  0.7 S (and started again after a lease and a second, so that leases lapse while it is
  down), each time on the same port and AOF; the listener process and the gateway process are each
  SIGKILLed once (0.45 S and 0.55 S) and replaced;
* after: a bounded wait for the queue to drain and for the listener and the clients to
  see every end, then every process is stopped (SIGTERM, then SIGKILL) and checked.
"""

from __future__ import annotations

import os
import pathlib
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import notifyq
from notifyq.gateway import CLIENT_NAME as GATEWAY_CLIENT

from ..support import eventually
from . import check, facts
from .plan import Log, Plan, Tail, read_lines
from .producer import GIVE_UP_AFTER
from .server import Server, free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROGRESS_EVERY = 5.0  # seconds between progress lines
DRAIN_TIMEOUT = 120.0  # seconds the queue gets to drain once the producers are done
SEEN_TIMEOUT = 30.0  # seconds the listener and the clients then get to see every end


@dataclass(frozen=True)
class Options:
    fsync: str
    jobs: int
    seconds: float
    seed: int
    ws_clients: int = 200
    ws_processes: int = 2
    keep: bool = False


class Child:
    """A process of the run: ``python -m tests.chaos.<module> RUN_DIR args...``."""

    def __init__(self, plan: Plan, name: str, module: str, args: list[str]) -> None:
        self.name, self.module, self.args = name, module, args
        self.log = plan.path(f"proc-{name}-{time.monotonic_ns()}.log")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"tests.chaos.{module}", plan.dir, *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                start_new_session=True,  # Ctrl-C goes to the run, which stops each by pid
            )  # fmt: skip
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        def up() -> bool:
            assert self.proc.poll() is None, f"{self.name} exited: see {self.log}"
            return b"ready\n" in self.log.read_bytes()

        eventually(up, timeout=timeout, interval=0.05)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Children:
    """Every process the run started; each is stopped by its pid."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.live: dict[str, Child] = {}  # the current process of each role
        self.every: list[Child] = []

    def start(self, name: str, module: str, *args: str, ready: bool = True) -> Child:
        child = Child(self.plan, name, module, list(args))
        self.live[name] = child
        self.every.append(child)
        if ready:
            child.wait_ready()
        return child

    def kill(self, name: str) -> Child:
        """SIGKILL the process of ``name`` and wait until it is gone."""
        child = self.live[name]
        os.kill(child.pid, signal.SIGKILL)
        child.proc.wait()
        return child

    def replace(self, name: str, ready: bool = True) -> Child:
        old = self.live[name]
        return self.start(name, old.module, *old.args, ready=ready)

    def exited(self) -> list[Child]:
        """Processes that ended without being told to (producers end when done)."""
        ended = [(n, c) for n, c in self.live.items() if c.proc.poll() is not None]
        return [c for n, c in ended if not (n.startswith("producer") and c.proc.returncode == 0)]

    def producers(self) -> list[tuple[str, Child]]:
        return [(n, c) for n, c in self.live.items() if n.startswith("producer")]

    def stop(self, prefix: str) -> None:
        group = [c for n, c in self.live.items() if n.startswith(prefix)]
        for child in group:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in group:
            child.stop()

    def stop_all(self) -> None:
        for child in self.every:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in self.every:
            child.stop(timeout=10.0)


class Watch:
    """Counts, from the logs, what the run has done so far."""

    def __init__(self, plan: Plan) -> None:
        self.acks = [Tail(plan.path(f"acks-{i}.jsonl")) for i in range(plan.producers)]
        self.listener = Tail(plan.path("listener.jsonl"))
        self.ws = [Tail(plan.path(f"ws-{i}.jsonl")) for i in range(plan.ws_processes)]
        self.acked = 0
        self.heard: set[str] = set()  # jobs whose end the listener was handed
        self.followed: set[str] = set()  # jobs whose end a WebSocket client saw

    def update(self) -> None:
        for tail in self.acks:
            self.acked += sum(1 for line in tail.new_lines() if "id" in line)
        self.heard |= {x["job"] for x in self.listener.new_lines() if x["type"] != "gap"}
        for tail in self.ws:
            self.followed |= {x["job"] for x in tail.new_lines() if x["k"] == "end"}


class Chaos:
    """Breaks things while the producers run, and says what it did."""

    def __init__(
        self, plan: Plan, server: Server, children: Children, say: Callable[[str], None]
    ) -> None:
        self.plan, self.server, self.children, self.say = plan, server, children, say
        self.rng = random.Random(plan.seed)
        self.log = Log(plan.path("faults.jsonl"))
        self.log.write(k="start", t=time.time())
        self.queue = notifyq.Queue(plan.queue, plan.url)
        self.watch = Watch(plan)
        self.started = time.monotonic()
        self.recent: list[str] = []  # worker kills since the last progress line
        self.schedule: list[tuple[float, Callable[[], None]]] = []  # (when, fault), in order

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def run(self) -> None:
        """Inject faults for the producers' ``seconds``, printing progress."""
        s = self.plan.seconds
        down = self.plan.lease + 1.0  # longer than a lease: leases lapse while it is down
        schedule = self.schedule = [
            (0.30 * s, partial(self.restart_server, signal.SIGTERM)),
            (0.45 * s, partial(self.kill_process, "listener")),
            (0.55 * s, partial(self.kill_process, "gateway")),
            (0.70 * s, partial(self.restart_server, signal.SIGKILL, down)),
        ]
        for name in (f"notifyq-listener:{self.plan.listener_name}", GATEWAY_CLIENT):
            for _ in range(3):
                at = self.rng.uniform(0.1 * s, 0.9 * s)
                schedule.append((at, partial(self.kill_clients, name)))
        schedule.sort(key=lambda item: item[0])
        next_kill, next_line = self.rng.uniform(0.5, 2.0), PROGRESS_EVERY
        while self.elapsed() < s:
            now = self.elapsed()
            while schedule and schedule[0][0] <= now:
                schedule.pop(0)[1]()
            if now >= next_kill:
                self.kill_worker()
                next_kill = self.elapsed() + self.rng.uniform(0.5, 2.0)
            self.revive()
            if now >= next_line:
                self.progress()
                next_line += PROGRESS_EVERY
            upcoming = min([next_kill, next_line, s] + [at for at, _ in schedule[:1]])
            time.sleep(max(0.0, min(0.1, upcoming - self.elapsed())))

    # -- faults

    def kill_worker(self) -> None:
        name = self.rng.choice(sorted(n for n in self.children.live if n.startswith("worker")))
        child = self.children.kill(name)
        t = time.time()
        inflight = running_jobs(self.plan.path(f"effects-{child.pid}.jsonl"))
        self.log.write(k="worker_kill", name=name, pid=child.pid, t=t, inflight=inflight)
        self.recent.append(f"{child.pid} ({len(inflight)} running)")
        self.children.replace(name, ready=False)

    def kill_process(self, name: str) -> None:
        child = self.children.kill(name)
        self.log.write(k="process_kill", name=name, pid=child.pid, t=time.time())
        self.say(f"SIGKILL {name} (pid {child.pid}); starting another")
        self.children.replace(name)

    def kill_clients(self, name: str, tries: int = 3) -> None:
        """CLIENT KILL the connections named ``name``; if there is none (it is reconnecting
        after a restart), try again a second later, ``tries`` times in all."""
        try:
            killed = self.server.kill_clients(name)
        except Exception as exc:  # the server may be restarting
            self.say(f"CLIENT KILL {name}: {exc}")
            killed = 0
        if not killed and tries > 1:
            self.schedule.append(
                (self.elapsed() + 1.0, partial(self.kill_clients, name, tries - 1))
            )
            self.schedule.sort(key=lambda item: item[0])
            return
        self.log.write(k="client_kill", name=name, killed=killed, t=time.time())
        self.say(f"CLIENT KILL {name}: {killed} connection(s)")

    def restart_server(self, how: signal.Signals, down: float = 0.0) -> None:
        pid = self.server.proc.pid if self.server.proc else "?"
        self.say(f"server {how.name} (pid {pid})" + (f", down for {down:g}s" if down else ""))
        o = self.server.restart(how, down)
        self.log.write(k="server", how=o.how, signalled=o.signalled, exited=o.exited, up=o.up)
        self.say(f"server back on the same AOF after {o.up - o.signalled:.2f}s")

    def revive(self) -> None:
        """A process that died on its own is a finding: log it, and replace it."""
        for child in self.children.exited():
            code = child.proc.returncode
            self.log.write(
                k="unexpected_exit", name=child.name, pid=child.pid, code=code, t=time.time()
            )
            self.say(f"{child.name} (pid {child.pid}) exited on its own ({code}): see {child.log}")
            self.children.replace(child.name, ready=False)

    # -- progress

    def progress(self, note: str = "") -> None:
        self.watch.update()
        try:
            st = self.queue.stats()
            totals = st["totals"]
            state = (
                f"completed {totals.get('completed', 0):,} dead {totals.get('dead', 0):,} "
                f"pending {st['pending']:,} active {st['active']:,} delayed {st['delayed']:,}"
            )
        except notifyq.RedisUnavailable:
            state = "server unreachable"
        kills = f" | killed workers {', '.join(self.recent)}" if self.recent else ""
        self.recent = []
        self.say(
            f"acked {self.watch.acked:,}/{self.plan.jobs:,} | {state} | ends heard: listener "
            f"{len(self.watch.heard):,} websocket {len(self.watch.followed):,}{kills}{note}"
        )

    def ended(self) -> int:
        totals = self.queue.stats()["totals"]
        return int(totals.get("completed", 0)) + int(totals.get("dead", 0))

    def drain(self) -> None:
        """Wait (bounded) for the producers to finish, the queue to empty and the
        observers to see every end; say what did not happen in time."""
        last = [time.monotonic()]

        def report_now() -> None:
            self.revive()
            if time.monotonic() - last[0] >= PROGRESS_EVERY:
                last[0] = time.monotonic()
                self.progress(" (draining)")

        def producers_done() -> bool:
            report_now()
            return all(c.proc.poll() is not None for _, c in self.children.producers())

        def empty() -> bool:
            report_now()
            try:
                st = self.queue.stats()
            except notifyq.RedisUnavailable:
                return False
            return int(st["pending"]) + int(st["active"]) + int(st["delayed"]) == 0

        def seen() -> bool:
            report_now()
            self.watch.update()
            ended = self.ended()
            return len(self.watch.heard) >= ended and len(self.watch.followed) >= ended

        for what, condition, timeout in (
            ("the producers to finish", producers_done, GIVE_UP_AFTER + 10),
            ("the queue to drain", empty, DRAIN_TIMEOUT),
            ("the listener and the clients to see every end", seen, SEEN_TIMEOUT),
        ):
            try:
                eventually(condition, timeout=timeout, interval=0.2)
            except AssertionError:
                self.say(f"gave up waiting for {what} after {timeout:.0f}s")
        self.progress(" (drained)")


def running_jobs(path: pathlib.Path) -> list[str]:
    """Jobs a worker's side-effect log shows started and not ended."""
    started: dict[tuple[str, int], bool] = {}
    if path.exists():
        for line in read_lines(path):
            started[(line["job"], line["attempt"])] = line["ev"] == "start"
    return [job for (job, _), running in started.items() if running]


def run(options: Options) -> int:
    """One chaos run; 0 if every check held, 1 if not."""
    began = time.monotonic()
    folder = pathlib.Path(tempfile.mkdtemp(prefix="notifyq-chaos-"))
    server = Server(folder / "server", options.fsync)
    plan = Plan(
        dir=str(folder), url=server.url, gateway_port=free_port(),
        secret=secrets.token_urlsafe(32), fsync=options.fsync, jobs=options.jobs,
        seconds=options.seconds, seed=options.seed, ws_clients=options.ws_clients,
        ws_processes=options.ws_processes, ws_drop_every=max(5.0, options.seconds / 3),
    )  # fmt: skip
    plan.save()
    children = Children(plan)

    def say(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {text}", flush=True)

    try:
        say(
            f"chaos run: appendfsync {plan.fsync}, {plan.jobs:,} jobs over {plan.seconds:g}s, "
            f"{plan.producers} producers, {plan.workers} workers, {plan.ws_clients} WebSocket "
            f"clients, seed {plan.seed}; server {plan.url}, files in {folder}"
        )
        server.start()
        notifyq.Queue(plan.queue, plan.url).set_events_maxlen(plan.jobs * 20 + 10_000)
        start_processes(plan, children)
        chaos = Chaos(plan, server, children, say)
        for i in range(plan.producers):
            children.start(f"producer{i}", "producer", str(i), ready=False)
        chaos.run()
        chaos.drain()
        for role in ("ws", "gateway", "listener", "worker", "producer"):
            children.stop(role)
        say("every process stopped; checking")
        verdict = check.judge(facts.gather(plan))
        print(verdict.report(), flush=True)
        if not verdict.ok and not options.keep:
            print(f"(the same fault schedule again, keeping the logs: --seed {plan.seed} --keep)")
        say(f"done in {time.monotonic() - began:.0f}s")
        return 0 if verdict.ok else 1
    finally:
        children.stop_all()
        notifyq.connection.close_shared()
        server.close()
        if options.keep:
            print(f"files kept in {folder}", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def start_processes(plan: Plan, children: Children) -> None:
    """The listener (its group must exist before the first job), the gateway, the
    WebSocket clients and the workers: sync and asyncio in turn."""
    children.start("listener", "listener")
    children.start("gateway", "gateway")
    for i in range(plan.ws_processes):
        children.start(f"ws{i}", "wsclients", str(i))
    for i in range(plan.workers):
        children.start(f"worker{i}", "worker", "sync" if i % 2 == 0 else "async")
