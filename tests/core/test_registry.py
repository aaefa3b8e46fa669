"""The worker registry's readers, without a server: entries, lost workers, merging."""

from __future__ import annotations

from notifyq import registry

RECORD = {
    b"host": b"web-1", b"pid": b"4242", b"started_at": b"1000", b"concurrency": b"4",
    b"queues": b'["a", "b"]', b"processed": b"7", b"failures": b"2", b"running": b"1",
    b"lost_after_ms": b"2000", b"last_beat": b"5000",
    b"jobs": b'[{"id": "j1", "attempt": 1, "started_at": 4000}]',
}  # fmt: skip


def test_an_entry_reads_the_worker_hash() -> None:
    e = registry.entry("a", "w1", 5000, RECORD, now=5500)
    assert (e["host"], e["pid"], e["queues"], e["processed"], e["failures"]) == (
        "web-1",
        4242,
        ["a", "b"],
        7,
        2,
    )
    assert (e["alive"], e["beat_age"]) == (True, 0.5)
    assert e["jobs"] == [{"id": "j1", "attempt": 1, "started_at": 4000, "queue": "a"}]


def test_an_old_beat_or_an_expired_hash_is_lost() -> None:
    assert registry.entry("a", "w1", 5000, RECORD, now=7001)["alive"] is False
    gone = registry.entry("a", "w1", 5000, {}, now=5001)
    assert (gone["alive"], gone["host"], gone["jobs"], gone["last_beat"]) == (False, None, [], 5000)


def test_fields_notifyq_cannot_read_are_none() -> None:
    odd = {**RECORD, b"pid": b"many", b"jobs": b"{not json", b"queues": b'"a"'}
    e = registry.entry("a", "w1", 5000, odd, now=5000)
    assert (e["pid"], e["jobs"], e["queues"], e["running"]) == (None, [], [], 1)


def test_merge_joins_the_entries_of_one_worker() -> None:
    a = registry.entry("a", "w1", 5000, RECORD, now=5000)
    b = registry.entry("b", "w1", 5100, {**RECORD, b"last_beat": b"5100", b"jobs": b"[]",
                                         b"running": b"0"}, now=5100)  # fmt: skip
    other = registry.entry("a", "w2", 5000, {}, now=5000)
    merged = registry.merge([a, other, b])
    assert [m["id"] for m in merged] == ["w1", "w2"]
    assert (merged[0]["last_beat"], merged[0]["running"], len(merged[0]["jobs"])) == (5100, 1, 1)
    assert "queue" not in merged[0]


def test_lost_after_and_ttl() -> None:
    assert registry.lost_after_ms(1.0) == 5000
    assert registry.lost_after_ms(0.1) == registry.MIN_LOST_AFTER_MS
    assert registry.ttl_ms(30_000, 1.0) == 90_000
    assert registry.ttl_ms(1000, 1 / 3) == 4000
