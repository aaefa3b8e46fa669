"""The metrics registry and the text format it writes, with no server."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifyq import exporter
from notifyq.metrics import Family, Registry, escape, render

from .. import promtext


def test_label_values_and_help_are_escaped_and_read_back() -> None:
    registry = Registry()
    listeners = registry.gauge("notifyq_test_lag", 'Help with a \\ and a\nnewline and "quotes".',
                               ("queue", "group"))  # fmt: skip
    odd = 'a "quoted" \\ back\\slash\nnew line'
    listeners.set(3, queue="q", group=odd)
    text = render(registry.collect())
    assert 'group="a \\"quoted\\" \\\\ back\\\\slash\\nnew line"' in text
    assert "\n# HELP notifyq_test_lag Help with a \\\\ and a\\nnewline" in "\n" + text
    families = promtext.parse(text)
    assert families["notifyq_test_lag"].help == 'Help with a \\ and a\nnewline and "quotes".'
    assert promtext.value(families, "notifyq_test_lag", queue="q", group=odd) == 3


@given(st.text())
def test_any_label_value_survives_escaping(value: str) -> None:
    text = render([Family("notifyq_x", "gauge", "x", [("", {"group": value}, 1)])])
    assert len(text.split("\n")) == 4, "a sample is one line (the format ends lines with \\n only)"
    assert promtext.value(promtext.parse(text), "notifyq_x", group=value) == 1
    assert "\n" not in escape(value)


def test_histogram_buckets_are_cumulative_and_end_at_inf_equal_to_count() -> None:
    registry = Registry()
    h = registry.histogram("notifyq_test_seconds", "Durations.", ("outcome",), (0.1, 1, 10))
    for v in (0.05, 0.1, 0.5, 2, 20, 30):  # 0.1 falls in le="0.1": bounds are inclusive
        h.observe(v, outcome="completed")
    h.observe(0.2, outcome="dead")
    families = promtext.parse(render(registry.collect()))  # checks cumulative, +Inf = count
    buckets = [
        (labels["le"], v)
        for s, labels, v in families["notifyq_test_seconds"].samples
        if s == "_bucket" and labels["outcome"] == "completed"
    ]
    assert buckets == [("0.1", 2), ("1", 3), ("10", 4), ("+Inf", 6)]
    assert promtext.value(families, "notifyq_test_seconds", "_count", outcome="completed") == 6
    assert promtext.value(families, "notifyq_test_seconds", "_sum", outcome="completed") == (
        pytest.approx(52.65)
    )
    assert promtext.value(families, "notifyq_test_seconds", "_count", outcome="dead") == 1


def test_numbers_are_written_as_the_format_reads_them() -> None:
    samples = [("", {"v": str(i)}, x) for i, x in
               enumerate([0, 3.0, 2.5, 1e20, -1, math.inf, -math.inf, math.nan])]  # fmt: skip
    text = render([Family("notifyq_n", "gauge", "n", samples)])
    values = [line.rsplit(" ", 1)[1] for line in text.splitlines()[2:]]
    assert values == ["0", "3", "2.5", "1e+20", "-1", "+Inf", "-Inf", "NaN"]
    promtext.parse(text)


def test_counters_only_go_up_and_labels_must_match() -> None:
    registry = Registry()
    c = registry.counter("notifyq_c_total", "c", ("queue",))
    with pytest.raises(ValueError, match="only goes up"):
        c.inc(-1, queue="q")
    with pytest.raises(ValueError, match="takes the labels"):
        c.inc(queue="q", other="x")
    with pytest.raises(ValueError, match="already registered"):
        registry.counter("notifyq_c_total", "again")
    with pytest.raises(ValueError, match="invalid label"):
        registry.gauge("notifyq_g", "g", ("le",))
    with pytest.raises(ValueError, match="invalid metric name"):
        registry.gauge("notifyq-g", "g")


def test_updates_from_many_threads_are_all_counted() -> None:
    registry = Registry()
    c = registry.counter("notifyq_c_total", "c", ("queue",))
    h = registry.histogram("notifyq_h_seconds", "h", ("queue",))

    def work() -> None:
        for _ in range(2000):
            c.inc(queue="q")
            h.observe(0.01, queue="q")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    families = promtext.parse(render(registry.collect()))
    assert promtext.value(families, "notifyq_c_total", queue="q") == 8000
    assert promtext.value(families, "notifyq_h_seconds", "_count", queue="q") == 8000


def test_queue_families_from_a_reading() -> None:
    totals = {"enqueued": 4, "completed": 1, "Not-A-Name": 9, "throttled": 5}
    stats = {"queue": "orders", "pending": 2, "active": 1, "delayed": 0, "dead": 1,
             "quarantined": 0, "paused": False, "totals": totals}  # fmt: skip
    reading = exporter.QueueReading(stats, [('odd"group\\', 3, 1), ("new", None, 0)])
    families = promtext.parse(render(exporter.queue_families([("orders", reading),
                                                               ("gone", None)])))  # fmt: skip
    v = promtext.value
    assert v(families, "notifyq_queue_up", queue="orders") == 1
    assert v(families, "notifyq_queue_up", queue="gone") == 0
    assert v(families, "notifyq_queue_jobs", queue="orders", state="pending") == 2
    assert v(families, "notifyq_queue_completed_total", queue="orders") == 1
    assert v(families, "notifyq_queue_cancelled_total", queue="orders") == 0  # present from 0
    assert v(families, "notifyq_queue_throttled_total", queue="orders") == 5  # a new counter
    assert not any("Not-A-Name" in name for name in families)
    assert v(families, "notifyq_listener_lag_events", queue="orders", group='odd"group\\') == 3
    assert promtext.series(families, "notifyq_listener_lag_events") == [
        {"queue": "orders", "group": 'odd"group\\'}
    ]  # a lag the server cannot say is left out, not written as 0
    assert v(families, "notifyq_listener_pending_events", queue="orders", group="new") == 0


def test_a_bearer_token_is_compared_whole() -> None:
    token = "t" * 20
    assert exporter.authorised(None, None)
    assert exporter.authorised(f"Bearer {token}", token)
    assert exporter.authorised(f"bearer {token}", token)
    for header in (None, "", token, f"Bearer {token[:-1]}", f"Bearer {token}x", "Basic x"):
        assert not exporter.authorised(header, token), header
    with pytest.raises(ValueError, match="16 characters"):
        exporter.check_token("short")
