"""The batch rules both workers share, with no server: how a batch fills and when it is
due, what a batch handler's reply becomes per job, and how settle calls are cut."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from notifyq import ops
from notifyq.errors import JobCancelled
from notifyq.execution import (
    Collector,
    Policy,
    batch_failed,
    batch_limit,
    batch_outcomes,
    settle_cut,
)


def claim(job_id: str, timeout: float | None = None, attempt: int = 1) -> ops.Claim:
    return ops.Claim("q", job_id, "1", attempt, 3, timeout, b"null", "normal")


def test_a_batch_is_due_when_full_or_once_its_wait_has_passed() -> None:
    batch: Collector[str] = Collector(size=3, wait=2.0)
    assert batch.take_due(now=100.0) == []  # empty: never due
    batch.add("a", now=100.0)
    batch.add("b", now=101.5)
    assert batch.room() == 1
    assert batch.take_due(now=101.9) == []  # the wait counts from the first job
    assert batch.take_due(now=102.0) == ["a", "b"]
    assert batch.runs == [] and batch.room() == 3
    for run in "cde":
        batch.add(run, now=200.0)
    assert batch.take_due(now=200.0) == ["c", "d", "e"]  # full: at once


def test_the_claim_blocks_no_longer_than_the_batch_may_wait() -> None:
    batch: Collector[str] = Collector(size=3, wait=2.0)
    assert batch.block(1.0, now=0.0) == 1.0  # nothing held: the usual block
    batch.add("a", now=10.0)
    assert batch.block(1.0, now=10.0) == 1.0
    assert batch.block(1.0, now=11.5) == 0.5
    assert batch.block(1.0, now=12.5) == 0.01  # overdue: never 0, which blocks forever
    assert batch.block(0.0, now=11.0) == 0.0  # no block asked: none


def test_each_item_of_the_reply_settles_its_own_job() -> None:
    claims = [claim("a"), claim("b"), claim("c"), claim("d")]
    reply = ["sent", ValueError("no such article"), JobCancelled("c"), {1, 2}]
    ok, bad, cancelled, unencodable = batch_outcomes(reply, claims, Policy(), [False] * 4)
    assert (ok.how, json.loads(ok.body)) == ("completed", "sent")
    assert bad.how == "retry" and json.loads(bad.body)["message"] == "no such article"
    assert cancelled.how == "cancelled"
    assert unencodable.how == "dead"  # a result that is not JSON: no retry can fix it


def test_a_failure_of_a_job_whose_cancellation_was_asked_ends_it_cancelled() -> None:
    claims = [claim("a"), claim("b")]
    outcomes = batch_outcomes([RuntimeError("x"), "done"], claims, Policy(), [True, True])
    assert [o.how for o in outcomes] == ["cancelled", "completed"]
    outcomes = batch_failed(RuntimeError("x"), claims, Policy(), [True, False])
    assert [o.how for o in outcomes] == ["cancelled", "retry"]


@given(st.one_of(st.none(), st.integers(), st.text(), st.dictionaries(st.text(), st.integers()),
                 st.lists(st.integers()).filter(lambda r: len(r) != 3)))  # fmt: skip
def test_a_reply_that_is_not_one_result_per_job_fails_them_all(reply: object) -> None:
    claims = [claim("a"), claim("b"), claim("c")]
    outcomes = batch_outcomes(reply, claims, Policy(), [False] * 3)
    assert [o.how for o in outcomes] == ["retry"] * 3
    messages = {json.loads(o.body)["message"] for o in outcomes}
    assert len(messages) == 1 and "batch handler returned" in messages.pop()


def test_a_batch_gets_the_smallest_limit_of_its_jobs() -> None:
    assert batch_limit([claim("a"), claim("b")], Policy()) is None
    assert batch_limit([claim("a"), claim("b")], Policy(timeout=30)) == 30
    assert batch_limit([claim("a", 5), claim("b", 60)], Policy(timeout=30)) == 5
    assert batch_limit([claim("a", 45), claim("b")], Policy()) == 45


@given(st.lists(st.integers(1, 500), min_size=1, max_size=30))
def test_a_settle_call_takes_whole_groups_up_to_its_limit(sizes: list[int]) -> None:
    n = settle_cut(sizes)
    assert n >= 1  # the oldest group always goes
    assert n == 1 or sum(sizes[:n]) <= 500
    assert n == len(sizes) or sum(sizes[: n + 1]) > 500  # as many as fit
