"""Key names, name validation and the JSON codec, without Redis."""

import json
import math

import pytest
from hypothesis import given, settings
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


# ---------------------------------------------------------------- codec, fuzzed

#: Bounded so that each property runs in a second or two, in CI too.
FUZZ = settings(max_examples=300, deadline=None)  # bounded by count: CI machines vary

#: What Python code may hand to encode: JSON values, and what JSON cannot hold.
anything = st.recursive(
    json_values
    | st.floats()  # NaN and infinities
    | st.binary(max_size=8)
    | st.sets(st.integers(), max_size=3)
    | st.just(object())
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.text(alphabet=st.characters(categories=["Cs"]), max_size=2),  # lone surrogates
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
        | st.tuples(inner)
    ),
    max_leaves=12,
)


def strict_json(text: str) -> object:
    """What notifyq accepts as JSON: the standard, so no NaN or Infinity."""

    def refuse(name: str) -> object:
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


@FUZZ
@given(json_values)
def test_codec_round_trips_json_values(value: object) -> None:
    assert codec.decode(codec.encode(value, limit=1 << 20)) == value


@FUZZ
@given(anything, st.integers(min_value=0, max_value=400))
def test_encode_gives_json_within_the_limit_or_a_notifyq_error(value: object, limit: int) -> None:
    """Any value: its JSON, at most ``limit`` bytes of UTF-8, or SerializationError /
    PayloadTooLarge (both ValidationError); never another exception."""
    try:
        text = codec.encode(value, limit=limit)
    except PayloadTooLarge as exc:
        size = len(codec.encode(value, limit=1 << 30).encode())
        assert size > limit, exc
        return
    except SerializationError:
        return
    assert len(text.encode()) <= limit
    strict_json(text)  # standard JSON: no NaN, no Infinity


def _edit(text: str, at: int, new: str) -> str:
    at %= len(text) + 1
    return text[:at] + new + text[at + 1 :]


#: Bytes as Redis may hold them: anything, JSON, JSON with one edit, JSON-like text.
raw_values = (
    st.binary(max_size=300)
    | st.text(max_size=300)
    | json_values.map(json.dumps)
    | st.builds(_edit, json_values.map(json.dumps), st.integers(0, 300), st.text(max_size=3))
    | st.text(alphabet='[]{}",:0123456789.eE+-tfnrualsNIiy \\', max_size=60)
)


@FUZZ
@given(raw_values)
def test_decode_gives_a_value_or_corrupt_record(raw: bytes | str) -> None:
    """Whatever Redis holds: a JSON value, or CorruptRecord (never another exception); and
    a value is only ever what standard JSON reads in it."""
    try:
        value = codec.decode(raw)
    except CorruptRecord:
        with pytest.raises(ValueError):
            strict_json(raw.decode() if isinstance(raw, bytes) else raw)
        return
    assert value == strict_json(raw.decode() if isinstance(raw, bytes) else raw)


@FUZZ
@given(json_values, st.sampled_from(["NaN", "Infinity", "-Infinity"]))
def test_decode_refuses_nan_and_infinity_anywhere(value: object, constant: str) -> None:
    text = json.dumps([value, {"x": "__C__"}]).replace('"__C__"', constant)
    with pytest.raises(CorruptRecord, match=constant):
        codec.decode(text)


def test_nesting_too_deep_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(CorruptRecord, match="nested too deeply"):
        codec.decode("[" * 100_000 + "]" * 100_000)
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(SerializationError, match="nested too deeply"):
        codec.encode(deep, limit=1 << 30)


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
