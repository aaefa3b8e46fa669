"""The gateway's WebSocket protocol with no I/O: what ``parse`` accepts and refuses, the
messages built for clients, and a fuzz: any frame gives a request or a ``ProtocolError``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifyq import protocol
from notifyq.keys import JOB_ID, QUEUE_NAME
from notifyq.protocol import Ping, ProtocolError, Subscribe, Unsubscribe, parse

from ..strategies import json_values, requests


def frame(**fields: Any) -> str:
    return json.dumps(fields)


# ---------------------------------------------------------------- parse: accepted


def test_subscribe_to_a_queue_or_a_job_with_or_without_since() -> None:
    assert parse(frame(op="subscribe", token="t", queue="orders")) == Subscribe("t", "orders")
    full = frame(op="subscribe", token="t", queue="orders", job="j:1", since="1700000000000-3")
    assert parse(full) == Subscribe("t", "orders", "j:1", "1700000000000-3")
    explicit_nulls = frame(op="subscribe", token="t", queue="orders", job=None, since=None)
    assert parse(explicit_nulls) == Subscribe("t", "orders")


def test_unsubscribe_and_ping() -> None:
    assert parse(frame(op="unsubscribe", queue="orders")) == Unsubscribe("orders")
    assert parse(frame(op="unsubscribe", queue="orders", job="j1")) == Unsubscribe("orders", "j1")
    assert parse(frame(op="ping")) == Ping()
    assert parse(' \n{"op":"ping"}\t') == Ping()  # whitespace around JSON is fine


# ---------------------------------------------------------------- parse: refused

REFUSED: list[tuple[str, str | bytes, str]] = [
    ("binary", b'{"op":"ping"}', protocol.BAD_MESSAGE),
    ("empty", "", protocol.BAD_JSON),
    ("not-json", "{op: ping}", protocol.BAD_JSON),
    ("trailing-garbage", '{"op":"ping"} x', protocol.BAD_JSON),
    ("a-list", '["ping"]', protocol.BAD_JSON),
    ("a-string", '"ping"', protocol.BAD_JSON),
    ("null", "null", protocol.BAD_JSON),
    ("deep", "[" * 5000 + "]" * 5000, protocol.BAD_JSON),
    ("deep-object", '{"a":' * 5000 + "1" + "}" * 5000, protocol.BAD_JSON),
    ("huge-integer", "1" * 5000, protocol.BAD_JSON),
    ("no-op", '{"queue":"q"}', protocol.UNKNOWN_OP),
    ("unknown-op", '{"op":"publish"}', protocol.UNKNOWN_OP),
    ("op-case", '{"op":"PING"}', protocol.UNKNOWN_OP),
    ("op-null", '{"op":null}', protocol.UNKNOWN_OP),
    ("op-list", '{"op":["ping"]}', protocol.UNKNOWN_OP),
    ("missing-token", '{"op":"subscribe","queue":"q"}', protocol.BAD_MESSAGE),
    ("missing-queue", '{"op":"subscribe","token":"t"}', protocol.BAD_MESSAGE),
    ("unknown-field", '{"op":"ping","id":1}', protocol.BAD_MESSAGE),
    (
        "since-on-unsubscribe",
        '{"op":"unsubscribe","queue":"q","since":"1-0"}',
        protocol.BAD_MESSAGE,
    ),
    ("token-number", '{"op":"subscribe","token":5,"queue":"q"}', protocol.BAD_MESSAGE),
    ("token-null", '{"op":"subscribe","token":null,"queue":"q"}', protocol.BAD_MESSAGE),
    ("queue-null", '{"op":"subscribe","token":"t","queue":null}', protocol.BAD_MESSAGE),
    ("queue-empty", '{"op":"subscribe","token":"t","queue":""}', protocol.BAD_MESSAGE),
    ("queue-too-long", '{"op":"unsubscribe","queue":"' + "q" * 65 + '"}', protocol.BAD_MESSAGE),
    ("queue-braces", '{"op":"unsubscribe","queue":"a}b"}', protocol.BAD_MESSAGE),
    ("job-dash", '{"op":"unsubscribe","queue":"q","job":"-j"}', protocol.BAD_MESSAGE),
    ("job-number", '{"op":"unsubscribe","queue":"q","job":1}', protocol.BAD_MESSAGE),
    ("job-space", '{"op":"unsubscribe","queue":"q","job":"a b"}', protocol.BAD_MESSAGE),
    (
        "since-text",
        '{"op":"subscribe","token":"t","queue":"q","since":"now"}',
        protocol.BAD_MESSAGE,
    ),
    ("since-number", '{"op":"subscribe","token":"t","queue":"q","since":17}', protocol.BAD_MESSAGE),
    (
        "since-no-seq",
        '{"op":"subscribe","token":"t","queue":"q","since":"17"}',
        protocol.BAD_MESSAGE,
    ),
    (
        "since-negative",
        '{"op":"subscribe","token":"t","queue":"q","since":"-1-0"}',
        protocol.BAD_MESSAGE,
    ),
    (
        "since-special",
        '{"op":"subscribe","token":"t","queue":"q","since":"$"}',
        protocol.BAD_MESSAGE,
    ),
]


@pytest.mark.parametrize(
    ("raw", "code"), [(f, c) for _, f, c in REFUSED], ids=[i for i, _, _ in REFUSED]
)
def test_refused_frames_raise_a_protocol_error_with_its_code(raw: str | bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse(raw)
    assert refused.value.code == code
    reply = json.loads(refused.value.reply())
    assert (reply["type"], reply["code"]) == ("error", code)
    assert reply["message"] == refused.value.message


def test_an_error_about_a_known_target_names_it() -> None:
    with pytest.raises(ProtocolError) as refused:
        parse(frame(op="subscribe", token=1, queue="orders", job="j1"))
    reply = json.loads(refused.value.reply())
    assert (reply["queue"], reply["job"]) == ("orders", "j1")
    with pytest.raises(ProtocolError) as refused:
        parse(frame(op="subscribe", token=1, queue="orders"))
    assert "job" not in json.loads(refused.value.reply())  # unknown: left out, not null


def test_a_long_unknown_op_is_not_echoed() -> None:
    with pytest.raises(ProtocolError) as refused:
        parse(frame(op="x" * 1000))
    assert "x" * 33 not in refused.value.message
    assert "subscribe, unsubscribe, ping" in refused.value.message


# ---------------------------------------------------------------- messages to clients


def test_message_builders() -> None:
    assert json.loads(protocol.subscribed("q", "j")) == {
        "type": "subscribed",
        "queue": "q",
        "job": "j",
    }
    assert json.loads(protocol.subscribed("q", None))["job"] is None
    assert json.loads(protocol.unsubscribed("q", None, "expired")) == {
        "type": "unsubscribed", "queue": "q", "job": None, "reason": "expired",
    }  # fmt: skip
    assert json.loads(protocol.gap("q", "j", "5-1")) == {
        "type": "gap", "queue": "q", "job": "j", "after": "5-1",
    }  # fmt: skip
    assert json.loads(protocol.heartbeat(1700000000123)) == {
        "type": "heartbeat",
        "ts": 1700000000123,
    }
    assert json.loads(protocol.PONG) == {"type": "pong"}
    assert json.loads(protocol.error("forbidden", "no", queue="q")) == {
        "type": "error", "code": "forbidden", "message": "no", "queue": "q",
    }  # fmt: skip


def test_events_are_wrapped_as_they_are() -> None:
    data = {"v": 1, "type": "progress", "queue": "q", "id": "j", "progress": "ünï €", "seq": 3}
    raw = json.dumps({**data, "event_id": "5-0"}, ensure_ascii=False)
    assert json.loads(protocol.event_from_channel(raw)) == {
        "type": "event", "event": {**data, "event_id": "5-0"},
    }  # fmt: skip
    message = protocol.event_message(data)
    assert json.loads(message) == {"type": "event", "event": data}
    assert "ünï €" in message  # sent as UTF-8, not escaped


def test_job_state_from_its_record_and_result() -> None:
    record = {
        "state": "completed", "attempt": "2", "max_attempts": "3", "enqueued_at": "1000",
        "started_at": "1100", "finished_at": "1200", "progress": '{"pct":100}',
        "payload": '"secret"', "lease": "token",
    }  # fmt: skip
    result = json.dumps({"v": 1, "status": "completed", "result": {"total": 3}})
    state = protocol.job_state("q", "j", record, result, "1200-0")
    assert state == {
        "queue": "q", "job": "j", "state": "completed", "attempt": 2, "max_attempts": 3,
        "enqueued_at": 1000, "started_at": 1100, "finished_at": 1200,
        "progress": {"pct": 100}, "result": {"total": 3}, "event_id": "1200-0",
    }  # fmt: skip
    assert json.loads(protocol.state_message(state)) == {"type": "state", **state}


def test_job_state_of_a_failed_job_and_of_corrupt_fields() -> None:
    error = {"type": "ValueError", "message": "boom"}
    failed = protocol.job_state(
        "q", "j", {"state": "dead", "error": json.dumps(error)}, json.dumps({"error": error}), "9-0"
    )
    assert (failed["state"], failed["error"], failed["event_id"]) == ("dead", error, "9-0")
    assert "result" not in failed

    corrupt = protocol.job_state("q", "j", {"state": "active", "progress": "{nope"}, "[1", "0-0")
    assert corrupt == {
        "queue": "q",
        "job": "j",
        "state": "active",
        "attempt": 0,  # absent from the record: none yet
        "progress": None,
        "event_id": "0-0",
    }


def test_event_ids_as_sortable_pairs() -> None:
    assert protocol.event_key("1700000000000-12") == (1700000000000, 12)
    assert protocol.event_key("0-0") == (0, 0)
    assert protocol.event_key("10-0") > protocol.event_key("9-99")  # by number, not text
    assert protocol.event_id((1700000000000, 12)) == "1700000000000-12"


# ---------------------------------------------------------------- fuzz


def parsed_or_refused(raw: str | bytes) -> protocol.Request | None:
    """The request, or None after a ProtocolError; any other exception fails the test."""
    try:
        request = parse(raw)
    except ProtocolError as exc:
        assert exc.code in (
            protocol.BAD_JSON, protocol.BAD_MESSAGE, protocol.UNKNOWN_OP
        )  # fmt: skip
        json.loads(exc.reply())
        return None
    if isinstance(request, Subscribe | Unsubscribe):
        assert QUEUE_NAME.fullmatch(request.queue)
        assert request.job is None or JOB_ID.fullmatch(request.job)
    if isinstance(request, Subscribe):
        assert isinstance(request.token, str)
        assert request.since is None or protocol.EVENT_ID.fullmatch(request.since)
    return request


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_any_text_or_bytes_parses_or_is_refused(raw: str | bytes) -> None:
    request = parsed_or_refused(raw)
    if isinstance(raw, bytes):
        assert request is None


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_parses_or_is_refused(value: Any) -> None:
    request = parsed_or_refused(json.dumps(value))
    if not isinstance(value, dict):
        assert request is None


@settings(max_examples=500, deadline=None)
@given(requests)
def test_any_request_shaped_object_parses_or_is_refused(message: dict[str, Any]) -> None:
    request = parsed_or_refused(json.dumps(message))
    if request is not None:
        assert set(message) <= {"op", "token", "queue", "job", "since"}
