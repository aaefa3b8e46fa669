"""Operation flows driven by hand with canned replies: the core with no network."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifyq import ops, scripts
from notifyq.errors import (
    CorruptRecord,
    JobCancelled,
    JobFailed,
    JobNotFound,
    ResultNotReady,
    ValidationError,
)
from notifyq.keys import QueueKeys, check_job_id
from notifyq.ops import Command, Pipeline, ScriptCall

K = QueueKeys("q")


def drive(flow: ops.Flow[Any], *replies: Any) -> tuple[list[Any], Any]:
    """Feed replies to a flow; return the operations it yielded and its value."""
    sent, it = [], iter(replies)
    try:
        op = next(flow)
        while True:
            sent.append(op)
            op = flow.send(next(it))
    except StopIteration as stop:
        return sent, stop.value


def test_result_of_a_completed_job() -> None:
    raw = b'{"v":1,"id":"j","status":"completed","result":{"ok":true}}'
    sent, value = drive(ops.result(K, "j"), [raw, b"completed"])
    assert sent == [Pipeline([Command("GET", K.result("j")), Command("HGET", K.job("j"), "state")])]
    assert value == {"ok": True}


def test_result_not_ready_says_the_state() -> None:
    with pytest.raises(ResultNotReady, match="active"):
        drive(ops.result(K, "j"), [None, b"active"])


def test_result_of_unknown_job() -> None:
    with pytest.raises(JobNotFound):
        drive(ops.result(K, "j"), [None, None])


def test_outcome_raises_for_dead_and_cancelled() -> None:
    with pytest.raises(JobFailed, match="ValueError: boom") as info:
        ops.outcome(
            '{"id":"j","status":"dead","error":{"type":"ValueError","message":"boom"}}', "j"
        )
    assert not isinstance(info.value, JobCancelled)
    with pytest.raises(JobCancelled):
        ops.outcome('{"id":"j","status":"cancelled","error":{"type":"Cancelled"}}', "j")


@pytest.mark.parametrize(
    "raw",
    [
        b"{oops",
        b"\xff",
        b"[]",
        b'{"id":"j"}',
        b'{"id":"j","status":"maybe"}',
        b'{"id":"k","status":"completed","result":1}',  # another job's
        b'{"status":"completed","result":1}',
        b'{"id":"j","status":"dead","error":"boom"}',
    ],
)
def test_an_outcome_notifyq_did_not_write_is_a_corrupt_record(raw: bytes) -> None:
    with pytest.raises(CorruptRecord):
        ops.outcome(raw, "j")


def test_enqueue_passes_keys_and_args_for_each_job() -> None:
    a = ops.job_spec({"n": 1}, job_id="a", idempotency_key="k", delay=1.5, priority="high")
    b = ops.job_spec([2], job_id="b")
    sent, value = drive(ops.enqueue(K, [a, b]), [[b"a", 1], [b"b", 0]])
    [call] = sent
    assert isinstance(call, ScriptCall) and call.script is scripts.ENQUEUE
    assert call.keys == [K.base, K.job("a"), K.idempotency("k"), K.job("b"), K.job("b")]
    assert call.args[:10] == ["q", 2, "a", '{"n":1}', "high", 1500, 3, 0, 86400, "k"]
    assert value == [("a", True), ("b", False)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": "urgent"}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"delay": -1}, "delay"),
        ({"delay": float("inf")}, "delay"),
        ({"timeout": 0}, "timeout"),
        ({"result_ttl": 0}, "result_ttl"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"job_id": "a b"}, "job id"),
        ({"group": ""}, "invalid group"),
        ({"group": "t:1"}, "invalid group"),
        ({"group": "g" * 65}, "invalid group"),
        ({"group": "g", "priority": "low"}, "priority normal only"),
    ],
)
def test_job_spec_refuses_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ops.job_spec({}, **options)


def test_claim_parses_jobs() -> None:
    jobs = [b"j1", 4, 2, b"3", b"1500", b'{"a":1}', b"high"]
    refused = [b"j\\x7b2", b"quarantined", b"not a job id"]
    _, claims = drive(ops.claim(K, "w", 5, 1000), [jobs, refused])
    [c] = claims
    assert (c.id, c.token, c.attempt, c.max_attempts, c.timeout) == ("j1", "4", 2, 3, 1.5)
    assert (c.raw_payload, c.priority, c.queue) == (b'{"a":1}', "high", "q")
    _, refusals = ops.claims(K, [jobs, refused])
    assert refusals == [ops.Refusal("q", "j\\x7b2", "quarantined", "not a job id")]


@given(
    attempt=st.integers(1, 40),
    base=st.floats(0.001, 10),
    cap=st.floats(0.001, 1000),
    rand=st.floats(0, 1, exclude_max=True),
)
def test_backoff_is_bounded_and_grows(attempt: int, base: float, cap: float, rand: float) -> None:
    delay = ops.backoff(attempt, base, cap, rand)
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling
    assert ops.backoff(attempt + 1, base, cap, rand) >= delay


def test_new_job_ids_are_valid_and_distinct() -> None:
    ids = {ops.new_job_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(len(i) == 16 and check_job_id(i) == i and "-" not in i for i in ids)


def test_backlog_reads_the_delayed_set_before_the_pending_lists() -> None:
    """Housekeeping may promote a due job between two commands of the pipeline: read in
    the order jobs move (delayed, then pending), it is seen in one of the two, so a burst
    worker does not stop with a job just promoted (it did, once, under load)."""
    keys = QueueKeys("orders")
    flow = ops.backlog(keys)
    pipeline = next(flow)
    assert isinstance(pipeline, ops.Pipeline)
    names = [c.args[:2] for c in pipeline.calls if isinstance(c, ops.Command)]
    assert names.index(("ZCARD", keys.delayed)) < min(
        names.index(("LLEN", k)) for k in [*keys.pending_all(), keys.groups]
    )
    # the promoted job, seen in a pending list after the delayed set was read empty
    with pytest.raises(StopIteration) as done:
        flow.send([0, 0, 0, 1, 0, 0])
    assert done.value.value == 1
