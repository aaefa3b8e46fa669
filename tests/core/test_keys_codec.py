"""Key names, name validation and the JSON codec, without Redis."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifyq import codec
from notifyq.errors import CorruptRecord, PayloadTooLarge, SerializationError, ValidationError
from notifyq.keys import QueueKeys, check_job_id, check_queue_name

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


def test_every_key_of_a_queue_shares_its_hash_tag() -> None:
    k = QueueKeys("orders")
    names = [*k.pending_all(), k.active, k.delayed, k.dead, k.quarantine, k.wake, k.paused]
    names += [k.stats, k.job("j1"), k.result("j1"), k.idempotency("x"), k.done_channel("j1")]
    assert all(n.startswith("nq:{orders}:") for n in names)
    assert len(set(names)) == len(names)
    assert k.result("j1") == "nq:{orders}:result:j1"


@pytest.mark.parametrize("bad", ["", "a b", "x{y}", "q:1", "é", "a" * 65, None, 3])
def test_bad_queue_names_are_refused(bad: object) -> None:
    with pytest.raises(ValidationError, match="invalid queue name"):
        check_queue_name(bad)


@pytest.mark.parametrize("bad", ["", "a/b", "{x}", "-x", "a" * 129, None])
def test_bad_job_ids_are_refused(bad: object) -> None:
    with pytest.raises(ValidationError, match="invalid job id"):
        check_job_id(bad)


@given(json_values)
def test_codec_round_trips_json_values(value: object) -> None:
    assert codec.decode(codec.encode(value, limit=1 << 20)) == value


@given(st.text(min_size=1))
def test_decode_never_crashes_on_garbage(raw: str) -> None:
    try:
        json.loads(raw)
    except ValueError:
        with pytest.raises(CorruptRecord):
            codec.decode(raw)
    else:
        codec.decode(raw)


def test_bytes_that_are_not_utf8_are_a_corrupt_record() -> None:
    with pytest.raises(CorruptRecord):
        codec.decode(b"\xff\xfe")


@pytest.mark.parametrize("value", [object(), {1, 2}, math.nan, b"raw"])
def test_values_json_cannot_hold_are_refused(value: object) -> None:
    with pytest.raises(SerializationError, match="not JSON-serialisable"):
        codec.encode(value, limit=1000)


def test_size_limit_counts_encoded_bytes() -> None:
    codec.encode("é" * 10, limit=22)
    with pytest.raises(PayloadTooLarge, match="limit is 21"):
        codec.encode("é" * 10, limit=21)


def test_error_record_truncates_long_tracebacks() -> None:
    try:
        raise ValueError("x" * 20000)
    except ValueError as exc:
        record = codec.error_record(exc)
    assert record["type"] == "ValueError"
    assert len(record["traceback"]) <= codec.MAX_TRACEBACK + 1
