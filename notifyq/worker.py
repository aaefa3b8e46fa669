"""The blocking worker: a claim loop, a pool of handler threads and a heartbeat thread.

* The claim loop takes as many jobs as it has free threads, in one script call per queue,
  and blocks on the queues' wake lists (BLPOP) when there is nothing to take.
* Each handler thread runs one job and settles it (result, retry or dead letter).
* The heartbeat renews the leases of running jobs, tells handlers about cancellation and
  lost leases, fails jobs past their timeout, and runs queue housekeeping.

SIGTERM/SIGINT (when ``run`` is called from the main thread): stop claiming, give running
jobs ``grace`` seconds to finish, then hand the rest back to their queues.
"""

from __future__ import annotations

import asyncio
import logging
import queue as stdlib_queue
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import redis
from redis.exceptions import ResponseError

from . import ops
from .client import Queue
from .connection import Backend, shared_backend
from .errors import CorruptRecord, NotifyQError, RedisUnavailable
from .execution import (
    ActiveJobBase,
    Handler,
    Policy,
    WorkerBase,
    batch_failed,
    batch_limit,
    batch_outcomes,
    completed,
    decode_payload,
    failed,
    raise_outage,
    settle_cut,
    timed_out,
    unreadable,
)
from .execution import cancelled as cancelled_settlement
from .ops import Settlement

log = logging.getLogger("notifyq.worker")


class ActiveJob(ActiveJobBase):
    """The job as its handler sees it: ``payload``, ``attempt``, ``cancelled``, progress."""

    def set_progress(self, value: Any) -> bool:
        """Record progress (any JSON value); False if this worker lost the job's lease."""
        body = self._progress_body(value)
        return self._backend.run(ops.set_progress(self._claim, body))  # type: ignore[no-any-return]


class _Run:
    """A job in flight: its claim, handler-facing job, and who settles it."""

    def __init__(self, claim: ops.Claim, job: ActiveJob | None, policy: Policy) -> None:
        self.claim, self.job = claim, job
        limit = policy.job_timeout(claim)
        self.limit = limit
        self.deadline = None if limit is None else time.monotonic() + limit
        self.lease_until = time.monotonic() + policy.lease
        self.cancel_requested = False
        self._settled = False
        self._lock = threading.Lock()

    def take_settlement(self) -> bool:
        """True for the first caller only: the handler thread or the heartbeat settles."""
        with self._lock:
            if self._settled:
                return False
            self._settled = True
            return True


class _Slot:
    __slots__ = ("claim", "done", "error", "outcome", "state")

    def __init__(self, claim: ops.Claim, outcome: Settlement) -> None:
        self.claim, self.outcome = claim, outcome
        self.done = False
        self.state: str | Exception = ""  # an Exception: this job's queue refused its call
        self.error: Exception | None = None  # the whole settle call failed

    def set(self, state: str | Exception, error: Exception | None) -> None:
        self.done = True
        self.state, self.error = state, error


class _Settler:
    """Group commit: outcomes that come while a settle call is in flight go together in the
    next one, sent by the first thread to find no call in flight. A busy worker settles
    many jobs per round trip; an idle one waits for none."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._changed = threading.Condition()
        self._pending: list[list[_Slot]] = []  # groups that go in one call each
        self._busy = False

    def settle_many(self, outcomes: list[tuple[ops.Claim, Settlement]]) -> list[str | Exception]:
        """Settle ``outcomes`` together (one call, or the same call as other waiting ones);
        per job its new state, or the error its queue's script answered. An error of the
        whole call (``RedisUnavailable``...) is raised."""
        if not outcomes:
            return []
        group = [_Slot(claim, outcome) for claim, outcome in outcomes]
        with self._changed:
            self._pending.append(group)
        while True:
            with self._changed:
                while self._busy and not group[0].done:
                    self._changed.wait()
                if group[0].done:  # a group is sent whole: its slots are done together
                    if group[0].error is not None:
                        raise group[0].error
                    return [slot.state for slot in group]
                self._busy = True
                n = settle_cut([len(g) for g in self._pending])
                batch = [slot for g in self._pending[:n] for slot in g]
                del self._pending[:n]
            self._send(batch)

    def _send(self, batch: list[_Slot]) -> None:
        error: Exception | None = None
        states: list[str | Exception]
        try:
            states = self._backend.run(ops.settle([(s.claim, s.outcome) for s in batch]))
        except Exception as exc:  # each waiter decides (RedisUnavailable: retry)
            error, states = exc, [""] * len(batch)
        with self._changed:
            for slot, state in zip(batch, states, strict=True):
                slot.set(state, error)
            self._busy = False
            self._changed.notify_all()


class Worker(WorkerBase):
    """Runs ``handler(payload, job)`` for jobs of ``queues`` in ``concurrency`` threads.

    ``lease``: seconds a claim holds unless renewed (renewed every ``min(lease/3, 1s)``);
    ``timeout``: default per-job limit; ``grace``: seconds running jobs get at shutdown;
    ``backoff``: (base, cap) seconds of the retry delay; ``url``/``client`` as ``Queue``;
    ``windows``, ``timezone``, ``clock``: claim only inside these hours (``notifyq.windows``).
    """

    def __init__(
        self,
        queues: str | Queue | Sequence[str | Queue],
        handler: Handler,
        *,
        url: str | None = None,
        client: redis.Redis | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(queues, handler, **settings)
        first = (
            queues[0] if isinstance(queues, Sequence) and not isinstance(queues, str) else queues
        )
        if client is not None:
            self._backend = Backend(url or "(client)", client)
        elif url is None and isinstance(first, Queue):
            self._backend = first._backend
        else:
            self._backend = shared_backend(url)
        self._settler = _Settler(self._backend)
        self._running: dict[tuple[str, str, str], _Run] = {}  # (queue, job id, lease token)
        self._changed = threading.Condition()
        # a job, a batch of jobs (with ``batch_size``), or None: the thread ends
        self._work: stdlib_queue.SimpleQueue[_Run | list[_Run] | None] = stdlib_queue.SimpleQueue()
        self._stop = threading.Event()

    # ------------------------------------------------------------ lifecycle

    def run(self, *, burst: bool = False) -> None:
        """Work until ``stop()`` or a signal; with ``burst``, until no job is left to do."""
        self._stop.clear()
        self._serve_metrics()
        threads = [
            threading.Thread(target=self._thread_main, name=f"notifyq-job-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        heartbeat = threading.Thread(target=self._heartbeat, name="notifyq-hb", daemon=True)
        threads.append(heartbeat)
        for t in threads:
            t.start()
        log.info("worker %s started on %s", self.id, ", ".join(k.queue for k in self.keys))
        with self._signals():
            try:
                self._claim_loop(burst)
            finally:
                self._stop.set()
                self._shutdown()
                for _ in range(self.concurrency):
                    self._work.put(None)
                self._leave(heartbeat)
                self._stop_metrics()
        log.info("worker %s stopped after %d job runs", self.id, self.processed)

    def stop(self) -> None:
        """Stop claiming; running jobs get the grace period. Safe from any thread."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()

    def _leave(self, heartbeat: threading.Thread) -> None:
        """Delete this worker's registry entries once the heartbeat (which writes them)
        has ended; if that fails, they expire by themselves."""
        heartbeat.join(self.policy.tick + 5.0)
        try:
            self._backend.run(self._leave_flow())
        except Exception as exc:
            log.warning("worker %s: registry entry left to expire: %s", self.id, exc)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: FrameType | None) -> None:
            log.info("worker %s: signal %d, shutting down", self.id, signum)
            self.stop()

        previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    # ------------------------------------------------------------ claiming

    def _claim_loop(self, burst: bool) -> None:
        outage, block = 0.0, 0.0
        idle = 0.1 if burst else self.policy.tick  # longest block on the wake lists
        checked = False
        while not self._stop.is_set():
            try:
                if not checked:  # AccessDenied ends the worker before it touches a job
                    self._backend.run(self._access_flow(self._backend.url))
                    checked = True
                pause = self._window_pause(burst, busy=bool(self._running))
                if pause is None:
                    return
                if pause:  # outside its windows: claim nothing, look again soon
                    block = 0.0
                    self._stop.wait(pause)
                    continue
                free = self._free()
                if free <= 0:
                    with self._changed:
                        if len(self._running) >= self.concurrency and not self._stop.is_set():
                            self._changed.wait(self.policy.tick)
                    continue
                got = self._claim(free, block)
                outage = 0.0
                if got == free:
                    block = 0.0  # maybe more: claim again at once
                    continue
                if not got and burst and not self._running and self._drained():
                    return
                block = idle  # the queues are drained: block until an enqueue wakes us
            except (RedisUnavailable, CorruptRecord, ResponseError) as exc:
                # Redis unreachable, or a queue key that something else overwrote: pause,
                # longer each time, until it is back or fixed
                outage = self._pause_after(exc, outage)
                self._stop.wait(outage)

    def _claim(self, free: int, block: float = 0) -> int:
        sleep, block = self._rate_pause(block)
        if sleep and self._stop.wait(sleep):  # every queue at its rate limit
            return 0
        claims = self._backend.run(self._claim_flow(free, block))
        for claim in claims:
            self._start(claim)
        return len(claims)

    def _drained(self) -> bool:
        return self._backend.run(self._drained_flow())

    def _start(self, claim: ops.Claim) -> None:
        try:
            payload = decode_payload(claim)
            job = ActiveJob(claim, payload, self._backend)
        except NotifyQError as exc:
            run = _Run(claim, None, self.policy)
            with self._changed:
                self._running[(claim.queue, claim.id, claim.token)] = run
            self._finish(run, unreadable(exc, claim, self.policy))
            return
        run = _Run(claim, job, self.policy)
        with self._changed:
            self._running[(claim.queue, claim.id, claim.token)] = run
        if self._collector is not None:
            run.deadline = None  # a batch's time limit starts when its handler is called
            self._collector.add(run, time.monotonic())
        else:
            self._work.put(run)

    # ------------------------------------------------------------ running

    def _thread_main(self) -> None:
        loop: asyncio.AbstractEventLoop | None = None
        while (run := self._work.get()) is not None:
            if isinstance(run, list):
                loop = self._run_batch(run, loop)
                continue
            assert run.job is not None
            try:
                args = self._args(run.job)
                if self._is_async:
                    loop = loop or asyncio.new_event_loop()
                    value = loop.run_until_complete(self.handler(*args))
                else:
                    value = self.handler(*args)
                outcome = completed(value, self.policy)
            except Exception as exc:
                if run.cancel_requested:
                    outcome = cancelled_settlement()
                else:
                    outcome = failed(exc, run.claim, self.policy)
            try:
                self._finish(run, outcome)
            except Exception:
                log.exception(
                    "job %s: could not settle; its lease will lapse", run.claim.id,
                    extra=self._about(run.claim),
                )  # fmt: skip
        if loop is not None:
            loop.close()

    def _finish(self, run: _Run, outcome: Settlement) -> None:
        try:
            if run.take_settlement():
                self._settle(run, outcome)
        finally:
            with self._changed:
                self._running.pop((run.claim.queue, run.claim.id, run.claim.token), None)
                self.processed += 1
                self._changed.notify_all()

    def _settle(self, run: _Run, outcome: Settlement) -> None:
        self._settle_many([(run, outcome)])

    def _settle_many(self, outcomes: list[tuple[_Run, Settlement]]) -> None:
        """Store the outcomes, in one settle call; on an outage retry while a lease may
        still hold."""
        if not outcomes:
            return
        delay = 0.05
        while True:
            try:
                states = self._settler.settle_many([(r.claim, o) for r, o in outcomes])
                raise_outage(states)  # a full server refused the queue's call: retry it
                break
            except (RedisUnavailable, CorruptRecord) as exc:
                pause = self._settle_pause(exc, [r for r, _ in outcomes], delay)
                if pause is None:
                    return
                time.sleep(pause)
                delay = min(pause * 2, 1.0)
        self._note_states([(r.claim, o) for r, o in outcomes], states)

    # ------------------------------------------------------------ batches

    def _dispatch(self, runs: list[_Run]) -> None:
        with self._changed:
            self._batches += 1
        self._work.put(runs)  # a thread is free: at most ``concurrency`` batches run

    def _run_batch(
        self, runs: list[_Run], loop: asyncio.AbstractEventLoop | None
    ) -> asyncio.AbstractEventLoop | None:
        """Call the handler with the batch's jobs and settle each job, all in one call; the
        event loop of this thread (made for an ``async def`` handler) is handed back."""
        claims = [r.claim for r in runs]
        limit = batch_limit(claims, self.policy)
        started = time.monotonic()
        for r in runs:  # the heartbeat fails every job of the batch once the limit passes
            r.limit, r.deadline = limit, None if limit is None else started + limit
        try:
            try:
                jobs = [r.job for r in runs]
                if self._is_async:
                    loop = loop or asyncio.new_event_loop()
                    reply = loop.run_until_complete(self.handler(jobs))
                else:
                    reply = self.handler(jobs)
                cancels = [r.cancel_requested for r in runs]
                outcomes = batch_outcomes(reply, claims, self.policy, cancels)
            except Exception as exc:
                cancels = [r.cancel_requested for r in runs]
                outcomes = batch_failed(exc, claims, self.policy, cancels)
            self._settle_many([(r, o) for r, o in zip(runs, outcomes, strict=True)
                               if r.take_settlement()])  # fmt: skip
        except Exception:
            log.exception("jobs %s: could not settle; their leases will lapse",
                          ", ".join(c.id for c in claims))  # fmt: skip
        finally:
            self._finish_batch(runs)
        return loop

    def _finish_batch(self, runs: list[_Run]) -> None:
        with self._changed:
            self._batches -= 1
            for r in runs:
                self._running.pop((r.claim.queue, r.claim.id, r.claim.token), None)
            self.processed += len(runs)
            self._changed.notify_all()

    def _release_filling(self) -> None:
        """At shutdown: the jobs of the batch being filled go back to their queues at once
        (their handler was never called), in one call."""
        if self._collector is None or not self._collector.runs:
            return
        runs = [r for r in self._collector.take() if r.take_settlement()]
        try:
            self._settle_many([(r, Settlement("release", "")) for r in runs])
            log.info("jobs %s released back to their queue", ", ".join(r.claim.id for r in runs))
        except NotifyQError as exc:
            log.error("release failed (%s); the leases will lapse", exc)
        with self._changed:
            for r in runs:
                self._running.pop((r.claim.queue, r.claim.id, r.claim.token), None)
            self._changed.notify_all()

    # ------------------------------------------------------------ heartbeat

    def _heartbeat(self) -> None:
        """Beat every tick until stopped with nothing left running (grace period included)."""
        while not (self._stop.is_set() and not self._running):
            if self._stop.is_set():
                time.sleep(self.policy.tick)  # stopping: keep renewing what still runs
            else:
                self._stop.wait(self.policy.tick)
            try:
                self._beat()
            except RedisUnavailable as exc:
                log.warning("heartbeat: %s", exc)
            except Exception:
                log.exception("heartbeat failed")

    def _beat(self) -> None:
        now = time.monotonic()
        with self._changed:
            runs = list(self._running.values())
        expired = []  # settled in one call: a batch's jobs time out together
        for run in runs:
            if run.deadline is not None and now > run.deadline and run.take_settlement():
                assert run.limit is not None
                if run.job:
                    run.job._cancel.set()
                expired.append((run, timed_out(run.claim, run.limit, self.policy)))
        self._settle_many(expired)
        flow = self._beat_flow([r.claim for r in runs], not self._stop.is_set())
        for r, verdict in zip(runs, self._backend.run(flow), strict=True):
            if verdict in ("ok", "cancel"):
                r.lease_until = now + self.policy.lease
            if verdict in ("cancel", "lost") and r.job and not r.job.cancelled:
                r.cancel_requested = verdict == "cancel"
                r.job._cancel.set()

    def _shutdown(self) -> None:
        """Let running jobs finish within the grace period, then release the rest."""
        self._release_filling()
        deadline = time.monotonic() + self.grace
        with self._changed:
            while self._running and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            left = list(self._running.values())
            self._running.clear()
        for run in left:
            if run.take_settlement():
                if run.job:
                    run.job._cancel.set()
                try:
                    self._settle(run, Settlement("release", ""))
                    log.info("job %s released back to its queue", run.claim.id,
                             extra=self._about(run.claim))  # fmt: skip
                except NotifyQError as exc:
                    log.error(
                        "job %s: release failed (%s); its lease will lapse", run.claim.id, exc,
                        extra=self._about(run.claim),
                    )  # fmt: skip
