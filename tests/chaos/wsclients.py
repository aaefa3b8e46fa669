"""WebSocket clients: ``python -m tests.chaos.wsclients RUN_DIR INDEX``.

Runs the run's clients ``c`` with ``c % ws_processes == INDEX`` in one event loop. Each is a
page that follows its own jobs (job ``n`` belongs to client ``n % ws_clients``) through the
gateway, as docs/websocket-protocol.md tells a client to:

* it learns a job from the producers' acknowledgement logs, makes the job's token (as the
  application's server would) and subscribes; at most ``MAX_FOLLOWED`` jobs at a time (the
  gateway's limit per connection), the others wait their turn;
* it keeps, per job, the id of the last event it applied (or of the ``state``), drops
  anything not newer, and on a reconnect subscribes again with ``since`` set to it;
* when a job ends (a ``completed`` or ``dead`` event, or a ``state`` that says so) it logs
  the end and unsubscribes;
* now and then it drops its own connection without a close frame, as a network would.

Everything that matters to the checker goes to ``ws-<INDEX>.jsonl``: every end seen (by
event or by state), every ``gap``, every ``error``, and anything the protocol promises
cannot happen (an event not newer than one applied, an event of a job the client does
not follow, an event after the job's end).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import sys
import time
from collections import Counter, deque
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, WebSocketException

from notifyq import tokens
from notifyq.protocol import event_key

from .plan import Log, Plan, Tail, exit_with_parent, ready, run_dir_from_argv

MAX_FOLLOWED = 64  # subscriptions per connection the gateway allows
ENDS = ("completed", "dead", "cancelled")


class Limiter:
    """A token bucket below the gateway's (20 frames/s, bursts of 100), so that a burst of
    ends (each an unsubscribe and a subscribe) never gets the connection closed (1008)."""

    def __init__(self, rate: float = 15.0, burst: float = 80.0) -> None:
        self.rate, self.burst = rate, burst
        self.reset()

    def reset(self) -> None:
        """A new connection starts with a full bucket, on both sides."""
        self._allowance, self._stamp = self.burst, time.monotonic()

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            self._allowance = min(self.burst, self._allowance + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._allowance >= 1:
                self._allowance -= 1
                return
            await asyncio.sleep((1 - self._allowance) / self.rate)


class Follower:
    """One client: one connection at a time, following its jobs."""

    def __init__(self, index: int, plan: Plan, out: Log, rng: random.Random) -> None:
        self.index, self.plan, self.out, self.rng = index, plan, out, rng
        self.secret = plan.secret.encode()
        self.url = f"ws://127.0.0.1:{plan.gateway_port}/ws"
        self.mine: set[str] = set()  # every job this client was given
        self.backlog: deque[str] = deque()  # given, not yet subscribed
        self.following: dict[str, str | None] = {}  # job -> last event id applied
        self.ended: set[str] = set()
        self.more = asyncio.Event()
        self.limiter = Limiter()
        self.counts: Counter[str] = Counter()
        self.connected = asyncio.Event()

    def give(self, job: str) -> None:
        self.mine.add(job)
        self.backlog.append(job)
        self.more.set()

    def log(self, kind: str, **fields: Any) -> None:
        self.out.write(k=kind, c=self.index, t=time.time(), **fields)

    # -- connection

    async def run(self, stop: asyncio.Event) -> None:
        pause = 0.1
        while not stop.is_set():
            try:
                async with connect(self.url, open_timeout=5, close_timeout=1) as ws:
                    self.counts["connects"] += 1
                    self.connected.set()
                    pause = 0.1
                    await self._session(ws, stop)
            except (OSError, TimeoutError, InvalidHandshake, WebSocketException):
                self.counts["disconnects"] += 1
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, 2.0)

    async def _session(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        """Resubscribe what it follows (with ``since``), then read, fill free slots, and
        drop the connection at a random moment; returns when the connection is gone."""
        self.limiter.reset()
        for job, since in list(self.following.items()):
            await self._send(ws, self._subscribe(job, since))
        self.more.set()
        drop_in = self.rng.expovariate(1 / self.plan.ws_drop_every)
        tasks = {
            asyncio.create_task(self._read(ws)): "read",
            asyncio.create_task(self._fill(ws)): "fill",
            asyncio.create_task(asyncio.sleep(drop_in)): "drop",
            asyncio.create_task(stop.wait()): "stop",
        }
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        first = next(iter(done))
        if tasks[first] == "drop":
            self.counts["drops"] += 1
            self.log("drop")
            ws.transport.abort()  # no close frame: the gateway sees the connection fail
        elif tasks[first] != "stop":
            first.result()  # the reason the connection ended (ConnectionClosed, ...)

    async def _send(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        await self.limiter.take()
        await ws.send(json.dumps(frame))
        self.counts["frames"] += 1

    def _subscribe(self, job: str, since: str | None) -> dict[str, Any]:
        token = tokens.issue(self.secret, self.plan.queue, job, ttl=3600)
        frame = {"op": "subscribe", "token": token, "queue": self.plan.queue, "job": job}
        if since is not None:
            frame["since"] = since
            self.counts["resumes"] += 1
        return frame

    async def _fill(self, ws: ClientConnection) -> None:
        while True:
            await self.more.wait()
            self.more.clear()
            while self.backlog and len(self.following) < MAX_FOLLOWED:
                job = self.backlog.popleft()
                self.following[job] = None
                await self._send(ws, self._subscribe(job, None))

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            for frame in self.handle(json.loads(raw)):
                await self._send(ws, frame)

    # -- messages

    def handle(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply one message from the gateway; the frames to send in answer."""
        kind = message.get("type")
        self.counts[f"got_{kind}"] += 1
        if kind == "state":
            return self._state(message)
        if kind == "event":
            return self._event(message["event"])
        if kind == "gap":
            self.log("gap", job=message.get("job"), after=message.get("after"))
        elif kind == "error":
            return self._error(message)
        return []

    def _state(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        job = message["job"]
        if job not in self.following:
            self.log("stray_state", job=job, state=message.get("state"))
            return []
        self.following[job] = message["event_id"]
        if message.get("state") in ENDS:
            self.log(
                "end", job=job, how="state", state=message["state"], eid=message["event_id"],
                fin=message.get("finished_at"), attempt=message.get("attempt"),
            )  # fmt: skip
            return self._finish(job)
        return []

    def _event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        job, eid = event["id"], event["event_id"]
        if job not in self.mine:
            self.log("foreign", job=job, eid=eid, type=event["type"])
            return []
        if job not in self.following:
            self.log("after_end", job=job, eid=eid, type=event["type"])
            return []
        since = self.following[job]
        if since is not None and event_key(eid) <= event_key(since):
            self.log("dup", job=job, eid=eid, since=since, type=event["type"])
            return []
        self.following[job] = eid
        if event["type"] in ENDS:
            self.log(
                "end", job=job, how="event", state=event["type"], eid=eid, ts=event["ts"],
                attempt=event["attempt"],
            )  # fmt: skip
            return self._finish(job)
        return []

    def _error(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        code, job = message.get("code"), message.get("job")
        if code == "unavailable":  # the subscription stays; the gateway keeps trying
            return []
        self.log("error", job=job, code=code, message=message.get("message"))
        if job in self.following and code in ("not_found", "internal_error", "token_expired"):
            del self.following[job]  # the gateway ended this subscription
            self.more.set()
        return []

    def _finish(self, job: str) -> list[dict[str, Any]]:
        del self.following[job]
        self.ended.add(job)
        self.more.set()
        return [{"op": "unsubscribe", "queue": self.plan.queue, "job": job}]


async def assign(plan: Plan, followers: dict[int, Follower], stop: asyncio.Event) -> None:
    """Hand each acknowledged job to its follower, as the producers log them."""
    tails = [Tail(plan.path(f"acks-{i}.jsonl")) for i in range(plan.producers)]
    while not stop.is_set():
        for tail in tails:
            for line in tail.new_lines():
                if "id" in line and (follower := followers.get(plan.client_of(line["n"]))):
                    follower.give(line["id"])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def main_async(plan: Plan, index: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    out = Log(plan.path(f"ws-{index}.jsonl"))
    rng = random.Random(plan.seed * 1000 + index)
    followers = {
        c: Follower(c, plan, out, rng)
        for c in range(plan.ws_clients)
        if c % plan.ws_processes == index
    }
    tasks = [asyncio.create_task(f.run(stop)) for f in followers.values()]
    tasks.append(asyncio.create_task(assign(plan, followers, stop)))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            await asyncio.gather(*(f.connected.wait() for f in followers.values()))
    ready()
    await stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)
    for f in followers.values():
        f.log("stats", following=len(f.following), backlog=len(f.backlog), **f.counts)
    out.close()


def main() -> None:
    plan = Plan.load(run_dir_from_argv())
    exit_with_parent()
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    asyncio.run(main_async(plan, int(sys.argv[2])))


if __name__ == "__main__":
    main()
