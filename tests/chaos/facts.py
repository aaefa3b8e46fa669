"""What a run left behind, read back for the checker: the processes' logs and the server's
final state. Nothing here judges; ``check.py`` does, from a ``Facts``.
"""

from __future__ import annotations

import glob
import json
import pathlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import redis

from notifyq.keys import QueueKeys

from .plan import Plan, read_lines

CHUNK = 1000  # keys read per pipeline


@dataclass
class Ack:
    """An acknowledged enqueue: job ``n`` got id ``job`` at ``t`` after ``tries`` calls."""

    n: int
    job: str
    t: float
    tries: int


@dataclass
class Execution:
    """One run of the handler on one job, from a worker's side-effect log."""

    job: str
    attempt: int
    pid: int
    start: float
    end: float | None = None  # None: no end line (the process was killed first)
    ok: bool | None = None  # False: the handler raised


@dataclass
class Record:
    """A job as the server holds it at the end (``state`` None: no record)."""

    state: str | None
    attempt: int = 0
    error_type: str | None = None
    finished_at: int | None = None
    has_result: bool = False


@dataclass(frozen=True)
class Seen:
    """A job's end as one observer saw it: a ``completed``/``dead`` event (``eid`` its id,
    ``ts`` the server's time in ms) or, for a WebSocket client, a ``state`` that says the
    job ended (``eid`` the queue position of the state, ``fin`` the job's ``finished_at``)."""

    how: str  # event | state
    state: str
    eid: str
    ts: int | None = None
    fin: int | None = None


@dataclass
class Facts:
    plan: Plan
    acks: dict[str, Ack] = field(default_factory=dict)  # job id -> its acknowledgement
    gave_up: list[int] = field(default_factory=list)  # job numbers a producer gave up on
    ack_conflicts: list[str] = field(default_factory=list)
    executions: dict[str, list[Execution]] = field(default_factory=lambda: defaultdict(list))
    worker_kills: dict[int, float] = field(default_factory=dict)  # pid -> when
    faults: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, Record] = field(default_factory=dict)
    server_jobs: set[str] = field(default_factory=set)  # every job record on the server
    idem: dict[str, str | None] = field(default_factory=dict)  # job id -> its key's job
    stream_ids: set[str] = field(default_factory=set)
    stream_ends: dict[str, list[Seen]] = field(default_factory=lambda: defaultdict(list))
    stream_starts: Counter[str] = field(default_factory=Counter)
    listener_ends: dict[str, list[Seen]] = field(default_factory=lambda: defaultdict(list))
    listener_gaps: list[dict[str, Any]] = field(default_factory=list)
    ws_ends: dict[str, list[Seen]] = field(default_factory=lambda: defaultdict(list))
    ws_notes: list[dict[str, Any]] = field(default_factory=list)  # gaps, errors, anomalies
    ws_stats: Counter[str] = field(default_factory=Counter)
    # what still waits in the fair groups at the end: key -> its length (``groups``, the
    # rotation; ``pending:g:<group>``, a group's list), and config's ``grouped`` count
    group_keys: dict[str, int] = field(default_factory=dict)
    grouped: int = 0

    def outages(self) -> list[dict[str, Any]]:
        return [f for f in self.faults if f["k"] == "server"]


def gather(plan: Plan) -> Facts:
    """Read every log of the run and the server's final state."""
    facts = Facts(plan)
    _acks(facts)
    _effects(facts)
    facts.faults = list(read_lines(plan.path("faults.jsonl")))
    facts.worker_kills = {f["pid"]: f["t"] for f in facts.faults if f["k"] == "worker_kill"}
    _listener(facts)
    _ws(facts)
    with redis.Redis.from_url(plan.url, socket_timeout=30) as client:
        _server(facts, client)
    return facts


def _acks(facts: Facts) -> None:
    numbers: dict[int, str] = {}
    for i in range(facts.plan.producers):
        for line in read_lines(facts.plan.path(f"acks-{i}.jsonl")):
            if line.get("gave_up"):
                facts.gave_up.append(line["n"])
            elif "id" in line:
                n, job = line["n"], line["id"]
                if job in facts.acks or n in numbers:
                    facts.ack_conflicts.append(f"job {n} acknowledged twice ({job})")
                numbers[n] = job
                facts.acks[job] = Ack(n, job, line["t"], line["tries"])


def _effects(facts: Facts) -> None:
    for path in sorted(glob.glob(str(facts.plan.path("effects-*.jsonl")))):
        started: dict[tuple[str, int], Execution] = {}  # one process runs an attempt once
        for line in read_lines(pathlib.Path(path)):
            key = (line["job"], line["attempt"])
            if line["ev"] == "start":
                started[key] = Execution(line["job"], line["attempt"], line["pid"], line["t"])
            elif key in started:
                started[key].end, started[key].ok = line["t"], line["ok"]
        for run in started.values():
            facts.executions[run.job].append(run)
    for runs in facts.executions.values():
        runs.sort(key=lambda r: r.start)


def _listener(facts: Facts) -> None:
    for line in read_lines(facts.plan.path("listener.jsonl")):
        if line["type"] == "gap":
            facts.listener_gaps.append(line)
        else:
            seen = Seen("event", line["type"], line["eid"], ts=line["ts"])
            facts.listener_ends[line["job"]].append(seen)


def _ws(facts: Facts) -> None:
    for i in range(facts.plan.ws_processes):
        path = facts.plan.path(f"ws-{i}.jsonl")
        if not path.exists():
            continue
        for line in read_lines(path):
            kind = line["k"]
            if kind == "end":
                seen = Seen(
                    line["how"], line["state"], line["eid"], line.get("ts"), line.get("fin")
                )
                facts.ws_ends[line["job"]].append(seen)
            elif kind == "stats":
                facts.ws_stats.update(
                    {k: v for k, v in line.items() if isinstance(v, int) and k not in ("c",)}
                )
                facts.ws_stats["clients"] += 1
            elif kind != "drop":
                facts.ws_notes.append(line)


def _server(facts: Facts, client: redis.Redis) -> None:
    keys = QueueKeys(facts.plan.queue)
    prefix = keys.job("")
    facts.server_jobs = {
        k.decode()[len(prefix) :] for k in client.scan_iter(match=prefix + "*", count=CHUNK)
    }
    jobs = sorted(facts.server_jobs | set(facts.acks))
    for i in range(0, len(jobs), CHUNK):
        chunk = jobs[i : i + CHUNK]
        pipe = client.pipeline(transaction=False)
        for job in chunk:
            pipe.hmget(keys.job(job), "state", "attempt", "error", "finished_at")
            pipe.exists(keys.result(job))
        replies = pipe.execute()
        for j, job in enumerate(chunk):
            (state, attempt, error, finished), result = replies[2 * j], replies[2 * j + 1]
            facts.records[job] = Record(
                state=state.decode() if state else None,
                attempt=int(attempt or 0),
                error_type=json.loads(error).get("type") if error else None,
                finished_at=int(finished) if finished else None,
                has_result=bool(result),
            )
    acked = sorted(facts.acks.values(), key=lambda a: a.n)
    for i in range(0, len(acked), CHUNK):
        some = acked[i : i + CHUNK]
        found: list[Any] = client.mget([keys.idempotency(f"job-{a.n}") for a in some])
        for ack, mapped in zip(some, found, strict=True):
            facts.idem[ack.job] = mapped.decode() if mapped else None
    for key in client.scan_iter(match=keys.base + "pending:g:*", count=CHUNK):
        facts.group_keys[key.decode()[len(keys.base) :]] = int(client.llen(key))
    if client.exists(keys.groups):
        facts.group_keys["groups"] = int(client.llen(keys.groups))
    facts.grouped = int(client.hget(keys.config, "grouped") or 0)
    _stream(facts, client, keys)


def _stream(facts: Facts, client: redis.Redis, keys: QueueKeys) -> None:
    low = "-"
    while True:
        batch: list[Any] = client.xrange(keys.events, low, "+", count=10 * CHUNK) or []
        for eid_raw, fields in batch:
            eid = eid_raw.decode()
            facts.stream_ids.add(eid)
            event = json.loads(fields[b"e"])
            if event["type"] == "started":
                facts.stream_starts[event["id"]] += 1
            elif event["type"] in ("completed", "dead", "cancelled"):
                seen = Seen("event", event["type"], eid, ts=event["ts"])
                facts.stream_ends[event["id"]].append(seen)
        if len(batch) < 10 * CHUNK:
            return
        low = "(" + batch[-1][0].decode()
