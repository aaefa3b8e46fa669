"""Every queue operation as an I/O-free generator flow.

A flow yields Redis operations and receives their replies; it never touches a socket.
``notifyq.connection.run`` drives a flow with blocking calls, ``notifyq.asyncio`` with
awaits, so each operation is written once::

    def status(keys, job_id):
        state = yield Command("HGET", keys.job(job_id), "state")
        ...

The operations a flow may yield are ``Command`` (one command), ``ScriptCall`` (EVALSHA
with an EVAL fallback) and ``Pipeline`` (several, one round trip, replies as a list).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from . import codec, rates, scripts, states
from .codec import loose_text, text
from .errors import (
    CorruptRecord,
    JobCancelled,
    JobFailed,
    JobNotFound,
    NotReplicated,
    ResultNotReady,
    ValidationError,
    reply_error,
)
from .keys import PRIORITIES, QueueKeys, check_group, check_job_id

T = TypeVar("T")

DEFAULT_RESULT_TTL = 24 * 3600  # seconds a result stays readable
MAX_RESULT_TTL = 10 * 365 * 24 * 3600  # and at most (``_prelude.lua`` has the same numbers)
DEFAULT_MAX_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Command:
    args: tuple[Any, ...]

    def __init__(self, *args: Any) -> None:
        object.__setattr__(self, "args", args)


@dataclass(frozen=True, slots=True)
class ScriptCall:
    script: scripts.Script
    keys: Sequence[str]
    args: Sequence[Any]


@dataclass(frozen=True, slots=True)
class Pipeline:
    calls: Sequence[Command | ScriptCall]
    errors_as_replies: bool = False  # hand error replies to the flow instead of raising
    rerun_after_scripts: bool = False  # a script sent again (EVAL) runs what follows again
    # False: the server may have acted on it even if its reply was lost (a group read moves
    # entries into the reader's pending list), so a lost connection must reach the flow's
    # caller (RedisUnavailable) instead of the calls being sent again on a new socket
    repeatable: bool = True


Op = Command | ScriptCall | Pipeline
Flow = Generator[Op, Any, T]


def repeatable(op: Op) -> bool:
    """May ``op`` be sent again, on a new socket, when its connection fails?"""
    return not isinstance(op, Pipeline) or op.repeatable


# ---------------------------------------------------------------- enqueue


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated, encoded job, ready for ``enqueue.lua``."""

    id: str
    payload: str
    priority: str = "normal"
    delay_ms: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout_ms: int = 0
    result_ttl: int = DEFAULT_RESULT_TTL
    idempotency_key: str = ""
    group: str = ""  # '': none


def new_job_id() -> str:
    """16 characters from A-Z a-z 0-9 _ (about 95 random bits). No "-", so an id never
    reads as an option on a command line."""
    return secrets.token_urlsafe(12).replace("-", "_")


def seconds(value: object, name: str, *, allow_zero: bool = True) -> float:
    """A duration argument (a number of seconds, or a ``timedelta``) as float seconds; None is
    0. ``ValidationError`` for anything else, and for NaN, infinities and negatives."""
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a number of seconds, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValidationError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {value!r}")
    return float(value)


def check_int(value: object, name: str, *, least: int = 1) -> int:
    """An integer argument of at least ``least``; ``ValidationError`` for anything else."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValidationError(f"{name} must be an integer >= {least}, not {value!r}")
    return value


def job_spec(
    payload: Any,
    *,
    job_id: str | None = None,
    idempotency_key: str | None = None,
    delay: float | timedelta | None = None,
    priority: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    timeout: float | timedelta | None = None,
    result_ttl: float | timedelta = DEFAULT_RESULT_TTL,
    group: str | None = None,
    max_payload: int = codec.DEFAULT_MAX_PAYLOAD,
) -> JobSpec:
    """Validate enqueue arguments and encode the payload. Raises before anything is written.

    A ``group`` takes normal priority only: the groups take turns among the normal jobs
    (docs/api.md, "Fair turns between groups"); a high or low job with a group is refused
    rather than given an order nobody asked for.
    """
    if priority is None:
        priority = "normal"
    if priority not in PRIORITIES:
        raise ValidationError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
    if group is not None:
        check_group(group)
        if priority != "normal":
            raise ValidationError(f"a group takes priority normal only, not {priority!r}")
    check_int(max_attempts, "max_attempts")
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 256
    ):
        raise ValidationError("idempotency_key must be a string of 1 to 256 characters")
    ttl = seconds(result_ttl, "result_ttl", allow_zero=False)
    if ttl > MAX_RESULT_TTL:
        raise ValidationError(f"result_ttl must be at most {MAX_RESULT_TTL} s, not {ttl!r}")
    return JobSpec(
        id=new_job_id() if job_id is None else check_job_id(job_id),
        payload=codec.encode(payload, limit=max_payload, what="payload"),
        priority=priority,
        delay_ms=round(seconds(delay, "delay") * 1000),
        max_attempts=max_attempts,
        timeout_ms=round(seconds(timeout, "timeout", allow_zero=False) * 1000),
        result_ttl=max(1, math.ceil(ttl)),
        idempotency_key=idempotency_key or "",
        group=group or "",
    )


@dataclass(frozen=True, slots=True)
class Durability:
    """How many replicas must hold an enqueue before it returns (``WAIT``), and how long
    to wait for them."""

    replicas: int = 0
    timeout_ms: int = 1000


def durability(replicas: int, timeout: float) -> Durability:
    replicas = check_int(replicas, "replicas", least=0)
    if timeout is None:  # WAIT with 0 would block for ever
        raise ValidationError("replica_timeout must be a number of seconds, not None")
    ms = max(1, round(seconds(timeout, "replica_timeout", allow_zero=False) * 1000))
    return Durability(replicas, ms)


def enqueue(
    keys: QueueKeys, specs: Sequence[JobSpec], durable: Durability = Durability()
) -> Flow[list[tuple[str, bool]]]:
    """Enqueue jobs in one script call; returns ``(job id, created)`` per job.

    ``created`` is False when the idempotency key or the job id was already in use; the id
    is then the existing job's. With ``durable.replicas``, a ``WAIT`` follows the script on
    the same connection; fewer replicas than asked raises ``NotReplicated``.
    """
    job_keys: list[str] = [keys.base]
    args: list[Any] = [keys.queue, len(specs)]
    for s in specs:
        job_key = keys.job(s.id)
        job_keys += [job_key, keys.idempotency(s.idempotency_key) if s.idempotency_key else job_key]
        args += [s.id, s.payload, s.priority, s.delay_ms, s.max_attempts, s.timeout_ms,
                 s.result_ttl, s.idempotency_key, s.group]  # fmt: skip
    call = ScriptCall(scripts.ENQUEUE, job_keys, args)
    if durable.replicas:
        wait = Command("WAIT", durable.replicas, durable.timeout_ms)  # on the same connection
        reply, acked = yield Pipeline([call, wait], rerun_after_scripts=True)
    else:
        reply, acked = (yield call), 0
    jobs = [(text(job_id) or "", bool(created)) for job_id, created in reply]
    if acked < durable.replicas:
        raise NotReplicated([job_id for job_id, _ in jobs], int(acked), durable.replicas)
    return jobs


# ---------------------------------------------------------------- reading a job


def read_outcome(raw: bytes | str, job_id: str) -> dict[str, Any]:
    """A finished job's outcome record, from its result key or done message;
    ``CorruptRecord`` if ``raw`` is not one notifyq wrote."""
    record = codec.decode(raw, what=f"result of job {job_id!r}")
    if (
        not isinstance(record, dict)
        or record.get("status") not in states.TERMINAL
        or record.get("id") != job_id
    ):
        raise CorruptRecord(f"result of job {job_id!r} is not a notifyq outcome of that job")
    error = record.get("error")
    if record["status"] != states.COMPLETED and not isinstance(error, dict | None):
        raise CorruptRecord(f"result of job {job_id!r} has an error that is not a record")
    return record


def outcome_value(record: dict[str, Any], job_id: str) -> Any:
    """The value of a finished job from its outcome record; raises if it failed."""
    status = record["status"]
    if status == states.COMPLETED:
        return record.get("result")
    if status == states.CANCELLED:
        raise JobCancelled(job_id, record.get("error"))
    raise JobFailed(job_id, record.get("error"))


def outcome(raw: bytes | str, job_id: str) -> Any:
    """The value of a finished job from its result key or done message; raises if it failed
    (``JobFailed``) or if ``raw`` is not an outcome (``CorruptRecord``)."""
    return outcome_value(read_outcome(raw, job_id), job_id)


def status(keys: QueueKeys, job_id: str) -> Flow[str]:
    state = yield Command("HGET", keys.job(job_id), "state")
    if state is None:
        raise JobNotFound(keys.queue, job_id)
    return text(state) or ""


def result(keys: QueueKeys, job_id: str) -> Flow[Any]:
    """Non-blocking: the value, or ``JobFailed``, or ``ResultNotReady``, or ``JobNotFound``."""
    raw, state = yield Pipeline(
        [Command("GET", keys.result(job_id)), Command("HGET", keys.job(job_id), "state")]
    )
    if raw is not None:
        return outcome(raw, job_id)
    if state is None:
        raise JobNotFound(keys.queue, job_id)
    raise ResultNotReady(job_id, text(state) or "")


def progress(keys: QueueKeys, job_id: str) -> Flow[Any]:
    value, state = yield Command("HMGET", keys.job(job_id), "progress", "state")
    if state is None:
        raise JobNotFound(keys.queue, job_id)
    return None if value is None else codec.decode(value, what="progress")


def info(keys: QueueKeys, job_id: str) -> Flow[dict[str, Any]]:
    """The job record as a dict (for the CLI and dead-letter listings)."""
    record = yield Command("HGETALL", keys.job(job_id))
    if not record:
        raise JobNotFound(keys.queue, job_id)
    return _record(job_id, record)


def _record(job_id: str, record: dict[Any, Any]) -> dict[str, Any]:
    """The record as a dict; a field something else wrote that notifyq cannot read is shown
    as it is (the record is for people to look at: dead letters, ``status --json``)."""
    fields = {loose_text(k) or "": loose_text(v) or "" for k, v in record.items()}
    out: dict[str, Any] = {"id": job_id, "state": fields.get("state")}
    out["attempt"] = _number(fields.get("attempt") or "0")  # absent until the first claim
    for name in ("max_attempts", "enqueued_at", "started_at", "finished_at"):
        if fields.get(name):
            out[name] = _number(fields[name])
    out["priority"] = fields.get("priority") or "normal"  # absent when normal
    if fields.get("group"):
        out["group"] = fields["group"]
    for name in ("payload", "error", "progress"):
        raw = fields.get(name)
        if raw:
            try:
                out[name] = codec.decode(raw, what=name)
            except CorruptRecord:
                out[name] = raw
    return out


def _number(value: str) -> int | str:
    number = codec.integer(value)
    return value if number is None else number


def cancel(keys: QueueKeys, job_id: str) -> Flow[str]:
    """'cancelled', 'requested' (it is running), or the terminal state it already had."""
    reply = yield ScriptCall(scripts.CANCEL, [keys.base, keys.job(job_id)], [keys.queue, job_id])
    if reply is None:
        raise JobNotFound(keys.queue, job_id)
    return text(reply) or ""


# ---------------------------------------------------------------- queue-wide


def stats(keys: QueueKeys) -> Flow[dict[str, Any]]:
    """Counts of one queue in one round trip. Jobs waiting in groups are counted by the
    ``grouped`` field the scripts keep in ``config`` (no scan of the group lists), and are
    part of ``pending`` and of the normal priority."""
    replies = yield Pipeline(
        [Command("LLEN", k) for k in keys.pending_all()]
        + [
            Command("ZCARD", keys.active),
            Command("ZCARD", keys.delayed),
            Command("LLEN", keys.dead),
            Command("LLEN", keys.quarantine),
            Command("EXISTS", keys.paused),
            Command("HGETALL", keys.stats),
            Command("HGET", keys.config, "grouped"),
            Command("LLEN", keys.groups),
            Command("HGET", keys.config, "rate_limit"),
        ]
    )
    (high, normal, low, active, delayed, dead, quarantined, paused, totals, grouped, rotation,
     rate) = replies  # fmt: skip
    grouped = _grouped(keys, grouped)
    limit = rates.parse(keys, rate)
    return {
        "queue": keys.queue,
        "pending": high + normal + low + grouped,
        "pending_by_priority": {"high": high, "normal": normal + grouped, "low": low},
        "pending_grouped": grouped,
        "groups": max(0, rotation - 1),  # the rotation holds the ungrouped member too
        "active": active,
        "delayed": delayed,
        "dead": dead,
        "quarantined": quarantined,
        "paused": bool(paused),
        "rate_limit": None if limit is None else limit.as_dict(),
        "totals": {text(k) or "": _counter(keys, k, v) for k, v in (totals or {}).items()},
    }


def _grouped(keys: QueueKeys, value: Any) -> int:
    """The ``grouped`` count of ``config``: 0 when absent; ``CorruptRecord`` when it is not
    a count (the scripts refuse to run on such a ``config`` too)."""
    try:
        return max(0, int(value or 0))
    except ValueError:
        shown = f"field 'grouped' holds {loose_text(value)!r}"
        raise CorruptRecord(f"{keys.config} {shown}, not a count") from None


def _counter(keys: QueueKeys, name: Any, value: Any) -> int:
    try:
        return int(value)
    except ValueError:
        shown = f"field {loose_text(name)!r} holds {loose_text(value)!r}"
        raise CorruptRecord(f"{keys.stats} {shown}, not a count") from None


def backlog(keys: QueueKeys) -> Flow[int]:
    """Jobs waiting to run now or later (pending, delayed and retrying); 0 if paused.

    Jobs waiting in groups count as the size of the rotation: not their number, but never
    0 while one waits (a group is in the rotation as long as its list is not empty)."""
    # A pipeline is not atomic: housekeeping may move a due job from ``delayed`` to a
    # pending list between two of its commands. Reading ``delayed`` first, in the direction
    # jobs move, sees such a job in one of the two; the other order could miss it in both.
    delayed, paused, *lengths = yield Pipeline(
        [Command("ZCARD", keys.delayed), Command("EXISTS", keys.paused)]
        + [Command("LLEN", k) for k in [*keys.pending_all(), keys.groups]]
    )
    return 0 if paused else sum(lengths) + int(delayed)


def quarantined(keys: QueueKeys, start: int = 0, count: int = 100) -> Flow[list[dict[str, Any]]]:
    """Entries of the quarantine list, newest first: ``{"id", "reason", "at"}`` each."""
    if count <= 0:
        return []
    entries = yield Command("LRANGE", keys.quarantine, start, start + count - 1)
    out = []
    for raw in entries:
        try:
            entry = codec.decode(raw, what="quarantine entry")
        except CorruptRecord:
            entry = None
        if not isinstance(entry, dict):  # not written by notifyq: shown as it is
            entry = {"id": loose_text(raw), "reason": None, "at": None}
        out.append(entry)
    return out


def dead_letters(keys: QueueKeys, start: int = 0, count: int = 100) -> Flow[list[dict[str, Any]]]:
    """Dead-lettered jobs, newest first, with their recorded error."""
    if count <= 0:
        return []
    ids = yield Command("LRANGE", keys.dead, start, start + count - 1)
    ids = [text(i) or "" for i in ids]
    if not ids:
        return []
    records = yield Pipeline([Command("HGETALL", keys.job(i)) for i in ids])
    return [_record(i, r) for i, r in zip(ids, records, strict=True)]


def requeue(keys: QueueKeys, job_id: str) -> Flow[bool]:
    job_id = check_job_id(job_id)
    done = yield ScriptCall(
        scripts.REQUEUE, [keys.base, keys.job(job_id), keys.result(job_id)], [job_id, keys.queue]
    )
    return bool(done)


def purge_dead(keys: QueueKeys, batch: int = 500) -> Flow[int]:
    total = 0
    while True:
        n = yield ScriptCall(scripts.PURGE_DEAD, [keys.base], [batch])
        total += int(n)
        if n < batch:
            return total


def pause(keys: QueueKeys) -> Flow[None]:
    yield Command("SET", keys.paused, "1")


def resume(keys: QueueKeys) -> Flow[None]:
    wake = [Command("LPUSH", keys.wake, "1"), Command("LTRIM", keys.wake, 0, 0)]
    yield Pipeline([Command("DEL", keys.paused), *wake])


# ---------------------------------------------------------------- worker side


@dataclass(slots=True)
class Claim:
    """A job a worker has claimed, with the lease token that fences its writes."""

    queue: str
    id: str
    token: str
    attempt: int
    max_attempts: int
    timeout: float | None  # seconds; None: the worker's default
    raw_payload: bytes | str  # as Redis holds it: decoded (and checked) by the worker
    priority: str
    #: ``time.monotonic()`` when the claim was read: where a job's duration starts
    claimed_at: float = field(default_factory=time.monotonic, compare=False)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An id ``claim.lua`` took off a pending list and did not hand out, since its record is
    not a sound notifyq job: ``fate`` is 'quarantined' (not a job record at all: missing,
    not a hash, no payload or state) or 'dead' (a job record with a malformed field)."""

    queue: str
    id: str  # as the quarantine list shows it: characters outside the id alphabet as \xNN
    fate: str
    reason: str


def claim(keys: QueueKeys, worker_id: str, n: int, lease_ms: int) -> Flow[list[Claim]]:
    reply = yield claim_call(keys, worker_id, n, lease_ms)
    return claims(keys, reply)[0]


def claim_call(keys: QueueKeys, worker_id: str, n: int, lease_ms: int) -> ScriptCall:
    return ScriptCall(scripts.CLAIM, [keys.base], [worker_id, n, lease_ms, keys.queue])


def claims(keys: QueueKeys, reply: list[Any]) -> tuple[list[Claim], list[Refusal]]:
    """The claims in a ``claim.lua`` reply, and the ids it refused. The script checked each
    record's fields, so they parse. (A third value, the wait a rate limit imposes, is
    read by ``rates.wait_of``.)"""
    jobs, refused = reply[0], reply[1]
    out = []
    for i in range(0, len(jobs), 7):
        job_id, token, attempt, max_attempts, timeout_ms, payload, priority = jobs[i : i + 7]
        timeout_ms = int(timeout_ms or 0)
        out.append(
            Claim(
                queue=keys.queue,
                id=text(job_id) or "",
                token=str(token),
                attempt=int(attempt),
                max_attempts=int(max_attempts),
                timeout=timeout_ms / 1000 if timeout_ms else None,
                raw_payload=payload,
                priority=text(priority) or "normal",
            )
        )
    refusals = [
        Refusal(keys.queue, text(refused[i]) or "", text(refused[i + 1]) or "",
                text(refused[i + 2]) or "")
        for i in range(0, len(refused), 3)
    ]  # fmt: skip
    return out, refusals


def maintain(keys: QueueKeys, limit: int = 1000) -> Flow[tuple[int, int, int]]:
    """Promote due delayed jobs and take back lapsed leases: (promoted, requeued, dead)."""
    promoted, requeued, buried = yield maintain_call(keys, limit)
    return int(promoted), int(requeued), int(buried)


def maintain_call(keys: QueueKeys, limit: int = 1000) -> ScriptCall:
    return ScriptCall(scripts.MAINTAIN, [keys.base], [keys.queue, limit])


def renew(keys: QueueKeys, held: Iterable[tuple[str, str]], lease_ms: int) -> Flow[list[str]]:
    """Extend leases of (job id, token) pairs; per pair 'ok', 'cancel' or 'lost', in order."""
    reply = yield renew_call(keys, held, lease_ms)
    return [text(r) or "" for r in reply]


def renew_call(keys: QueueKeys, held: Iterable[tuple[str, str]], lease_ms: int) -> ScriptCall:
    args: list[Any] = [lease_ms]
    for job_id, token in held:
        args += [job_id, token]
    return ScriptCall(scripts.RENEW, [keys.base], args)


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a job ended, as ``settle.lua`` takes it."""

    how: str  # completed | retry | dead | cancelled | release
    body: str  # result JSON, or error JSON
    delay_ms: int = 0  # for retry


def settle(outcomes: Sequence[tuple[Claim, Settlement]]) -> Flow[list[str | Exception]]:
    """Record how jobs ended: one script call per queue, all in one round trip.

    Returns each job's new state, in order, or 'stale' where this worker's lease was taken
    over (fencing), or 'corrupt' where its record is no longer a hash: that job's outcome
    was not written. A queue whose keys the script refused (``CorruptRecord``) gives its
    jobs that error instead, without failing the other queues' jobs.
    """
    by_queue: dict[str, list[int]] = {}
    for i, (claim, _) in enumerate(outcomes):
        by_queue.setdefault(claim.queue, []).append(i)
    calls = []
    for queue, indexes in by_queue.items():
        args: list[Any] = [queue]
        for i in indexes:
            claim, how = outcomes[i]
            args += [claim.id, claim.token, how.how, how.body, how.delay_ms]
        calls.append(ScriptCall(scripts.SETTLE, [QueueKeys(queue).base], args))
    replies = yield Pipeline(calls, errors_as_replies=True)
    states: list[str | Exception] = [""] * len(outcomes)
    for indexes, reply in zip(by_queue.values(), replies, strict=True):
        if isinstance(reply, Exception):
            for i in indexes:
                states[i] = reply_error(reply)
            continue
        for i, state in zip(indexes, reply, strict=True):
            states[i] = text(state) or ""
    return states


def set_progress(claim: Claim, value: str) -> Flow[bool]:
    keys = QueueKeys(claim.queue)
    args = [claim.queue, claim.id, claim.token, value]
    ok = yield ScriptCall(scripts.PROGRESS, [keys.base], args)
    return bool(ok)


def backoff(attempt: int, base: float, cap: float, rand: float) -> float:
    """Seconds before retry ``attempt`` (1-based): exponential, capped, half jittered.

    ``rand`` in [0, 1) is passed in so the function stays pure and testable.
    """
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return float(ceiling / 2 + ceiling / 2 * rand)
