"""What a worker does with a claimed job, minus the I/O: decide how it ended.

Both workers (threads and asyncio) call these pure functions, so the rules live once:
a returned value completes the job unless it cannot be stored; an exception is retried
with backoff while attempts remain; a payload that is not JSON, or a result that cannot be
encoded, is dead-lettered at once since a retry cannot fix it.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from . import access, codec, exporter, ops, rates, registry
from .codec import text
from .connection import redact
from .errors import (
    CorruptRecord,
    JobCancelled,
    NotifyQError,
    RedisUnavailable,
    ValidationError,
    reply_error,
)
from .keys import QueueKeys, check_job_id, check_queue_name
from .logs import job_extra
from .ops import Settlement
from .windows import Clock, Gate

Handler = Callable[..., Any]
T = TypeVar("T")

MAX_PROGRESS = 64 * 1024  # bytes of encoded progress value
#: Longest pause of a worker's claim loop after a failure (Redis unreachable, queue keys of
#: the wrong type): it waits 0.1 s, then twice as long each time, up to this.
MAX_PAUSE = 5.0

#: Backoff jitter from a generator of our own: the process's global one is left alone.
_jitter = random.Random()
log = logging.getLogger("notifyq.worker")


@dataclass(frozen=True, slots=True)
class Policy:
    """Worker settings that decide a job's fate."""

    lease: float = 30.0  # seconds a claim holds without renewal
    timeout: float | None = None  # default per-job limit, seconds (None: no limit)
    backoff_base: float = 1.0  # first retry delay ceiling, seconds
    backoff_cap: float = 300.0  # largest retry delay, seconds
    max_result: int = codec.DEFAULT_MAX_RESULT  # bytes of encoded result

    @property
    def lease_ms(self) -> int:
        return max(1, round(self.lease * 1000))

    @property
    def tick(self) -> float:
        """How often leases are renewed and housekeeping runs."""
        return min(self.lease / 3, 1.0)

    def job_timeout(self, claim: ops.Claim) -> float | None:
        return claim.timeout if claim.timeout is not None else self.timeout


class ActiveJobBase:
    """The job as its handler sees it: payload, attempt, cancellation. Each worker adds
    ``set_progress`` (blocking, or a coroutine)."""

    def __init__(self, claim: ops.Claim, payload: Any, backend: Any) -> None:
        self.id, self.queue = claim.id, claim.queue
        self.attempt, self.max_attempts = claim.attempt, claim.max_attempts
        self.payload = payload
        self._claim, self._backend = claim, backend
        self._cancel = threading.Event()  # set from the worker, read by handler threads

    @property
    def cancelled(self) -> bool:
        """True once cancellation was requested, the lease was lost or the timeout passed."""
        return self._cancel.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise ``JobCancelled`` if the job should stop (the worker records it cancelled)."""
        if self._cancel.is_set():
            raise JobCancelled(self.id)

    def _progress_body(self, value: Any) -> str:
        return codec.encode(value, limit=MAX_PROGRESS, what="progress")


#: Most outcomes one settle call carries.
SETTLE_BATCH = 500


def settle_cut(sizes: Sequence[int], most: int = SETTLE_BATCH) -> int:
    """How many of the groups of outcomes waiting to be settled (their sizes, oldest first)
    the next settle call takes: whole groups only, so that the jobs of one batch are settled
    in one call; up to ``most`` outcomes, and always the first group."""
    total = 0
    for i, size in enumerate(sizes):
        if i and total + size > most:
            return i
        total += size
    return len(sizes)


def raise_outage(states: Sequence[str | Exception]) -> None:
    """Raise the first ``RedisUnavailable`` among a settle call's per-job states: a queue
    whose script the server refused for want of memory (``ServerFull``) is an outage to
    ride out (the call wrote nothing), not a refusal to log and drop."""
    for state in states:
        if isinstance(state, RedisUnavailable):
            raise state


def report(claim: ops.Claim, outcome: Settlement, state: str, worker: str | None = None) -> None:
    """Log what became of a settled job (a failed attempt at INFO, a success at DEBUG)."""
    extra = job_extra(claim.queue, claim.id, claim.attempt, worker)
    if state == "corrupt":
        log.error(
            "job %s: its record is no longer a hash (something else wrote it); %s outcome "
            "dropped, the id is quarantined when its lease lapses",
            claim.id,
            outcome.how,
            extra=extra,
        )
    elif state == "stale":
        log.warning(
            "job %s: lease lost (another worker took it over); %s outcome dropped",
            claim.id,
            outcome.how,
            extra=extra,
        )
    elif state in ("retrying", "dead"):
        log.info("job %s attempt %d failed: now %s", claim.id, claim.attempt, state, extra=extra)
    elif state == "cancelled":
        log.info("job %s cancelled on attempt %d", claim.id, claim.attempt, extra=extra)
    else:
        log.debug("job %s attempt %d: now %s", claim.id, claim.attempt, state, extra=extra)


def decode_payload(claim: ops.Claim) -> Any:
    return codec.decode(claim.raw_payload, what=f"payload of job {claim.id!r}")


def unreadable(exc: NotifyQError, claim: ops.Claim, policy: Policy) -> Settlement:
    """A claimed job whose payload cannot be read (not JSON): dead-lettered with the reason,
    since no retry can fix it."""
    extra = job_extra(claim.queue, claim.id, claim.attempt)
    log.error("job %s of queue %s: %s; dead-lettered", claim.id, claim.queue, exc, extra=extra)
    return failed(exc, claim, policy)


def pause_after(exc: Exception, pause: float) -> float:
    """Log why the claim loop failed; the pause before it tries again (doubling, from 0.1 s
    to ``MAX_PAUSE``), so that a fault that lasts costs a few calls a minute, not a spin."""
    pause = min(max(pause * 2, 0.1), MAX_PAUSE)
    if isinstance(exc, RedisUnavailable):
        log.warning("%s; retrying in %.1fs", exc, pause)
    else:
        log.error("cannot claim jobs: %s; retrying in %.1fs", exc, pause)
    return pause


def completed(value: Any, policy: Policy) -> Settlement:
    try:
        return Settlement("completed", codec.encode(value, limit=policy.max_result, what="result"))
    except (TypeError, ValueError) as exc:  # SerializationError, PayloadTooLarge
        return Settlement("dead", error_json(exc, with_traceback=False))


def failed(exc: BaseException, claim: ops.Claim, policy: Policy) -> Settlement:
    if isinstance(exc, JobCancelled):
        return Settlement("cancelled", error_json(exc, with_traceback=False))
    if isinstance(exc, CorruptRecord):
        return Settlement("dead", error_json(exc, with_traceback=False))
    delay = ops.backoff(claim.attempt, policy.backoff_base, policy.backoff_cap, _jitter.random())
    return Settlement("retry", error_json(exc), round(delay * 1000))


def timed_out(claim: ops.Claim, limit: float, policy: Policy) -> Settlement:
    return failed(TimeoutError(f"job exceeded its timeout of {limit:g}s"), claim, policy)


def cancelled() -> Settlement:
    return Settlement("cancelled", error_json(JobCancelled("", None), with_traceback=False))


def error_json(exc: BaseException, *, with_traceback: bool = True) -> str:
    record = codec.error_record(exc, with_traceback=with_traceback)
    if isinstance(exc, JobCancelled):
        record = {"type": "Cancelled", "message": "job was cancelled while running"}
    return codec.encode(record, limit=1 << 20, what="error")


# ---------------------------------------------------------------- batch handlers
#
# ``Worker(queue, handler, batch_size=N, batch_wait=S)`` calls ``handler(jobs)`` with up to
# N jobs and takes back one result per job, in order. Each job keeps its own outcome: the
# rules below turn the handler's reply into one ``Settlement`` per job, and both workers
# settle them through the same script call as single jobs, so fencing, events and result
# keys are exactly the same.

#: Largest ``batch_size``: a batch is settled in one script call (``SETTLE_BATCH``).
MAX_BATCH_SIZE = SETTLE_BATCH
#: ``batch_wait`` when only ``batch_size`` is given, seconds.
DEFAULT_BATCH_WAIT = 1.0


def check_batch(size: object, wait: object) -> tuple[int | None, float]:
    """``Worker(batch_size=, batch_wait=)``: (size or None, wait in seconds)."""
    if size is None:
        if wait is not None:
            raise ValidationError("batch_wait is for batch handlers: give batch_size too")
        return None, 0.0
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
        raise ValidationError(
            f"batch_size must be an integer from 1 to {MAX_BATCH_SIZE}, not {size!r}"
        )
    return size, DEFAULT_BATCH_WAIT if wait is None else ops.seconds(wait, "batch_wait")


class Collector(Generic[T]):
    """The batch a worker is filling: its jobs (runs) and when the first was claimed.

    No I/O and no clock of its own (``now`` is passed in): the claim loop of each worker
    adds what it claims, asks whether the batch is due, and caps its blocking wait so that
    it wakes when ``wait`` has passed since the batch's first job.
    """

    def __init__(self, size: int, wait: float) -> None:
        self.size, self.wait = size, wait
        self.runs: list[T] = []
        self._since = 0.0

    def add(self, run: T, now: float) -> None:
        if not self.runs:
            self._since = now
        self.runs.append(run)

    def room(self) -> int:
        return self.size - len(self.runs)

    def take(self) -> list[T]:
        runs, self.runs = self.runs, []
        return runs

    def take_due(self, now: float) -> list[T]:
        """The batch, taken, if it is full or ``wait`` has passed since its first job; else
        an empty list."""
        if self.runs and (len(self.runs) >= self.size or now - self._since >= self.wait):
            return self.take()
        return []

    def block(self, block: float, now: float) -> float:
        """How long a claim may block on the wake lists: ``block``, but no longer than what
        is left of the batch's wait (and at least 10 ms, since BLPOP 0 blocks forever)."""
        if not self.runs or not block:
            return block
        return max(0.01, min(block, self._since + self.wait - now))


def batch_limit(claims: Sequence[ops.Claim], policy: Policy) -> float | None:
    """The time limit of a batch call: the smallest limit of its jobs (each job's own
    ``timeout``, else the worker's), None if none of them has one."""
    limits = [t for t in (policy.job_timeout(c) for c in claims) if t is not None]
    return min(limits, default=None)


def reply_problem(reply: object, jobs: int) -> Exception | None:
    """What is wrong with a batch handler's reply, as the error its jobs fail with; None
    when it is a list (or tuple) of one result per job."""
    if not isinstance(reply, list | tuple):
        return TypeError(
            f"batch handler returned {type(reply).__name__}, not a list of {jobs} results "
            "(one per job, in order)"
        )
    if len(reply) != jobs:
        return ValueError(
            f"batch handler returned {len(reply)} results for {jobs} jobs "
            "(it must return one per job, in order)"
        )
    return None


def batch_outcomes(
    reply: object, claims: Sequence[ops.Claim], policy: Policy, cancel_requested: Sequence[bool]
) -> list[Settlement]:
    """One settlement per job from a batch handler's reply: an ``Exception`` item fails its
    job alone, any other item is its result; a reply that is not one result per job fails
    them all."""
    problem = reply_problem(reply, len(claims))
    if problem is not None:
        log.error("jobs %s: %s", ", ".join(c.id for c in claims), problem)
        return batch_failed(problem, claims, policy, cancel_requested)
    assert isinstance(reply, list | tuple)
    return [
        _item_outcome(item, claim, policy, cancel)
        for item, claim, cancel in zip(reply, claims, cancel_requested, strict=True)
    ]


def batch_failed(
    exc: Exception, claims: Sequence[ops.Claim], policy: Policy, cancel_requested: Sequence[bool]
) -> list[Settlement]:
    """A batch handler raised (or replied wrongly): every job of the batch fails alike."""
    return [
        _item_outcome(exc, claim, policy, cancel)
        for claim, cancel in zip(claims, cancel_requested, strict=True)
    ]


def _item_outcome(item: object, claim: ops.Claim, policy: Policy, cancel: bool) -> Settlement:
    """As for a single job: a failure of a job whose cancellation was requested while it
    ran ends it as cancelled."""
    if isinstance(item, Exception):
        return cancelled() if cancel else failed(item, claim, policy)
    return completed(item, policy)


def takes_job(handler: Handler) -> bool:
    """Handlers are ``fn(payload, job)``; ``fn(payload)`` is accepted too."""
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    return varargs or len(positional) >= 2


def is_async(handler: Handler) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004
    )


def worker_id() -> str:
    """host:pid:random, in the characters a worker name may use (it is written into JSON)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64]
    return f"{host}:{os.getpid()}:{ops.new_job_id()[:6]}"


class WorkerBase:
    """Settings both workers share; the loops (threads or tasks) live in each flavour."""

    #: Jobs run at once unless ``concurrency`` is given (threads cost more than tasks).
    default_concurrency = 4
    #: Batches run at once (with ``batch_size``) unless ``concurrency`` is given.
    default_batch_concurrency = 1

    # Kept by each flavour: the jobs it holds (running, or waiting in the batch being
    # filled) by (queue, job id, lease token), and how many batches are running.
    _running: dict[tuple[str, str, str], Any]
    _batches: int = 0

    def __init__(
        self,
        queues: Any,
        handler: Handler,
        *,
        concurrency: int | None = None,
        lease: float = 30.0,
        timeout: float | None = None,
        grace: float = 30.0,
        backoff: tuple[float, float] = (1.0, 300.0),
        max_result: int = codec.DEFAULT_MAX_RESULT,
        name: str | None = None,
        windows: str | Sequence[str] | None = None,
        timezone: str | None = None,
        clock: Clock | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        batch_size: int | None = None,
        batch_wait: float | None = None,
    ) -> None:
        if isinstance(queues, str) or hasattr(queues, "keys"):
            queues = [queues]
        names = [q if isinstance(q, str) else q.name for q in queues]
        if not names:
            raise ValidationError("a worker needs at least one queue")
        if not callable(handler):
            raise ValidationError(f"handler must be callable, not {handler!r}")
        self.batch_size, self.batch_wait = check_batch(batch_size, batch_wait)
        if concurrency is None:
            batched = self.batch_size is not None
            concurrency = self.default_batch_concurrency if batched else self.default_concurrency
        self.keys = [QueueKeys(check_queue_name(n)) for n in names]
        self.handler = handler
        self.concurrency = ops.check_int(concurrency, "concurrency")
        self.policy = Policy(
            lease=ops.seconds(lease, "lease", allow_zero=False),
            timeout=None if timeout is None else ops.seconds(timeout, "timeout", allow_zero=False),
            backoff_base=_backoff(backoff)[0],
            backoff_cap=_backoff(backoff)[1],
            max_result=ops.check_int(max_result, "max_result"),
        )
        self.grace = ops.seconds(grace, "grace")
        self.id = worker_id() if name is None else check_job_id(name)
        self.processed = 0
        self.failures = 0  # attempts that failed (retried or dead-lettered)
        self.started_at = 0  # ms since the epoch (this host's clock), set at the first beat
        self._takes_job, self._is_async = takes_job(handler), is_async(handler)
        self._troubles: dict[tuple[str, str], str] = {}  # (queue, what) -> error last logged
        self._gate = Gate.for_worker(windows, timezone, clock, [k.queue for k in self.keys])
        self._holds = rates.Holds(self.policy.tick)  # queues at their rate limit, left alone
        self._metrics_at = _metrics_at(metrics_host, metrics_port)
        self._metrics_token = exporter.token_from_env() if self._metrics_at else None
        self._metrics_server: exporter.MetricsServer | None = None
        self.metrics = exporter.WorkerMetrics(lambda: [k[0] for k in list(self._running)],
                                              self.concurrency)  # fmt: skip
        self._collector: Collector[Any] | None = None
        if self.batch_size is not None:
            self._collector = Collector(self.batch_size, self.batch_wait)

    def _window_pause(self, burst: bool, busy: bool) -> float | None:
        """What the claim loop does about the worker's windows (``notifyq.windows``): 0,
        claim now; seconds to wait (at most a tick, so ``stop()`` is prompt and the clock is
        read again) before it looks again; None, stop: a burst worker outside its windows
        that runs no job. Jobs already running go on, their leases renewed, and housekeeping
        goes on too: only claiming waits."""
        closed = self._gate.closed_for()
        if not closed:
            return 0.0
        if burst and not busy:
            log.info("worker %s: burst run ends here: its window is closed", self.id)
            return None
        return min(closed, self.policy.tick)

    def _args(self, job: Any) -> tuple[Any, ...]:
        return (job.payload, job) if self._takes_job else (job.payload,)

    # Metrics (``notifyq.exporter``): the outcome of every settled job and every failure of
    # the claim loop go through these, whichever flavour runs the loops.

    def _pause_after(self, exc: Exception, pause: float) -> float:
        self.metrics.claim_error(exc)
        return pause_after(exc, pause)

    def _serve_metrics(self) -> None:
        """Start serving ``GET /metrics`` if ``metrics_port`` was given (``run()`` calls it
        first: ``ValidationError`` if it cannot listen there, e.g. the port is taken)."""
        if self._metrics_at is not None and self._metrics_server is None:
            self._metrics_server = exporter.MetricsServer(
                *self._metrics_at, self.metrics.families, self._metrics_token
            )
            host, port = self._metrics_server.address
            log.info("worker %s: metrics at http://%s:%d/metrics", self.id, host, port)

    def _stop_metrics(self) -> None:
        server, self._metrics_server = self._metrics_server, None
        if server is not None:
            server.close()

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of the metrics endpoint while the worker runs (the port it got,
        with ``metrics_port=0``); None when it serves none (not running, no port)."""
        return None if self._metrics_server is None else self._metrics_server.address

    def _free(self) -> int:
        """How many jobs the claim loop may claim now.

        One job per free slot; with ``batch_size``, the batch being filled is first handed
        to its handler if it is due (full, or ``batch_wait`` passed since its first job),
        then the room left in the batch being filled, if fewer than ``concurrency`` batches
        run (a batch is filled only when it can start at once).
        """
        if self._collector is None:
            return self.concurrency - len(self._running)
        if due := self._collector.take_due(time.monotonic()):
            self._dispatch(due)
        return self._collector.room() if self._batches < self.concurrency else 0

    def _dispatch(self, runs: list[Any]) -> None:
        """Start a batch's handler (each flavour: a thread or a task)."""
        raise NotImplementedError

    # The Redis side of the worker loops, as flows: each driver runs them with its own I/O.

    def _claim_flow(self, free: int, block: float = 0) -> ops.Flow[list[ops.Claim]]:
        """Claim up to ``free`` jobs, from the queues in the order they were given.

        With ``block`` (seconds), first wait that long at most for an enqueue to wake the
        worker (BLPOP on the wake lists), with the first queue's claim pipelined behind the
        BLPOP: the server runs it the moment the BLPOP returns, so a woken worker holds its
        job after one round trip, not two. Queues at their rate limit are skipped until
        their window has room (``_rate_pause`` says how long to wait for that).
        """
        if self._collector is not None:  # wake when the batch being filled is due
            block = self._collector.block(block, time.monotonic())
        claims: list[ops.Claim] = []
        ready = self._holds.free(self.keys)  # not those at their rate limit
        for i, keys in enumerate(ready):
            if len(claims) >= free:
                break
            call = ops.claim_call(keys, self.id, free - len(claims), self.policy.lease_ms)
            if i == 0 and block:
                wake = [k.wake for k in ready]
                _, reply = yield ops.Pipeline([ops.Command("BLPOP", *wake, block), call])
            else:
                reply = yield call
            self._holds.hold(keys.queue, rates.wait_of(reply))
            got, refused = ops.claims(keys, reply)
            claims += got
            for r in refused:
                extra = job_extra(r.queue, r.id, worker=self.id)
                log.error("job %s of queue %s %s: %s", r.id, r.queue, r.fate, r.reason, extra=extra)
        return claims

    def _rate_pause(self, block: float) -> tuple[float, float]:
        """(seconds to sleep, seconds to block on the wake lists) for a claim that would block
        ``block`` seconds, given the queues held at their rate limit: the drivers sleep when
        every queue is held, and block only until the first one is free again."""
        return self._holds.block(self.keys, block)

    def _access_flow(self, url: str) -> ops.Flow[None]:
        """``AccessDenied`` if the server's ACL rules refuse this worker's user any command
        it needs on its queues: checked before the first claim, so a script refused midway
        cannot leave a job half moved (``notifyq.access``)."""
        return access.check(["worker"], self.keys, redact(url))

    def _drained_flow(self) -> ops.Flow[bool]:
        """True when no queue has a job pending or delayed (paused queues do not count)."""
        for keys in self.keys:
            if (yield from ops.backlog(keys)):
                return False
        return True

    def _beat_flow(self, held: list[ops.Claim], housekeeping: bool) -> ops.Flow[list[str]]:
        """Renew the leases of ``held`` (one call per queue), run each queue's housekeeping
        and refresh this worker's registry entries, all in one round trip; the verdict per
        claim, in order: 'ok', 'cancel', 'lost', or '' when its queue's renewal failed. A
        queue whose keys are corrupt fails its own calls only: the leases of the other
        queues are renewed."""
        renewals = []
        for keys in self.keys:
            mine = [i for i, c in enumerate(held) if c.queue == keys.queue]
            if mine:
                pairs = [(held[i].id, held[i].token) for i in mine]
                renewals.append((keys, mine, ops.renew_call(keys, pairs, self.policy.lease_ms)))
        upkeep = [(k, "run housekeeping", ops.maintain_call(k)) for k in self.keys if housekeeping]
        upkeep += [(k, "register", self._presence_call(k, held)) for k in self.keys]
        calls = [c for _, _, c in renewals] + [c for _, _, c in upkeep]
        replies = yield ops.Pipeline(calls, errors_as_replies=True)
        verdicts = [""] * len(held)
        for (keys, mine, _), reply in zip(renewals, replies[: len(renewals)], strict=True):
            if self._trouble(keys, "renew leases", reply):
                for i, verdict in zip(mine, reply, strict=True):
                    verdicts[i] = text(verdict) or ""
        for (keys, what, _), reply in zip(upkeep, replies[len(renewals) :], strict=True):
            self._trouble(keys, what, reply)
        return verdicts

    # The worker registry (``notifyq.registry``): who serves a queue, and what it runs.

    def _presence_call(self, keys: QueueKeys, held: list[ops.Claim]) -> ops.ScriptCall:
        """This worker's entry in ``keys``' registry, sent with every beat."""
        if not self.started_at:
            self.started_at = int(time.time() * 1000)
        mine = [c.id for c in held if c.queue == keys.queue]
        fields: dict[str, str | int] = {
            "host": socket.gethostname()[:255], "pid": os.getpid(),
            "started_at": self.started_at, "concurrency": self.concurrency,
            "queues": json.dumps([k.queue for k in self.keys]),
            "processed": self.processed, "failures": self.failures, "running": len(mine),
            "lost_after_ms": registry.lost_after_ms(self.policy.tick),
        }  # fmt: skip
        ttl = registry.ttl_ms(self.policy.lease_ms, self.policy.tick)
        return registry.beat_call(keys, self.id, fields, mine, ttl)

    def _leave_flow(self) -> ops.Flow[None]:
        """Delete this worker's registry entries: it stops cleanly."""
        return registry.leave(self.keys, self.id)

    def _about(self, claim: ops.Claim) -> dict[str, Any]:
        """The ``extra=`` of a log call about a job this worker runs."""
        return job_extra(claim.queue, claim.id, claim.attempt, self.id)

    def _settle_pause(self, exc: Exception, runs: Sequence[Any], pause: float) -> float | None:
        """After a settle call of ``runs`` failed with ``exc``: the pause before trying again,
        or None to give up, logged for each job: its queue's keys are corrupt (fixing them
        takes a person), or Redis stayed unavailable (or full) past every lease, so the jobs
        run again elsewhere."""
        if isinstance(exc, RedisUnavailable) and time.monotonic() <= max(
            r.lease_until for r in runs
        ):
            return pause
        for run in runs:
            log.error("job %s: could not store its outcome: %s", run.claim.id, exc,
                      extra=self._about(run.claim))  # fmt: skip
        return None

    def _note_states(
        self, settled: Sequence[tuple[ops.Claim, Settlement]], states: Sequence[str | Exception]
    ) -> None:
        """What a settle call answered for each job: count and log its new state; log a job
        whose queue's keys are corrupt (fixing them takes a person); raise any other refusal
        of a queue's call."""
        refused: Exception | None = None
        for (claim, outcome), state in zip(settled, states, strict=True):
            if isinstance(state, CorruptRecord):
                log.error("job %s: could not store its outcome: %s", claim.id, state,
                          extra=self._about(claim))  # fmt: skip
            elif isinstance(state, Exception):
                refused = state
            else:
                self._settled(claim, outcome, state)
        if refused is not None:
            raise refused

    def _settled(self, claim: ops.Claim, outcome: Settlement, state: str) -> None:
        """Count (failures, the metrics' duration and outcome) and log what became of a
        job this worker settled."""
        if state in ("retrying", "dead"):
            self.failures += 1
        report(claim, outcome, state, self.id)
        self.metrics.settled(claim, state)

    def _trouble(self, keys: QueueKeys, what: str, reply: Any) -> bool:
        """True if ``reply`` is not an error. An error is logged when it starts or changes
        (not at every beat), and its end when the queue works again."""
        known = self._troubles.get((keys.queue, what))
        if not isinstance(reply, Exception):
            if known is not None:
                del self._troubles[(keys.queue, what)]
                log.info("queue %s: %s works again", keys.queue, what)
            return True
        error = str(reply_error(reply))
        if error != known:
            self._troubles[(keys.queue, what)] = error
            log.error("queue %s: cannot %s: %s", keys.queue, what, error)
        return False


def _metrics_at(host: object, port: object) -> tuple[str, int] | None:
    """``Worker(metrics_port=, metrics_host=)``: a TCP port (0: any free one) and a host."""
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValidationError(f"metrics_port must be a port number (0 to 65535), not {port!r}")
    if not isinstance(host, str) or not host:
        raise ValidationError(f"metrics_host must be a host name or address, not {host!r}")
    return host, port


def _backoff(value: object) -> tuple[float, float]:
    """``Worker(backoff=(base, cap))``: seconds, ``base <= cap``."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValidationError(f"backoff must be (base, cap) in seconds, not {value!r}")
    base, cap = ops.seconds(value[0], "backoff base"), ops.seconds(value[1], "backoff cap")
    if base > cap:
        raise ValidationError(f"backoff base {base:g} s is more than its cap {cap:g} s")
    return base, cap
