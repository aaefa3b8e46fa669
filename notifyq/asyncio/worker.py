"""The asyncio worker: each job a task, one heartbeat task, one claim loop.

The same rules as the blocking worker (``notifyq.worker``), with what tasks add: a job
past its timeout, cancelled by a caller, or whose lease is lost is really stopped (its
task is cancelled). Plain (non-async) handlers run in a thread so they cannot block the
loop. SIGTERM/SIGINT stop it gracefully when ``run`` is awaited in the main thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from .. import ops
from ..connection import resolve_url
from ..errors import CorruptRecord, NotifyQError, RedisUnavailable
from ..execution import (
    ActiveJobBase,
    Handler,
    WorkerBase,
    batch_failed,
    batch_limit,
    batch_outcomes,
    cancelled,
    completed,
    decode_payload,
    failed,
    raise_outage,
    settle_cut,
    timed_out,
    unreadable,
)
from ..ops import Settlement
from .client import Queue
from .connection import Backend, shared_backend

log = logging.getLogger("notifyq.worker")


class ActiveJob(ActiveJobBase):
    """The job as its handler sees it: ``payload``, ``attempt``, ``cancelled``, progress."""

    async def set_progress(self, value: Any) -> bool:
        """Record progress (any JSON value); False if this worker lost the job's lease."""
        body = self._progress_body(value)
        return await self._backend.run(ops.set_progress(self._claim, body))  # type: ignore[no-any-return]


class _Run:
    __slots__ = ("claim", "job", "lease_until", "limit", "settling", "stop_reason", "task")

    def __init__(self, claim: ops.Claim, job: ActiveJob | None, lease: float, limit: float | None):
        self.claim, self.job, self.limit = claim, job, limit
        self.lease_until = time.monotonic() + lease
        self.stop_reason: str | None = None  # cancel | lost | release
        self.task: asyncio.Task[None] | None = None
        self.settling = False

    def stop(self, reason: str) -> None:
        if self.stop_reason is None and self.task is not None and not self.settling:
            self.stop_reason = reason
            if self.job:
                self.job._cancel.set()
            self.task.cancel()


class _BatchRun(_Run):
    """A job of a batch. The batch is one task for all its jobs, so a cancel request or a
    lost lease only sets this job's ``cancelled`` flag (the batch goes on for the others);
    a release at shutdown stops the batch's task."""

    __slots__ = ("cancel_requested",)

    def __init__(self, claim: ops.Claim, job: ActiveJob, lease: float) -> None:
        super().__init__(claim, job, lease, None)
        self.cancel_requested = False

    def stop(self, reason: str) -> None:
        if reason == "release":
            super().stop(reason)
        elif self.job and not self.job.cancelled:
            self.cancel_requested = reason == "cancel"
            self.job._cancel.set()


class _Settler:
    """Group commit: outcomes that come while a settle call is in flight go together in the
    next one. A busy worker settles many jobs per round trip; an idle one waits for none."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        # groups that go in one call each, with the future of each group's states
        self._pending: list[
            tuple[list[tuple[ops.Claim, Settlement]], asyncio.Future[list[str | Exception]]]
        ] = []
        self._flusher: asyncio.Task[None] | None = None

    async def settle_many(
        self, outcomes: list[tuple[ops.Claim, Settlement]]
    ) -> list[str | Exception]:
        """Settle ``outcomes`` together (one call, or the same call as other waiting ones);
        per job its new state, or the error its queue's script answered. An error of the
        whole call (``RedisUnavailable``...) is raised."""
        future: asyncio.Future[list[str | Exception]] = asyncio.get_running_loop().create_future()
        self._pending.append((outcomes, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="notifyq-settle")
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                n = settle_cut([len(group) for group, _ in self._pending])
                groups, self._pending = self._pending[:n], self._pending[n:]
                try:
                    states = await self._backend.run(
                        ops.settle([pair for group, _ in groups for pair in group])
                    )
                except Exception as exc:  # each waiter decides (RedisUnavailable: retry)
                    for _, future in groups:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                at = 0
                for group, future in groups:
                    if not future.done():
                        future.set_result(states[at : at + len(group)])
                    at += len(group)
        finally:
            self._flusher = None


class Worker(WorkerBase):
    """Runs ``handler(payload, job)`` for jobs of ``queues`` as up to ``concurrency`` tasks
    (default 32).

    Settings as ``notifyq.Worker``: ``lease``, ``timeout``, ``grace``, ``backoff``,
    ``max_result``, ``name``; ``url``/``client`` as ``notifyq.asyncio.Queue``.
    """

    default_concurrency = 32  # tasks are cheap; docs/benchmarks.md has the drain rates

    def __init__(
        self,
        queues: str | Queue | Sequence[str | Queue],
        handler: Handler,
        *,
        url: str | None = None,
        client: aioredis.Redis | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(queues, handler, **settings)
        first = queues if isinstance(queues, str | Queue) else queues[0]
        self._backend_given: Backend | None = Backend(url or "(client)", client) if client else None
        if self._backend_given is None and url is None and isinstance(first, Queue):
            self._backend_given = first._own
            url = first.url
        self._url = resolve_url(url) if self._backend_given is None else ""
        self._running: dict[tuple[str, str, str], _Run] = {}  # (queue, job id, lease token)
        self._stop = asyncio.Event()
        self._freed = asyncio.Event()

    async def run(self, *, burst: bool = False) -> None:
        """Work until ``stop()`` or a signal; with ``burst``, until no job is left to do."""
        self._backend = self._backend_given or shared_backend(self._url)
        self._settler = _Settler(self._backend)
        self._stop.clear()
        self._serve_metrics()
        loop = asyncio.get_running_loop()
        signals = threading.current_thread() is threading.main_thread()
        if signals:
            for s in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(s, self.stop)
        heartbeat = asyncio.create_task(self._heartbeat(), name="notifyq-heartbeat")
        log.info("worker %s started on %s", self.id, ", ".join(k.queue for k in self.keys))
        try:
            await self._claim_loop(burst)
        finally:
            self._stop.set()
            await self._shutdown()
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self._leave()
            self._stop_metrics()
            if signals:
                for s in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(s)
        log.info("worker %s stopped after %d job runs", self.id, self.processed)

    async def _leave(self) -> None:
        """Delete this worker's registry entries (the heartbeat that writes them has ended);
        if that fails, they expire by themselves."""
        try:
            await self._backend.run(self._leave_flow())
        except Exception as exc:
            log.warning("worker %s: registry entry left to expire: %s", self.id, exc)

    def stop(self) -> None:
        """Stop claiming; running jobs get the grace period."""
        self._stop.set()
        self._freed.set()

    # ------------------------------------------------------------ claiming

    async def _claim_loop(self, burst: bool) -> None:
        outage, block = 0.0, 0.0
        idle = 0.1 if burst else self.policy.tick  # longest block on the wake lists
        checked = False
        while not self._stop.is_set():
            try:
                if not checked:  # AccessDenied ends the worker before it touches a job
                    await self._backend.run(self._access_flow(self._backend.url))
                    checked = True
                pause = self._window_pause(burst, busy=bool(self._running))
                if pause is None:
                    return
                if pause:  # outside its windows: claim nothing, look again soon
                    block = 0.0
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), pause)
                    continue
                free = self._free()
                if free <= 0:
                    self._freed.clear()
                    await self._freed.wait()
                    continue
                got = await self._claim(free, block)
                outage = 0.0
                if got == free:
                    block = 0.0  # maybe more: claim again at once
                    continue
                if not got and burst and not self._running and await self._drained():
                    return
                block = idle  # the queues are drained: block until an enqueue wakes us
            except (RedisUnavailable, CorruptRecord, ResponseError) as exc:
                # Redis unreachable, or a queue key that something else overwrote: pause,
                # longer each time, until it is back or fixed
                outage = self._pause_after(exc, outage)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), outage)

    async def _claim(self, free: int, block: float = 0) -> int:
        sleep, block = self._rate_pause(block)
        if sleep:  # every queue at its rate limit
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), sleep)
            if self._stop.is_set():
                return 0
        claims = await self._backend.run(self._claim_flow(free, block))
        for claim in claims:
            self._start(claim)
        return len(claims)

    async def _drained(self) -> bool:
        return await self._backend.run(self._drained_flow())

    def _start(self, claim: ops.Claim) -> None:
        try:
            job: ActiveJob | None = ActiveJob(claim, decode_payload(claim), self._backend)
        except NotifyQError as exc:
            job, bad = None, exc
        if job is not None and self._collector is not None:
            batched = _BatchRun(claim, job, self.policy.lease)
            self._running[(claim.queue, claim.id, claim.token)] = batched
            self._collector.add(batched, time.monotonic())
            return
        run = _Run(claim, job, self.policy.lease, self.policy.job_timeout(claim))
        self._running[(claim.queue, claim.id, claim.token)] = run
        coro = self._execute(run) if job else self._finish(run, unreadable(bad, claim, self.policy))
        run.task = asyncio.create_task(coro, name=f"notifyq-job-{claim.id}")

    # ------------------------------------------------------------ running

    async def _execute(self, run: _Run) -> None:
        assert run.job is not None
        args = self._args(run.job)
        try:
            async with asyncio.timeout(run.limit) as scope:
                if self._is_async:
                    value = await self.handler(*args)
                else:
                    value = await asyncio.to_thread(self.handler, *args)
            outcome = completed(value, self.policy)
        except asyncio.CancelledError:
            reason = run.stop_reason
            if reason is None:
                raise  # cancelled from outside the worker: the loop is going away
            if reason == "lost":
                outcome = None
            else:
                outcome = cancelled() if reason == "cancel" else Settlement("release", "")
        except TimeoutError as exc:
            if scope.expired() and run.limit is not None:
                run.job._cancel.set()  # a plain handler in a thread can see it and stop
                outcome = timed_out(run.claim, run.limit, self.policy)
            else:
                outcome = failed(exc, run.claim, self.policy)
        except Exception as exc:
            outcome = failed(exc, run.claim, self.policy)
        run.settling = True  # from here on, stopping the task would lose the outcome
        await self._finish(run, outcome)

    async def _finish(self, run: _Run, outcome: Settlement | None) -> None:
        try:
            if outcome is not None:
                await self._settle(run, outcome)
            else:
                log.warning("job %s: lease lost; handler stopped, outcome dropped", run.claim.id,
                            extra=self._about(run.claim))  # fmt: skip
        except Exception:  # e.g. AccessDenied: said here, as the blocking worker does
            log.exception("job %s: could not settle; its lease will lapse", run.claim.id,
                          extra=self._about(run.claim))  # fmt: skip
        finally:
            self._running.pop((run.claim.queue, run.claim.id, run.claim.token), None)
            self.processed += 1
            self._freed.set()

    async def _settle(self, run: _Run, outcome: Settlement) -> None:
        await self._settle_many([(run, outcome)])

    async def _settle_many(self, outcomes: list[tuple[_Run, Settlement]]) -> None:
        """Store the outcomes, in one settle call; on an outage retry while a lease may
        still hold."""
        if not outcomes:
            return
        delay = 0.05
        while True:
            try:
                states = await self._settler.settle_many([(r.claim, o) for r, o in outcomes])
                raise_outage(states)  # a full server refused the queue's call: retry it
                break
            except (RedisUnavailable, CorruptRecord) as exc:
                pause = self._settle_pause(exc, [r for r, _ in outcomes], delay)
                if pause is None:
                    return
                await asyncio.sleep(pause)
                delay = min(pause * 2, 1.0)
        self._note_states([(r.claim, o) for r, o in outcomes], states)

    # ------------------------------------------------------------ batches

    def _dispatch(self, runs: list[_BatchRun]) -> None:
        self._batches += 1
        name = f"notifyq-batch-{runs[0].claim.id}"
        task = asyncio.create_task(self._execute_batch(runs), name=name)
        for r in runs:
            r.task = task

    async def _execute_batch(self, runs: list[_BatchRun]) -> None:
        """Call the handler with the batch's jobs, then settle each job, all in one call."""
        claims = [r.claim for r in runs]
        limit = batch_limit(claims, self.policy)
        jobs = [r.job for r in runs]
        try:
            async with asyncio.timeout(limit) as scope:
                if self._is_async:
                    reply = await self.handler(jobs)
                else:
                    reply = await asyncio.to_thread(self.handler, jobs)
            outcomes = batch_outcomes(reply, claims, self.policy, self._cancels(runs))
        except asyncio.CancelledError:
            if not any(r.stop_reason == "release" for r in runs):
                raise  # cancelled from outside the worker: the loop is going away
            outcomes = [Settlement("release", "")] * len(runs)
        except TimeoutError as exc:
            if scope.expired() and limit is not None:
                for r in runs:  # a plain handler in a thread can see it and stop
                    if r.job:
                        r.job._cancel.set()
                outcomes = [timed_out(c, limit, self.policy) for c in claims]
            else:
                outcomes = batch_failed(exc, claims, self.policy, self._cancels(runs))
        except Exception as exc:
            outcomes = batch_failed(exc, claims, self.policy, self._cancels(runs))
        for r in runs:
            r.settling = True  # from here on, stopping the task would lose the outcomes
        try:
            await self._settle_many(list(zip(runs, outcomes, strict=True)))
        except Exception:
            log.exception("jobs %s: could not settle; their leases will lapse",
                          ", ".join(c.id for c in claims))  # fmt: skip
        finally:
            self._batches -= 1
            self._forget(runs)

    @staticmethod
    def _cancels(runs: list[_BatchRun]) -> list[bool]:
        return [r.cancel_requested for r in runs]

    def _forget(self, runs: Sequence[_Run]) -> None:
        for r in runs:
            self._running.pop((r.claim.queue, r.claim.id, r.claim.token), None)
        self.processed += len(runs)
        self._freed.set()

    async def _release_filling(self) -> None:
        """At shutdown: the jobs of the batch being filled go back to their queues at once
        (their handler was never called), in one call."""
        if self._collector is None or not self._collector.runs:
            return
        runs = self._collector.take()
        try:
            await self._settle_many([(r, Settlement("release", "")) for r in runs])
            log.info("jobs %s released back to their queue", ", ".join(r.claim.id for r in runs))
        except NotifyQError as exc:
            log.error("release failed (%s); the leases will lapse", exc)
        for r in runs:
            self._running.pop((r.claim.queue, r.claim.id, r.claim.token), None)

    # ------------------------------------------------------------ heartbeat

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.policy.tick)
            try:
                await self._beat()
            except RedisUnavailable as exc:
                log.warning("heartbeat: %s", exc)
            except Exception:
                log.exception("heartbeat failed")

    async def _beat(self) -> None:
        now = time.monotonic()
        runs = [r for r in self._running.values() if r.stop_reason is None]
        flow = self._beat_flow([r.claim for r in runs], not self._stop.is_set())
        for r, verdict in zip(runs, await self._backend.run(flow), strict=True):
            if verdict in ("ok", "cancel"):
                r.lease_until = now + self.policy.lease
            if verdict in ("cancel", "lost"):
                r.stop(verdict)

    async def _shutdown(self) -> None:
        """Let running jobs finish within the grace period, then release the rest."""
        await self._release_filling()
        tasks = [r.task for r in self._running.values() if r.task]
        if tasks:
            await asyncio.wait(tasks, timeout=self.grace)
        for run in list(self._running.values()):
            run.stop("release")
        tasks = [r.task for r in self._running.values() if r.task]
        await asyncio.gather(*tasks, return_exceptions=True)
