"""What notifyq measures for Prometheus, and the small HTTP server a worker serves it on.

Two kinds of series (``docs/metrics.md`` lists them all):

* **queue-wide**, read from Redis when scraped (``read_queue``, ``queue_families``): the
  depths of a queue, its lifetime counters (the ``stats`` hash the scripts count into,
  shared by every worker, so ``rate()`` of them is the queue's throughput however many
  workers there are) and the lag of the named listeners' consumer groups. A gateway with
  ``metrics=True`` serves them, once for the whole deployment;
* **process-local**, kept in memory as things happen: a worker's job durations, outcomes,
  running jobs and claim errors (``WorkerMetrics``); a gateway's clients and events.

A scrape is answered with what the process holds; only the gateway's queue-wide part
talks to Redis, and within a time limit.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import ops
from .codec import text
from .errors import CorruptRecord, RedisUnavailable, ValidationError
from .keys import QueueKeys
from .metrics import CONTENT_TYPE, Family, Registry, render
from .ops import Command, Flow, Pipeline

log = logging.getLogger("notifyq.metrics")

#: The environment variable holding the bearer token a scrape must send, when set.
TOKEN_ENV = "NOTIFYQ_METRICS_TOKEN"  # noqa: S105 (a variable name)
#: Seconds a gateway's scrape may spend reading the queues from Redis.
SCRAPE_TIMEOUT = 5.0
#: Most queues one gateway reports (each costs two round trips per scrape).
MAX_QUEUES = 1000

#: The counters the scripts keep in ``nq:{q}:stats`` (``count(base, ...)`` in
#: ``notifyq/scripts``), as ``notifyq_queue_<field>_total``. A field not listed here is
#: reported too, under the same pattern, if its name is a valid metric name part.
QUEUE_COUNTERS = {
    "enqueued": "Jobs enqueued (a repeat of an idempotency key not counted).",
    "completed": "Jobs completed.",
    "failed": "Failed attempts (a handler error or timeout), retried or dead-lettered.",
    "dead": "Jobs dead-lettered.",
    "cancelled": "Jobs cancelled.",
    "lease_expired": "Attempts whose worker lost its lease; the job was queued again.",
    "requeued": "Dead jobs put back on the queue.",
    "quarantined": "Ids set aside because their record is not a notifyq job.",
}
_FIELD = re.compile(r"[a-z][a-z0-9_]{0,62}")
DEPTHS = ("pending", "active", "delayed", "dead")


# ---------------------------------------------------------------- queue-wide, from Redis


@dataclass(frozen=True, slots=True)
class QueueReading:
    """What one scrape read of one queue: ``ops.stats`` and its listener groups as
    (group, lag or None when the server cannot say, pending)."""

    stats: dict[str, Any]
    groups: list[tuple[str, int | None, int]]


def read_queue(keys: QueueKeys) -> Flow[QueueReading]:
    """A queue's stats (the flow ``Queue.stats()`` runs) and ``XINFO GROUPS`` of its event
    stream: each group there is a named listener's. Two round trips, one slot."""
    stats = yield from ops.stats(keys)
    [groups] = yield Pipeline([Command("XINFO", "GROUPS", keys.events)], errors_as_replies=True)
    found = []
    if not isinstance(groups, Exception):  # no stream yet: no group either
        for group in groups:
            info = _info(group)
            lag = info.get("lag")
            found.append(
                (text(info.get("name")) or "", None if lag is None else int(lag),
                 int(info.get("pending") or 0))
            )  # fmt: skip
    return QueueReading(stats, found)


def _info(reply: Any) -> dict[str, Any]:
    if isinstance(reply, dict):
        return {str(text(k)): v for k, v in reply.items()}
    return {str(text(reply[i])): reply[i + 1] for i in range(0, len(reply), 2)}


def queue_families(readings: Sequence[tuple[str, QueueReading | None]]) -> list[Family]:
    """The queue-wide families of the queues read, in the order given: (queue, its
    reading, or None when it could not be read)."""
    up = Family("notifyq_queue_up", "gauge", "1 if the queue could be read for this scrape.")
    depth = Family("notifyq_queue_jobs", "gauge", "Jobs of the queue in each state now.")
    paused = Family("notifyq_queue_paused", "gauge", "1 while the queue is paused.")
    quarantine = Family(
        "notifyq_queue_quarantined", "gauge", "Entries of the queue's quarantine list."
    )
    counters: dict[str, Family] = {
        name: Family(f"notifyq_queue_{name}_total", "counter", f"{about} (nq:{{q}}:stats)")
        for name, about in QUEUE_COUNTERS.items()
    }
    lag = Family(
        "notifyq_listener_lag_events",
        "gauge",
        "Events of the queue's stream a named listener's group has not read yet.",
    )
    pending = Family(
        "notifyq_listener_pending_events",
        "gauge",
        "Events a named listener's group has read and not yet acknowledged.",
    )
    for name, reading in readings:
        up.samples.append(("", {"queue": name}, int(reading is not None)))
        if reading is None:
            continue
        stats = reading.stats
        queue = {"queue": name}
        depth.samples += [("", {**queue, "state": s}, stats[s]) for s in DEPTHS]
        paused.samples.append(("", queue, int(stats["paused"])))
        quarantine.samples.append(("", queue, stats["quarantined"]))
        totals = stats["totals"]
        for field in [*QUEUE_COUNTERS, *sorted(set(totals) - set(QUEUE_COUNTERS))]:
            if field not in counters:
                if not _FIELD.fullmatch(field):
                    continue  # something else wrote it: not a name we can write out
                about = f"Lifetime count '{field}' of the queue (nq:{{q}}:stats)."
                counters[field] = Family(f"notifyq_queue_{field}_total", "counter", about)
            counters[field].samples.append(("", queue, totals.get(field, 0)))
        for group, behind, held in reading.groups:
            labels = {**queue, "group": group}
            if behind is not None:
                lag.samples.append(("", labels, behind))
            pending.samples.append(("", labels, held))
    return [up, depth, paused, quarantine, *counters.values(), lag, pending]


#: A gateway's own series: (name, type, help, key of its counts).
GATEWAY = [
    ("notifyq_gateway_clients", "gauge", "WebSocket clients connected now.", "clients"),
    ("notifyq_gateway_subscriptions", "gauge", "Subscriptions of the connected clients.",
     "subscriptions"),
    ("notifyq_gateway_connections_total", "counter", "WebSocket connections accepted.",
     "connections"),
    ("notifyq_gateway_events_received_total", "counter",
     "Events received on the queues' channels (once per gateway, however many follow them).",
     "events_received"),
    ("notifyq_gateway_events_sent_total", "counter",
     "Events queued to clients, live or replayed (one per subscriber).", "events_sent"),
    ("notifyq_gateway_slow_consumers_total", "counter",
     "Clients cut off because they did not read what they were sent (close 4001).",
     "slow_consumers"),
    ("notifyq_gateway_http_enqueued_total", "counter", "Jobs enqueued with POST /queues/<q>/jobs.",
     "http_enqueued"),
]  # fmt: skip


def gateway_families(clients: int, subscriptions: int, counts: Mapping[str, int]) -> list[Family]:
    values = {**counts, "clients": clients, "subscriptions": subscriptions}
    return [
        Family(n, kind, about, [("", {}, values.get(key, 0))]) for n, kind, about, key in GATEWAY
    ]


# ---------------------------------------------------------------- a worker's own


class WorkerMetrics:
    """A worker's series: updated where a job's outcome is stored and where the claim
    loop fails (``WorkerBase``), read by the scrape thread."""

    def __init__(self, running: Callable[[], Iterable[str]], concurrency: int) -> None:
        self._running, self.concurrency = running, concurrency
        self.registry = Registry()
        self.duration = self.registry.histogram(
            "notifyq_job_duration_seconds",
            "Seconds from a job's claim to its outcome being stored, by outcome.",
            ("queue", "outcome"),
        )
        self.jobs = self.registry.counter(
            "notifyq_worker_jobs_total", "Job attempts this worker settled, by outcome.",
            ("queue", "outcome"),
        )  # fmt: skip
        self.claim_errors = self.registry.counter(
            "notifyq_worker_claim_errors_total",
            "Failures of the claim loop: Redis unavailable, or a queue key it cannot use.",
            ("reason",),
        )

    def settled(self, claim: ops.Claim, state: str) -> None:
        """A job's outcome was stored (or refused: ``stale``, ``corrupt``); ``state`` is
        what ``settle.lua`` answered, 'queued' meaning released at shutdown."""
        outcome = "released" if state == "queued" else state
        self.duration.observe(time.monotonic() - claim.claimed_at, queue=claim.queue,
                              outcome=outcome)  # fmt: skip
        self.jobs.inc(queue=claim.queue, outcome=outcome)

    def claim_error(self, exc: Exception) -> None:
        if isinstance(exc, RedisUnavailable):
            reason = "redis_unavailable"
        elif isinstance(exc, CorruptRecord):
            reason = "corrupt_key"
        else:
            reason = "error"
        self.claim_errors.inc(reason=reason)

    def families(self) -> list[Family]:
        running = Family(
            "notifyq_worker_jobs_running", "gauge", "Jobs this worker is running now, by queue."
        )
        running.samples = [("", {"queue": q}, n) for q, n in sorted(Tally(self._running()).items())]
        slots = Family("notifyq_worker_concurrency", "gauge", "Jobs this worker may run at once.")
        slots.samples = [("", {}, self.concurrency)]
        return [*self.registry.collect(), running, slots]


# ---------------------------------------------------------------- the endpoint


def token_from_env() -> str | None:
    """The bearer token a scrape must send (``NOTIFYQ_METRICS_TOKEN``), or None."""
    return check_token(os.environ.get(TOKEN_ENV) or None)


def check_token(token: str | None) -> str | None:
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        raise ValidationError(f"the metrics token ({TOKEN_ENV}) must be 16 characters or more")
    return token


def authorised(header: str | None, token: str | None) -> bool:
    """Does ``Authorization: <header>`` carry ``token`` (always, when there is no token)?
    Compared in constant time."""
    if token is None:
        return True
    given = (header or "")[7:] if (header or "")[:7].lower() == "bearer " else ""
    return hmac.compare_digest(given.strip().encode(), token.encode())


class MetricsServer:
    """``GET /metrics`` on a stdlib HTTP server in a daemon thread: it serves a blocking
    worker and an asyncio worker alike, since ``collect`` reads memory only."""

    def __init__(
        self, host: str, port: int, collect: Callable[[], list[Family]], token: str | None
    ) -> None:
        self._collect, self._token = collect, token
        handler = type("Handler", (_Handler,), {"server_of": self})
        try:
            self._http = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            # a port in use or an address not of this host: the setting, not the code
            raise ValidationError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        self._http.daemon_threads = True
        self._thread = threading.Thread(
            target=self._http.serve_forever, args=(0.5,), name="notifyq-metrics", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    server_of: MetricsServer
    timeout = 10  # seconds a client may take to send its request
    server_version = "notifyq"

    def do_GET(self) -> None:  # the name http.server calls
        metrics = self.server_of
        if self.path.partition("?")[0] != "/metrics":
            self._answer(404, b"not found\n", "text/plain; charset=utf-8")
        elif not authorised(self.headers.get("Authorization"), metrics._token):
            self._answer(401, b"a valid bearer token is required\n", "text/plain; charset=utf-8",
                         {"WWW-Authenticate": "Bearer"})  # fmt: skip
        else:
            self._answer(200, render(metrics._collect()).encode(), CONTENT_TYPE)

    def _answer(
        self, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": kind, "Content-Length": str(len(body)),
                            "Cache-Control": "no-store", **(headers or {})}.items():  # fmt: skip
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics: " + format, *args)
