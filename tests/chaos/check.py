"""The verdict on a run: what it shows, counted, and every line that breaks a guarantee.

Each section takes one promise of docs/guarantees.md and checks it against what the run
left behind (``Facts``). What breaks it becomes a failure, except what the server's own
``appendfsync everysec`` may cause when it is SIGKILLed: writes of about the last second
before the kill may be forgotten. Those are attributed to the kill (only with
``everysec``, and only when their time puts them in the second or two before it), counted
and reported; with ``always`` every one of them is a failure.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .facts import Ack, Execution, Facts, Seen

#: Seconds before a server SIGKILL whose writes ``appendfsync everysec`` may lose: it syncs
#: once a second, and holds writes back for up to 2 s while a slow sync is in progress.
LOSS_WINDOW = 2.0
#: Seconds around an outage within which a worker may fail to store an outcome in time.
SETTLE_SLACK = 1.0
ENDED = ("completed", "dead")
SHOWN = 20  # failures printed per kind


@dataclass
class Verdict:
    lines: list[str] = field(default_factory=list)
    failures: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, kind: str, message: str) -> None:
        self.failures.setdefault(kind, []).append(message)

    def report(self) -> str:
        out = list(self.lines)
        if self.ok:
            out.append("PASSED: every check held")
            return "\n".join(out)
        total = sum(len(v) for v in self.failures.values())
        out.append(f"FAILED: {total} failing lines")
        for kind, messages in self.failures.items():
            out.append(f"  {kind}: {len(messages)}")
            out += [f"    {m}" for m in messages[:SHOWN]]
            if len(messages) > SHOWN:
                out.append(f"    ... and {len(messages) - SHOWN} more")
        return "\n".join(out)


def judge(facts: Facts) -> Verdict:
    """Check every promise against the facts of a run."""
    judge = _Judge(facts)
    judge.faults()
    judge.enqueues()
    judge.outcomes()
    judge.executions()
    judge.ends()
    judge.websocket_notes()
    judge.server_kill_cost()
    judge.groups_left_clean()
    return judge.verdict


class _Judge:
    def __init__(self, facts: Facts) -> None:
        self.f, self.plan = facts, facts.plan
        self.verdict = Verdict()
        self.everysec = facts.plan.fsync == "everysec"
        kills = [o for o in facts.outages() if o["how"] == "SIGKILL"]
        self.server_kill: dict[str, Any] | None = kills[0] if kills else None
        self.lost: set[str] = set()
        observed = {s.eid for seen in facts.listener_ends.values() for s in seen}
        observed |= {s.eid for seen in facts.ws_ends.values() for s in seen if s.how == "event"}
        self.forgotten = observed - facts.stream_ids  # ends seen that the server no longer has
        self.attributed: Counter[str] = Counter()

    def line(self, text: str) -> None:
        self.verdict.lines.append(text)

    def fail(self, kind: str, message: str) -> None:
        self.verdict.fail(kind, message)

    def lost_to_kill(self, t: float | None) -> bool:
        """Could ``everysec`` have lost a write made at ``t`` to the server's SIGKILL?"""
        kill = self.server_kill
        if not self.everysec or kill is None or t is None:
            return False
        signalled: float = kill["signalled"]
        return signalled - LOSS_WINDOW <= t <= signalled

    def in_outage(self, t: float) -> bool:
        """Was ``t`` close enough to a server outage that an outcome could not be stored
        before the job's lease lapsed (or was stored and then forgotten)?"""
        for o in self.f.outages():
            before = SETTLE_SLACK + (LOSS_WINDOW if self.everysec and o["how"] == "SIGKILL" else 0)
            if o["signalled"] - before <= t <= o["up"] + self.plan.lease + SETTLE_SLACK:
                return True
        return False

    # -- the faults injected

    def faults(self) -> None:
        f = self.f
        kills = [x for x in f.faults if x["k"] == "worker_kill"]
        inflight = sum(len(x["inflight"]) for x in kills)
        self.line(
            f"faults: {len(kills)} worker SIGKILLs ({inflight} jobs running in them), "
            + ", ".join(
                f"server {o['how']} at {o['signalled'] - f.faults[0]['t']:.1f}s "
                f"(down {o['up'] - o['signalled']:.2f}s)"
                for o in f.outages()
            )
        )
        clients = Counter(x["name"] for x in f.faults if x["k"] == "client_kill")
        others = [x for x in f.faults if x["k"] == "process_kill"]
        self.line(
            "  CLIENT KILL: "
            + ", ".join(f"{name} x{n}" for name, n in sorted(clients.items()))
            + "; SIGKILL and restart: "
            + ", ".join(f"{x['name']} at {x['t'] - f.faults[0]['t']:.1f}s" for x in others)
        )
        for x in f.faults:
            if x["k"] == "unexpected_exit":
                self.fail(
                    "process died on its own", f"{x['name']} (pid {x['pid']}) exit {x['code']}"
                )

    # -- enqueue is durable; a retried enqueue makes no second job

    def enqueues(self) -> None:
        f = self.f
        retried = sum(1 for a in f.acks.values() if a.tries > 1)
        unknown = sorted(f.server_jobs - set(f.acks))
        self.line(
            f"enqueue: {len(f.acks):,} acknowledged ({retried:,} after a failed try, retried "
            f"with the same idempotency key); jobs on the server no producer was told of: "
            f"{len(unknown)}"
        )
        for job in unknown:
            self.fail(
                "job with no acknowledgement", f"{job} (a retried enqueue made a second job?)"
            )
        for n in f.gave_up:
            self.fail("enqueue given up", f"job {n}")
        for message in f.ack_conflicts:
            self.fail("acknowledged twice", message)
        for job, mapped in f.idem.items():
            if f.records.get(job) and f.records[job].state is not None and mapped != job:
                self.fail("idempotency key", f"job-{f.acks[job].n} maps to {mapped}, not {job}")

    # -- every acknowledged job completes or is dead-lettered with a reason

    def outcomes(self) -> None:
        f = self.f
        completed, dead = 0, Counter[str]()
        for job, ack in sorted(f.acks.items(), key=lambda item: item[1].n):
            rec = f.records.get(job)
            if rec is None or (rec.state is None and not rec.has_result):
                self.lost.add(job)
                if self.lost_to_kill(ack.t):
                    self.attributed["lost"] += 1
                else:
                    self.fail("acknowledged job lost", self._when(ack))
            elif rec.state == "completed":
                completed += 1
                if self.plan.fails(ack.n):
                    self.fail("outcome", f"job {ack.n} ({job}) should fail but completed")
            elif rec.state == "dead":
                reason = rec.error_type or "(no reason)"
                dead[reason] += 1
                expected = "Refused" if self.plan.fails(ack.n) else "LeaseExpired"
                if reason not in (expected, "LeaseExpired"):
                    self.fail("outcome", f"job {ack.n} ({job}) dead-lettered as {reason}")
            else:
                self.fail("job not finished", f"job {ack.n} ({job}) is {rec.state}")
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(dead.items())) or "none"
        self.line(
            f"outcome: acknowledged {len(f.acks):,} = completed {completed:,} + dead-lettered "
            f"{sum(dead.values()):,} ({reasons}) + lost {len(self.lost):,}"
        )
        if len(f.acks) != completed + sum(dead.values()) + len(self.lost):
            self.fail("outcome", "acknowledged jobs that are neither ended nor lost")

    def _when(self, ack: Ack) -> str:
        kill = self.server_kill
        after = (
            "" if kill is None else f", {kill['signalled'] - ack.t:+.2f}s before the server SIGKILL"
        )
        return f"job {ack.n} ({ack.job}) acknowledged{after}, has no trace on the server"

    # -- at-least-once, never two at once: every extra run explained by a kill

    def executions(self) -> None:
        f = self.f
        why: Counter[str] = Counter()
        runs_total = jobs_run = overlaps = repeats = unclaimed = 0
        for job, runs in f.executions.items():
            ack = f.acks.get(job)
            if ack is None:
                self.fail("run of an unknown job", f"{job} ran in pid {runs[0].pid}")
                continue
            jobs_run += 1
            runs_total += len(runs)
            for run in runs:
                if run.end is None and run.pid not in f.worker_kills:
                    self.fail("run never ended", f"job {ack.n} ({job}) attempt {run.attempt}")
            for run in runs[:-1]:
                reason = self._why_again(run, ack)
                why[reason] += 1
                if reason == "unexplained":
                    self.fail("re-delivery not explained by a kill", self._describe(ack, run))
            self._last_run(ack, runs[-1])
            for a, b in itertools.pairwise(runs):
                if b.attempt <= a.attempt:
                    if self.lost_to_kill(a.end or a.start):
                        self.attributed["attempt run again"] += 1
                    else:
                        repeats += 1
                        self.fail("attempt number repeated", self._describe(ack, b))
                if b.start < self._stopped(a):
                    overlaps += 1
                    if not self.in_outage(b.start):
                        self.fail("two runs at once", f"{self._describe(ack, a)} / {b.pid}")
            unclaimed += max(0, f.stream_starts[job] - len(runs))
        again = why["kill"] + why["server"] + why["unexplained"]
        self.line(
            f"handler runs: {runs_total:,} = jobs run {jobs_run:,} + planned retries "
            f"{why['retry']:,} + re-deliveries {again:,} (worker SIGKILL {why['kill']:,}, "
            f"server restart {why['server']:,}, unexplained {why['unexplained']})"
        )
        self.line(
            f"  runs of one job at the same time {overlaps}; attempt numbers repeated {repeats}; "
            f"claims whose handler never started (worker killed first) {unclaimed:,}"
        )

    def _why_again(self, run: Execution, ack: Ack) -> str:
        """Why a job ran again after ``run``: a planned retry, a kill, or unexplained."""
        if run.ok is False and self.plan.fails(ack.n):
            return "retry"
        return self._interrupted(run) or "unexplained"

    def _interrupted(self, run: Execution) -> str | None:
        """'kill' if its worker was SIGKILLed before the run's outcome could be stored,
        'server' if it ended around a server outage, else None."""
        killed = self.f.worker_kills.get(run.pid)
        if killed is not None and (
            run.end is None or run.end >= killed - self.plan.lease - SETTLE_SLACK
        ):
            return "kill"
        if self.in_outage(run.end if run.end is not None else run.start):
            return "server"
        return None

    def _last_run(self, ack: Ack, run: Execution) -> None:
        rec = self.f.records.get(ack.job)
        if rec is None or rec.state is None:
            return
        if rec.state == "completed" and run.ok is not True:
            self.fail("outcome", f"job {ack.n} completed but its last run did not return")
        lapsed = rec.state == "dead" and rec.error_type == "LeaseExpired"
        if lapsed and self._interrupted(run) is None:
            self.fail("outcome", f"job {ack.n} LeaseExpired, its last run not killed")

    def _stopped(self, run: Execution) -> float:
        if run.end is not None:
            return run.end
        return self.f.worker_kills.get(run.pid, math.inf)

    def _describe(self, ack: Ack, run: Execution) -> str:
        end = "no end" if run.end is None else f"ended {run.end:.3f} ok={run.ok}"
        job = f"job {ack.n} ({ack.job}) attempt {run.attempt}"
        return f"{job} pid {run.pid} start {run.start:.3f} {end}"

    # -- one end per job, and every observer told of it

    def ends(self) -> None:
        f = self.f
        ended = twice = missing_l = missing_w = by_event = by_state = 0
        for job, ack in f.acks.items():
            rec = f.records.get(job)
            stream = f.stream_ends.get(job, [])
            if len(stream) > 1:
                self.fail("two results", f"job {ack.n} ({job}): {[s.eid for s in stream]}")
            seen = {s.eid for s in stream}
            seen |= {s.eid for s in f.listener_ends.get(job, [])}
            seen |= {s.eid for s in f.ws_ends.get(job, []) if s.how == "event"}
            if len(seen) > 1:
                twice += 1
                if len(seen - self.forgotten) <= 1 and self._all_forgotten_in_window(job):
                    self.attributed["end seen twice"] += 1
                else:
                    self.fail("two end events", f"job {ack.n} ({job}): {sorted(seen)}")
            if rec is None or rec.state not in ENDED:
                continue
            ended += 1
            if not stream:
                self.fail("end not in the stream", f"job {ack.n} ({job}) is {rec.state}")
                continue
            final = stream[-1].eid
            if final not in {s.eid for s in f.listener_ends.get(job, [])}:
                missing_l += 1
                self.fail("end missing from the listener", f"job {ack.n} ({job}) {final}")
            ws = f.ws_ends.get(job, [])
            match = [
                s for s in ws if s.eid == final or (s.how == "state" and s.fin == rec.finished_at)
            ]
            if match:
                by_event += match[0].how == "event"
                by_state += match[0].how == "state"
            elif any(self._forgotten_end(s) for s in ws):
                self.attributed["websocket saw only a forgotten end"] += 1
            else:
                missing_w += 1
                self.fail("end missing from the websocket", f"job {ack.n} ({job}) {final}")
            for s in ws:
                if s.how == "state" and s.fin != rec.finished_at and not self._forgotten_end(s):
                    self.fail(
                        "websocket state", f"job {ack.n}: ended at {s.fin}, not {rec.finished_at}"
                    )
        copies = sum(len(v) - len({s.eid for s in v}) for v in f.listener_ends.values())
        self.line(
            f"ends: {ended:,} jobs ended, each with one result; jobs with two end events "
            f"{twice} ({self.attributed['end seen twice']} attributed to the server SIGKILL)"
        )
        self.line(
            f"named listener: missing {missing_l} of {ended:,} ends; {copies:,} "
            f"delivered again (at-least-once); gaps {len(f.listener_gaps)}"
        )
        stats = f.ws_stats
        self.line(
            f"websocket: {stats['clients']} clients, missing {missing_w} of {ended:,} ends "
            f"({by_event:,} seen as events, {by_state:,} in the first state); "
            f"{stats['connects']:,} connections ({stats['drops']:,} dropped on purpose), "
            f"{stats['resumes']:,} resubscriptions with since, "
            f"{sum(1 for n in f.ws_notes if n['k'] == 'gap')} gaps"
        )
        for gap in f.listener_gaps:
            self.fail("listener gap", f"{gap['missing']} events after {gap['after']}")
        ends_seen = [s for v in [*f.listener_ends.values(), *f.ws_ends.values()] for s in v]
        for eid in sorted(self.forgotten):
            if not any(s.eid == eid and self._forgotten_end(s) for s in ends_seen):
                self.fail("end event the server forgot", eid)

    def _all_forgotten_in_window(self, job: str) -> bool:
        ends = self.f.listener_ends.get(job, []) + self.f.ws_ends.get(job, [])
        return all(self._forgotten_end(s) for s in ends if s.eid in self.forgotten)

    def _forgotten_end(self, seen: Seen) -> bool:
        """An end an observer saw that the server lost to its SIGKILL (``everysec``)."""
        if seen.how == "event":
            return seen.eid in self.forgotten and self.lost_to_kill((seen.ts or 0) / 1000)
        return self.lost_to_kill((seen.fin or 0) / 1000)

    # -- what the WebSocket clients saw that the protocol rules out

    def websocket_notes(self) -> None:
        errors: Counter[str] = Counter()
        for note in self.f.ws_notes:
            kind, job = note["k"], note.get("job")
            if kind == "gap":
                continue
            if kind == "error":
                errors[note["code"]] += 1
                if note["code"] == "not_found" and job in self.lost and self.everysec:
                    self.attributed["websocket not_found for a lost job"] += 1
                else:
                    self.fail("websocket error", f"{note['code']} for {job}: {note['message']}")
            elif kind == "after_end" and self._ended_forgotten(job):
                self.attributed["websocket event after a forgotten end"] += 1
            else:  # dup, foreign, stray_state, after_end
                self.fail(f"websocket {kind}", f"client {note['c']}: {note}")
        if errors:
            self.line("  websocket errors: " + ", ".join(f"{k} {v}" for k, v in errors.items()))

    def _ended_forgotten(self, job: str | None) -> bool:
        return any(self._forgotten_end(s) for s in self.f.ws_ends.get(job or "", []))

    # -- what the server's SIGKILL cost

    def server_kill_cost(self) -> None:
        """What the writes of the last seconds before the server's SIGKILL became: how
        many were at stake, and how many the restarted server no longer had."""
        a, kill = self.attributed, self.server_kill
        if kill is None:
            return
        since = kill["signalled"] - LOSS_WINDOW
        acked = sum(1 for x in self.f.acks.values() if since <= x.t <= kill["signalled"])
        ends = {
            s.eid
            for seen in self.f.listener_ends.values()
            for s in seen
            if since * 1000 <= (s.ts or 0) <= kill["signalled"] * 1000
        }
        lost = [self.f.acks[j] for j in self.lost]
        ran = sum(1 for j in self.lost if j in self.f.executions)
        self.line(
            f"server SIGKILL ({self.plan.fsync}): in the {LOSS_WINDOW:g}s before it "
            f"{acked:,} enqueues were acknowledged and {len(ends):,} jobs ended; lost of "
            f"those: acknowledged jobs {len(lost)} ({ran} of which had run), ends the "
            f"observers saw {len(self.forgotten)}; so jobs whose end was seen twice "
            f"{a['end seen twice']}, attempts run again {a['attempt run again']}"
        )
        shown = ("lost", "end seen twice", "attempt run again")
        others = [f"{what} {n}" for what, n in sorted(a.items()) if what not in shown]
        if others:
            self.line("  also attributed to it: " + ", ".join(others))

    # -- the fair groups' lists and rotation end as empty as the queue

    def groups_left_clean(self) -> None:
        left, grouped = self.f.group_keys, self.f.grouped
        self.line(f"groups at the end: {len(left)} keys left, grouped count {grouped}")
        if left or grouped:
            self.fail(
                "groups not left clean",
                f"a drained queue still has {left} and a grouped count of {grouped}",
            )
