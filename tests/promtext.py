"""A small strict parser of the Prometheus text format (0.0.4), for the metrics tests.

Stricter than Prometheus itself where notifyq promises more: every sample belongs to a
family announced by ``# HELP`` then ``# TYPE`` just before it, no family or series appears
twice, histograms have cumulative buckets that end at ``+Inf`` equal to ``_count``.
"""

from __future__ import annotations

import math
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
HELP = re.compile(rf"# HELP ({NAME}) (.*)")
TYPE = re.compile(rf"# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)")
SAMPLE = re.compile(rf"({NAME})(?:\{{(.*)\}})? (\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
SUFFIXES = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


@dataclass
class Family:
    name: str
    kind: str
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def parse(text: str) -> dict[str, Family]:
    """Families by name; ``AssertionError`` on anything the format does not allow."""
    assert text.endswith("\n"), "the text must end with a newline"
    families: dict[str, Family] = {}
    current: Family | None = None
    pending_help: tuple[str, str] | None = None
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for line in text[:-1].split("\n"):
        if match := HELP.fullmatch(line):
            assert pending_help is None, line
            pending_help = (match[1], _unescape(match[2], help_text=True))
            continue
        if match := TYPE.fullmatch(line):
            assert pending_help and pending_help[0] == match[1], f"TYPE without HELP: {line}"
            assert match[1] not in families, f"family {match[1]} twice"
            current = families[match[1]] = Family(match[1], match[2], pending_help[1])
            pending_help = None
            continue
        match = SAMPLE.fullmatch(line)
        assert match, f"not a sample line: {line!r}"
        assert current is not None and pending_help is None, f"sample outside a family: {line}"
        name, labels, value = match[1], _labels(match[2] or ""), _value(match[3])
        suffix = name[len(current.name) :]
        assert name.startswith(current.name), (name, current.name)
        assert suffix in SUFFIXES[current.kind], f"{name} in a {current.kind}"
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"series twice: {line}"
        seen.add(key)
        current.samples.append((suffix, labels, value))
    assert pending_help is None, "HELP without TYPE at the end"
    for family in families.values():
        if family.kind == "histogram":
            check_histogram(family)
    return families


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        match = LABEL.match(text, pos)
        assert match, f"bad labels: {text!r}"
        assert match[1] not in labels, f"label {match[1]} twice"
        labels[match[1]] = _unescape(match[2])
        pos = match.end()
        assert match[3] == "," or pos == len(text)
    return labels


def _unescape(text: str, *, help_text: bool = False) -> str:
    escapes = {"\\\\": "\\", "\\n": "\n"} if help_text else {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
    return re.sub(r"\\.", lambda m: escapes[m[0]], text)


def _value(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf"))
    assert re.fullmatch(r"-?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?", text), f"bad value {text!r}"
    return float(text)


def check_histogram(family: Family) -> None:
    """Each series: buckets in order of ``le``, cumulative, the last ``+Inf`` = ``_count``."""
    series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    counts, sums = {}, {}
    for suffix, labels, value in family.samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        if suffix == "_bucket":
            series.setdefault(rest, []).append((_value(labels["le"]), value))
        elif suffix == "_count":
            counts[rest] = value
        else:
            sums[rest] = value
    assert set(series) == set(counts) == set(sums), family.name
    for rest, buckets in series.items():
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf, (family.name, bounds)
        values = [v for _, v in buckets]
        assert values == sorted(values), f"{family.name}{rest}: buckets not cumulative"
        assert values[-1] == counts[rest], f"{family.name}{rest}: +Inf != _count"


def value(families: dict[str, Family], name: str, suffix: str = "", **labels: str) -> float:
    """The value of one series, which must exist."""
    family = families[name]
    found = [v for s, lb, v in family.samples if s == suffix and lb == labels]
    assert len(found) == 1, (name, suffix, labels, family.samples)
    return found[0]


def series(families: dict[str, Family], name: str) -> list[dict[str, str]]:
    """The label sets of a family's series (``_bucket`` lines left out)."""
    return [labels for s, labels, _ in families[name].samples if s != "_bucket"]


def url_of(address: tuple[str, int]) -> str:
    """The metrics URL of a worker's ``metrics_address``."""
    return f"http://{address[0]}:{address[1]}/metrics"


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def scrape(url: str, token: str | None = None) -> tuple[int, str, dict[str, str]]:
    """GET ``url`` (a metrics endpoint on loopback): status, body, headers."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _OPENER.open(request, timeout=30) as reply:
            return reply.status, reply.read().decode(), dict(reply.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


#: What a worker runs in the metrics tests: 3 jobs that complete, 1 that fails twice
#: (max_attempts=2: retried, then dead): 5 attempts.
KNOWN_PAYLOADS = [1, 2, 3, "boom"]
KNOWN_ATTEMPTS = 5


def known_handler(payload: object) -> object:
    if payload == "boom":
        raise ValueError("boom")
    return payload


def check_known_jobs(text: str, queue: str, concurrency: int) -> None:
    """A worker's scrape after ``KNOWN_PAYLOADS`` ran: counts and histogram counts per
    outcome, nothing running, no claim error."""
    families = parse(text)
    expected = {"completed": 3, "retrying": 1, "dead": 1}
    for outcome, n in expected.items():
        assert value(families, "notifyq_worker_jobs_total", queue=queue, outcome=outcome) == n
        duration = value(families, "notifyq_job_duration_seconds", "_count", queue=queue,
                         outcome=outcome)  # fmt: skip
        assert duration == n, outcome
    assert len(series(families, "notifyq_worker_jobs_total")) == len(expected)
    assert series(families, "notifyq_worker_jobs_running") == []
    assert series(families, "notifyq_worker_claim_errors_total") == []
    assert value(families, "notifyq_worker_concurrency") == concurrency
