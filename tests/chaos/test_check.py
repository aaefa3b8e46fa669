"""The chaos run's checker, on facts written by hand: each promise it checks can fail, and
what ``everysec`` may cost is attributed to the server's SIGKILL only with ``everysec``
and only in the second or two before it. (The run itself, against a real server and real
kills, is ``python -m tests.chaos``; ``make test`` runs its short variant.)"""

from __future__ import annotations

from dataclasses import replace

import pytest

from .check import judge
from .facts import Ack, Execution, Facts, Record, Seen
from .plan import Plan

T0 = 1_700_000_000.0  # the run's start
KILL = T0 + 50.0  # the server's SIGKILL
PLAN = Plan(
    dir="/nonexistent", url="redis://127.0.0.1:1/0", gateway_port=1, secret="s" * 32,
    fsync="always", jobs=3, seconds=100.0, seed=0, fail_every=100,
)  # fmt: skip


def eid(t: float, n: int = 0) -> str:
    return f"{int(t * 1000)}-{n}"


def clean(plan: Plan = PLAN) -> Facts:
    """Three jobs, each run once and completed at T0 + 10 + n; every observer saw each end."""
    facts = Facts(plan)
    facts.faults = [
        {"k": "start", "t": T0},
        {"k": "server", "how": "SIGKILL", "signalled": KILL, "exited": KILL, "up": KILL + 0.2},
    ]
    for n in range(plan.jobs):
        job, done = f"job{n}", T0 + 10 + n
        facts.acks[job] = Ack(n, job, T0 + 1 + n, 1)
        facts.server_jobs.add(job)
        facts.idem[job] = job
        facts.records[job] = Record("completed", 1, None, int(done * 1000), True)
        facts.executions[job].append(Execution(job, 1, 100, done - 0.1, done, True))
        facts.stream_starts[job] = 1
        end = Seen("event", "completed", eid(done), ts=int(done * 1000))
        facts.stream_ids.add(end.eid)
        facts.stream_ends[job].append(end)
        facts.listener_ends[job].append(end)
        facts.ws_ends[job].append(end)
    return facts


def failures(facts: Facts) -> dict[str, list[str]]:
    return judge(facts).failures


def test_a_clean_run_passes() -> None:
    verdict = judge(clean())
    assert verdict.ok, verdict.report()
    assert "acknowledged 3 = completed 3 + dead-lettered 0 (none) + lost 0" in verdict.report()


def test_a_second_run_that_no_kill_explains_fails() -> None:
    facts = clean()
    first = Execution("job1", 1, 100, T0 + 5, T0 + 5.1, True)
    facts.executions["job1"].insert(0, first)
    facts.executions["job1"][1].attempt = 2
    assert "re-delivery not explained by a kill" in failures(facts)


def test_a_second_run_after_its_worker_was_killed_is_explained() -> None:
    facts = clean()
    facts.executions["job1"].insert(0, Execution("job1", 1, 200, T0 + 5, None, None))
    facts.executions["job1"][1].attempt = 2
    facts.worker_kills[200] = T0 + 5.05
    facts.faults.append({"k": "worker_kill", "pid": 200, "t": T0 + 5.05, "inflight": ["job1"]})
    verdict = judge(facts)
    assert verdict.ok, verdict.report()
    assert "re-deliveries 1 (worker SIGKILL 1," in verdict.report()


@pytest.mark.parametrize("killed", [True, False])
def test_a_job_dead_of_a_lapsed_lease_must_have_been_killed_on_its_last_attempt(
    killed: bool,
) -> None:
    """Job 7 fails on every attempt; its last run raised, but its worker was killed before
    the failure was stored, so its lease lapsed on the last attempt."""
    plan = replace(PLAN, jobs=8, max_attempts=2)
    facts = clean(plan)
    done = T0 + 17
    facts.records["job7"] = Record("dead", 2, "LeaseExpired", int((done + 5) * 1000), True)
    facts.executions["job7"] = [
        Execution("job7", 1, 100, done - 2, done - 1.9, False),
        Execution("job7", 2, 200, done - 0.1, done, False),
    ]
    facts.stream_ends["job7"][0] = replace(facts.stream_ends["job7"][0], state="dead")
    if killed:
        facts.worker_kills[200] = done + 0.01
    got = failures(facts)
    assert ("outcome" in got) is not killed, got


def test_two_runs_of_one_job_at_the_same_time_fail() -> None:
    facts = clean()
    facts.executions["job1"].insert(0, Execution("job1", 1, 200, T0 + 10.9, None, None))
    facts.executions["job1"][1].attempt = 2
    facts.worker_kills[200] = T0 + 11.5  # killed after the second run had started
    assert "two runs at once" in failures(facts)


def test_a_lost_job_fails_with_always() -> None:
    facts = clean()
    facts.records["job2"] = Record(None)
    facts.acks["job2"].t = KILL - 0.5
    assert "acknowledged job lost" in failures(facts)


@pytest.mark.parametrize(("before", "attributed"), [(0.5, True), (10.0, False)])
def test_a_lost_job_with_everysec_is_the_kill_only_just_before_it(
    before: float, attributed: bool
) -> None:
    facts = clean(replace(PLAN, fsync="everysec"))
    for job in ("job2",):
        facts.records[job] = Record(None)
        facts.acks[job].t = KILL - before
        facts.executions.pop(job)
        facts.stream_ends.pop(job)
        facts.listener_ends.pop(job)
        facts.ws_ends.pop(job)
    verdict = judge(facts)
    assert verdict.ok is attributed, verdict.report()
    assert "lost of those: acknowledged jobs 1" in verdict.report()


def test_an_end_missing_from_the_listener_fails() -> None:
    facts = clean()
    facts.listener_ends.pop("job0")
    assert list(failures(facts)) == ["end missing from the listener"]


def test_an_end_missing_from_the_websocket_fails() -> None:
    facts = clean()
    facts.ws_ends.pop("job0")
    assert list(failures(facts)) == ["end missing from the websocket"]


def test_two_results_for_one_job_fail() -> None:
    facts = clean()
    again = Seen("event", "completed", eid(T0 + 30), ts=int((T0 + 30) * 1000))
    facts.stream_ends["job0"].append(again)
    facts.stream_ids.add(again.eid)
    got = failures(facts)
    assert "two results" in got
    assert "two end events" in got


def test_an_event_a_websocket_client_had_applied_already_fails() -> None:
    facts = clean()
    facts.ws_notes.append({"k": "dup", "c": 0, "job": "job0", "eid": "1-0", "since": "2-0"})
    assert list(failures(facts)) == ["websocket dup"]


def test_an_event_of_a_job_a_client_does_not_follow_fails() -> None:
    facts = clean()
    facts.ws_notes.append({"k": "foreign", "c": 0, "job": "job9", "eid": "1-0"})
    assert list(failures(facts)) == ["websocket foreign"]


def forgotten_completion(plan: Plan) -> Facts:
    """Job 1 completed 0.5 s before the SIGKILL, seen by every observer; the server forgot
    it, ran the job again after the restart and completed it a second time."""
    facts = clean(plan)
    first_end, again = KILL - 0.5, KILL + 5.1
    first = Seen("event", "completed", eid(first_end), ts=int(first_end * 1000))
    end = Seen("event", "completed", eid(again), ts=int(again * 1000))
    facts.stream_ids -= {s.eid for s in facts.stream_ends["job1"]}
    facts.stream_ends["job1"] = [end]
    facts.stream_ids.add(end.eid)
    facts.listener_ends["job1"] = [first, end]
    facts.ws_ends["job1"] = [first]
    facts.executions["job1"] = [
        Execution("job1", 1, 100, first_end - 0.1, first_end, True),
        Execution("job1", 1, 300, again - 0.1, again, True),
    ]
    facts.records["job1"].finished_at = int(again * 1000)
    return facts


def test_a_completion_the_server_forgot_is_the_kill_with_everysec() -> None:
    verdict = judge(forgotten_completion(replace(PLAN, fsync="everysec")))
    assert verdict.ok, verdict.report()
    report = verdict.report()
    assert "ends the observers saw 1" in report
    assert "jobs whose end was seen twice 1, attempts run again 1" in report


def test_a_completion_the_server_forgot_fails_with_always() -> None:
    got = failures(forgotten_completion(PLAN))
    assert "two end events" in got
    assert "end event the server forgot" in got
    assert "attempt number repeated" in got


def test_a_group_list_or_count_left_after_the_drain_fails() -> None:
    facts = clean()
    facts.group_keys = {"pending:g:tenant-1": 1, "groups": 2}
    assert "groups not left clean" in failures(facts)
    facts = clean()
    facts.grouped = 3  # the count drifted from the lists
    assert "groups not left clean" in failures(facts)
