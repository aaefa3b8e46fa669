"""Counters, gauges and histograms with labels, written out in the Prometheus text format.

notifyq needs a dozen metrics, a lock and the text exposition format 0.0.4; that is about
150 lines, so they are written here rather than taken from ``prometheus_client`` (one
dependency fewer, no process-wide default registry that two workers of one process would
share, no multiprocess mode to configure). ``docs/metrics.md`` lists what notifyq measures.

A ``Registry`` holds the metrics a process updates as things happen (a worker's job
durations); series read at scrape time (queue depths from Redis) are built as ``Family``
objects by the caller and rendered with them::

    registry = Registry()
    done = registry.counter("notifyq_worker_jobs_total", "Jobs settled.", ("queue", "outcome"))
    done.inc(queue="orders", outcome="completed")
    text = render(registry.collect() + [Family("notifyq_up", "gauge", "Up.", [("", {}, 1)])])
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

#: The content type of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: Job durations, from a few milliseconds to ten minutes (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, 300.0, 600.0)  # fmt: skip

Labels = dict[str, str]
#: One line of a family: the name's suffix (``_bucket``, ``_sum``...), its labels, its value.
Sample = tuple[str, Labels, float]
_M = TypeVar("_M", "Counter", "Gauge", "Histogram")


@dataclass(slots=True)
class Family:
    """One metric as it is written out: ``# HELP``, ``# TYPE``, then its samples."""

    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: list[Sample] = field(default_factory=list)


class _Metric:
    """A metric with a fixed set of label names; its series are created on first use."""

    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str], lock: threading.Lock):
        if not METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        bad = [n for n in labels if not LABEL_NAME.fullmatch(n) or n.startswith("__")]
        if bad or "le" in labels:
            raise ValueError(f"invalid label names {list(labels)!r}")
        self.name, self.help, self.labels = name, help, tuple(labels)
        self._lock = lock

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes the labels {self.labels}, not {sorted(labels)}")
        return tuple(str(labels[n]) for n in self.labels)

    def _labels(self, key: tuple[str, ...]) -> Labels:
        return dict(zip(self.labels, key, strict=True))


class Counter(_Metric):
    """A count that only goes up (``rate()`` of it is per second)."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str], lock: threading.Lock):
        super().__init__(name, help, labels, lock)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def family(self) -> Family:
        with self._lock:
            items = sorted(self._values.items())
        return Family(self.name, self.kind, self.help, [("", self._labels(k), v) for k, v in items])


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str],
        lock: threading.Lock,
        buckets: Sequence[float] = DURATION_BUCKETS,
    ):
        super().__init__(name, help, labels, lock)
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"{name}: buckets must be distinct numbers")
        self.bounds = tuple(bounds)
        # per series: a count per bucket (not cumulative; the last is +Inf), and the sum
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.bounds, value)  # le: a value on a bound belongs to it
        with self._lock:
            counts, total = self._series.setdefault(key, ([0] * (len(self.bounds) + 1), [0.0]))
            counts[index] += 1
            total[0] += value

    def family(self) -> Family:
        with self._lock:
            items = sorted((k, (list(c), s[0])) for k, (c, s) in self._series.items())
        samples: list[Sample] = []
        for key, (counts, total) in items:
            labels, running = self._labels(key), 0
            for bound, n in zip((*self.bounds, math.inf), counts, strict=True):
                running += n
                samples.append(("_bucket", {**labels, "le": _number(bound)}, running))
            samples += [("_sum", labels, total), ("_count", labels, running)]
        return Family(self.name, self.kind, self.help, samples)


class Registry:
    """The metrics of one component (a worker, a gateway), under one lock: updates come
    from several threads (a worker's handler threads, the scrape thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: list[Counter | Histogram] = []

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help, labels, self._lock))

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help, labels, self._lock))

    def histogram(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> Histogram:
        return self._add(Histogram(name, help, labels, self._lock, buckets))

    def _add(self, metric: _M) -> _M:
        if any(m.name == metric.name for m in self._metrics):
            raise ValueError(f"metric {metric.name!r} is already registered")
        self._metrics.append(metric)
        return metric

    def collect(self) -> list[Family]:
        return [m.family() for m in self._metrics]


def render(families: Iterable[Family]) -> str:
    """The text exposition format (0.0.4): for each family its HELP and TYPE lines, then
    one line per sample; label values and help text escaped as the format says."""
    lines = []
    for f in families:
        lines.append(f"# HELP {f.name} {_escape_help(f.help)}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for suffix, labels, value in f.samples:
            pairs = ",".join(f'{n}="{escape(v)}"' for n, v in labels.items())
            lines.append(f"{f.name}{suffix}{{{pairs}}} {_number(value)}" if pairs else
                         f"{f.name}{suffix} {_number(value)}")  # fmt: skip
    return "\n".join(lines) + "\n"


def escape(value: str) -> str:
    """A label value as the format writes it: backslash, double quote and newline escaped."""
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _number(value: float) -> str:
    """A sample value: integers without a decimal point, ``+Inf``, ``-Inf``, ``NaN``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))
