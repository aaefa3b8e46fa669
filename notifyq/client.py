"""The blocking API: ``Queue`` and ``Job``. Each method runs one flow from ``ops.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar

import redis

from . import codec, events, ops, rates, registry, signals, tokens
from .connection import Backend, shared_backend
from .errors import JobNotFound, ValidationError
from .keys import QueueKeys, check_job_id, check_queue_name
from .waiting import MISSING

DEFAULT_WAIT_TIMEOUT = 60.0  # seconds


T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def page(start: object, count: object) -> tuple[int, int]:
    """A listing's ``start`` (>= 0) and ``count`` (an integer; 0 or less lists nothing)."""
    if isinstance(count, bool) or not isinstance(count, int):
        raise ValidationError(f"count must be an integer, not {count!r}")
    return ops.check_int(start, "start", least=0), count


def wait_limit(timeout: object) -> float | None:
    """``Job.wait(timeout=)``: seconds >= 0, or None for no limit."""
    return None if timeout is None else ops.seconds(timeout, "timeout")


class JobBase:
    """What both Job flavours share: identity. Methods that ask Redis live in each flavour."""

    __slots__ = ("_queue", "id")

    def __init__(self, queue: Any, job_id: str) -> None:
        self._queue = queue
        self.id = job_id

    @property
    def queue(self) -> str:
        """The name of the job's queue."""
        return self._queue.name  # type: ignore[no-any-return]

    def token(self, ttl: float = 3600, *, secret: bytes | None = None) -> str:
        """A token a browser can use to follow this job (and nothing else) for ``ttl``
        seconds. Signed with ``secret``, by default ``NOTIFYQ_SECRET``."""
        key = tokens.secret_from_env() if secret is None else secret
        return tokens.issue(key, self.queue, self.id, ttl=ttl)

    def __repr__(self) -> str:
        return f"Job({self.queue!r}, {self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobBase) and (other.queue, other.id) == (self.queue, self.id)

    def __hash__(self) -> int:
        return hash((self.queue, self.id))


class Job(JobBase):
    """A handle on one job. Cheap to make; every method asks Redis."""

    __slots__ = ()
    _queue: Queue

    def status(self) -> str:
        """The job's state: queued, delayed, active, retrying, completed, dead, cancelled."""
        return self._queue._run(ops.status(self._queue.keys, self.id))

    def result(self) -> Any:
        """The result if completed. Raises ``JobFailed`` (or ``JobCancelled``) if the job
        failed for good, ``ResultNotReady`` if it has not finished. Never blocks."""
        return self._queue._run(ops.result(self._queue.keys, self.id))

    def wait(self, timeout: float | None = DEFAULT_WAIT_TIMEOUT) -> Any:
        """Block until the job finishes and return its result (``JobFailed`` if it failed).

        Raises ``ResultTimeout`` after ``timeout`` seconds (``None``: wait forever).
        Race-free: it subscribes before it checks, so a completion cannot slip between.
        """
        limit = wait_limit(timeout)
        record = self._queue._backend.hub.wait(self._queue.keys, self.id, limit)
        if record is MISSING:
            raise JobNotFound(self.queue, self.id)
        return ops.outcome_value(record, self.id)  # type: ignore[arg-type]

    def cancel(self) -> str:
        """Cancel the job: 'cancelled' if it had not started, 'requested' if it is running
        (its worker is told at its next lease renewal), else its final state."""
        return self._queue._run(ops.cancel(self._queue.keys, self.id))

    def progress(self) -> Any:
        """The last progress value the handler reported (None if none)."""
        return self._queue._run(ops.progress(self._queue.keys, self.id))

    def info(self) -> dict[str, Any]:
        """The job record: state, attempts, times, payload, error, progress."""
        return self._queue._run(ops.info(self._queue.keys, self.id))


class QueueBase:
    """What both Queue flavours share: the name, its keys, argument checks."""

    def __init__(
        self, name: str, max_payload: int, replicas: int = 0, replica_timeout: float = 1.0
    ) -> None:
        self.name = check_queue_name(name)
        self.keys = QueueKeys(name)
        self.max_payload = ops.check_int(max_payload, "max_payload")
        self.durability = ops.durability(replicas, replica_timeout)

    def _enqueue(self, specs: list[ops.JobSpec]) -> ops.Flow[list[tuple[str, bool]]]:
        return ops.enqueue(self.keys, specs, self.durability)

    def _spec(self, payload: Any, **options: Any) -> ops.JobSpec:
        return ops.job_spec(payload, max_payload=self.max_payload, **options)

    def _batches(self, payloads: Iterable[Any], size: int, options: Any) -> list[list[ops.JobSpec]]:
        """Validate every payload first (nothing is written if one is bad), then batch."""
        ops.check_int(size, "batch_size")
        specs = [self._spec(p, **options) for p in payloads]
        return [specs[i : i + size] for i in range(0, len(specs), size)]

    def token(self, ttl: float = 3600, *, secret: bytes | None = None) -> str:
        """A token for this queue's dashboard: all its events and jobs, for ``ttl`` s."""
        key = tokens.secret_from_env() if secret is None else secret
        return tokens.issue(key, self.name, ttl=ttl)

    def on(self, event_type: str) -> Callable[[F], F]:
        """Decorator: call ``fn(sender, event=event)`` for this queue's events of a type
        ("completed", "failed", ...; "event" for all) while a ``Listener`` runs.

        Kept by a strong reference, so lambdas and closures work.
        """
        signal = signals.event if event_type == "event" else signals.BY_TYPE.get(event_type)
        if signal is None:
            kinds = ", ".join([*signals.BY_TYPE, "event"])
            raise ValidationError(f"unknown event type {event_type!r}: one of {kinds}")

        def connect(fn: F) -> F:
            signal.connect(fn, sender=self.name, weak=False)
            return fn

        return connect

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"


class Queue(QueueBase):
    """A named queue on a Redis server.

    ``url`` defaults to ``NOTIFYQ_URL``; with neither, an embedded Valkey server is started
    (see ``notifyq.embedded``). Pass ``client=`` to use a redis-py client you made.
    With ``replicas=N``, an enqueue returns only once N replicas hold it (``WAIT``, up to
    ``replica_timeout`` seconds), else raises ``NotReplicated``: a failover then cannot lose
    an acknowledged job.
    """

    def __init__(
        self,
        name: str,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        max_payload: int = codec.DEFAULT_MAX_PAYLOAD,
        replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        super().__init__(name, max_payload, replicas, replica_timeout)
        self._shared = client is None
        self._backend = (
            shared_backend(url) if client is None else Backend(url or "(client)", client)
        )
        self.url = self._backend.url

    @property
    def client(self) -> redis.Redis:
        return self._backend.client

    def _run(self, flow: ops.Flow[T]) -> T:
        return self._backend.run(flow)

    def enqueue(
        self,
        payload: Any,
        *,
        job_id: str | None = None,
        idempotency_key: str | None = None,
        delay: float | timedelta | None = None,
        priority: str | None = None,
        max_attempts: int = ops.DEFAULT_MAX_ATTEMPTS,
        timeout: float | timedelta | None = None,
        result_ttl: float | timedelta = ops.DEFAULT_RESULT_TTL,
        group: str | None = None,
    ) -> Job:
        """Put one job on the queue; durable in Redis when this returns.

        With an ``idempotency_key`` (or a ``job_id``) already used, returns the existing job.
        With a ``group`` (a tenant, a customer...), the job waits in its group's list and
        workers serve the groups that have waiting jobs in turn, one job each, oldest first
        within a group: a group that floods the queue cannot make the others wait behind it.
        """
        spec = self._spec(
            payload, job_id=job_id, idempotency_key=idempotency_key, delay=delay,
            priority=priority, max_attempts=max_attempts, timeout=timeout, result_ttl=result_ttl,
            group=group,
        )  # fmt: skip
        [(found, _)] = self._run(self._enqueue([spec]))
        return Job(self, found)

    def enqueue_many(
        self, payloads: Iterable[Any], *, batch_size: int = 1000, **options: Any
    ) -> list[Job]:
        """Enqueue many jobs, one round trip per ``batch_size``; ``options`` as ``enqueue``.

        Every payload is validated before anything is written.
        """
        jobs: list[Job] = []
        for batch in self._batches(payloads, batch_size, options):
            jobs += [Job(self, found) for found, _ in self._run(self._enqueue(batch))]
        return jobs

    def job(self, job_id: str) -> Job:
        """The job with this id; ``JobNotFound`` if there is none."""
        job = Job(self, check_job_id(job_id))
        job.status()
        return job

    def stats(self) -> dict[str, Any]:
        """Counts: pending (by priority; in groups, and how many groups), active, delayed,
        dead, quarantined, totals; and ``paused``, ``rate_limit`` (``{"jobs", "per"}`` or
        None)."""
        return self._run(ops.stats(self.keys))

    def workers(self) -> list[dict[str, Any]]:
        """The workers serving this queue, most recent beat first: id, host, pid, queues,
        started_at, last_beat, alive (False: lost), processed, failures, the jobs they run
        here (``notifyq.registry``)."""
        return self._run(registry.workers(self.keys))

    def dead_letters(self, start: int = 0, count: int = 100) -> list[dict[str, Any]]:
        """Dead-lettered jobs, newest first, each with its recorded error."""
        return self._run(ops.dead_letters(self.keys, *page(start, count)))

    def quarantined(self, start: int = 0, count: int = 100) -> list[dict[str, Any]]:
        """Ids set aside because their record was not a notifyq job, newest first:
        ``{"id", "reason", "at"}`` each (``at``: ms since the epoch)."""
        return self._run(ops.quarantined(self.keys, *page(start, count)))

    def requeue(self, job_id: str) -> Job:
        """Put a dead-lettered job back on the queue with fresh attempts."""
        if not self._run(ops.requeue(self.keys, job_id)):
            raise JobNotFound(self.name, job_id, where="the dead letters of queue")
        return Job(self, job_id)

    def purge_dead(self) -> int:
        """Delete every dead-lettered job; returns how many."""
        return self._run(ops.purge_dead(self.keys))

    def set_events_maxlen(self, maxlen: int) -> None:
        """Keep about ``maxlen`` events in the queue's stream (default 10,000): how far back
        a disconnected listener can catch up."""
        self._run(events.set_events_maxlen(self.keys, maxlen))

    def set_rate_limit(self, jobs: int, per: float | timedelta) -> None:
        """Start at most ``jobs`` jobs of this queue in any window of ``per`` seconds, across
        all workers (retries and re-deliveries count); the rest wait in the queue. Takes
        effect at once, for every worker (docs/rate-limits.md)."""
        self._run(rates.set_limit(self.keys, jobs, per))

    def clear_rate_limit(self) -> None:
        """Lift the rate limit: workers start jobs as fast as they can again."""
        self._run(rates.clear_limit(self.keys))

    def rate_limit(self) -> rates.RateLimit | None:
        """The rate limit as ``(jobs, per)`` (seconds), or None when there is none."""
        return self._run(rates.get_limit(self.keys))

    def pause(self) -> None:
        """Stop workers from claiming jobs of this queue; enqueues still succeed."""
        self._run(ops.pause(self.keys))

    def resume(self) -> None:
        self._run(ops.resume(self.keys))

    def close(self) -> None:
        """With ``client=``: close the wait hub made for it (the client stays yours).
        Queues on a URL share the process's connections: ``notifyq.connection.close_shared()``."""
        if not self._shared:
            self._backend.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
