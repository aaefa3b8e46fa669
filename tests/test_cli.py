"""The ``notifyq`` command, run as a real subprocess against the test server (no mocks)."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import pty
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

import notifyq
from notifyq.embedded import stop_server

from .support import eventually, running

ROOT = pathlib.Path(__file__).resolve().parent.parent

HANDLERS = textwrap.dedent(
    """
    def double(payload, job):
        return {"doubled": payload["n"] * 2}

    async def adouble(payload, job):
        return {"doubled": payload["n"] * 2}

    def explode(payload, job):
        raise ValueError("boom")
    """
)

Proc = subprocess.CompletedProcess[str]


class Cli:
    """Runs ``python -m notifyq --url <test server> ...`` in a directory holding handlers."""

    def __init__(self, url: str, cwd: pathlib.Path) -> None:
        self.url, self.cwd = url, cwd
        (cwd / "cli_handlers.py").write_text(HANDLERS)
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.env.pop("NOTIFYQ_URL", None)
        # a command that forgot --url must not start a server in the real home
        self.env["NOTIFYQ_HOME"] = str(cwd / "no-server-here")

    def argv(self, args: tuple[str, ...], url: str | None) -> list[str]:
        return [sys.executable, "-m", "notifyq", *(["--url", url] if url else []), *args]

    def __call__(
        self,
        *args: str,
        url: str | None = "",
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Proc:
        return subprocess.run(
            self.argv(args, self.url if url == "" else url),
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(args, self.url),
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def cli(redis_url: str, tmp_path: pathlib.Path) -> Cli:
    return Cli(redis_url, tmp_path)


def assert_error(proc: Proc, code: int, *words: str) -> None:
    """Exit ``code`` with one line on stderr, ``notifyq: error: ...``, and no traceback."""
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("notifyq: error: "), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr


def ok(proc: Proc) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def worker_burst(cli: Cli, name: str, handler: str = "cli_handlers:double") -> Proc:
    proc = cli("worker", handler, "-q", name, "--burst")
    ok(proc)
    return proc


# ------------------------------------------------------------------ enqueue


def test_enqueue_prints_the_id_of_a_queued_job(cli: Cli, queue: notifyq.Queue, name: str) -> None:
    out = ok(cli("enqueue", name, '{"n": 1}', "--priority", "high", "--max-attempts", "2"))
    info = queue.job(out.strip()).info()
    assert out == f"{info['id']}\n"
    assert (info["state"], info["payload"]) == ("queued", {"n": 1})
    assert (info["priority"], info["max_attempts"]) == ("high", 2)


def test_enqueue_options_and_stdin(cli: Cli, queue: notifyq.Queue, name: str) -> None:
    out = ok(cli("enqueue", name, "-", "--id", "job-1", stdin='{"from": "stdin"}'))
    assert out == "job-1\n"
    assert queue.job("job-1").info()["payload"] == {"from": "stdin"}

    first = ok(cli("enqueue", name, "{}", "--idempotency-key", "k1"))
    assert ok(cli("enqueue", name, "{}", "--idempotency-key", "k1")) == first

    delayed = ok(cli("enqueue", name, "[]", "--delay", "60")).strip()
    assert queue.job(delayed).status() == "delayed"


def test_url_comes_from_the_environment(cli: Cli, queue: notifyq.Queue, name: str) -> None:
    out = ok(cli("enqueue", name, "7", url=None, env={"NOTIFYQ_URL": cli.url}))
    assert queue.job(out.strip()).info()["payload"] == 7


# ------------------------------------------------------------------ worker and results


@pytest.mark.parametrize("handler", ["cli_handlers:double", "cli_handlers:adouble"])
def test_worker_burst_drains_the_queue(
    cli: Cli, queue: notifyq.Queue, name: str, handler: str
) -> None:
    jobs = queue.enqueue_many([{"n": i} for i in range(5)])
    proc = cli("worker", handler, "-q", name, "-c", "2", "--burst")
    assert proc.returncode == 0, proc.stderr
    assert f"started on {name}" in proc.stderr
    assert [job.result() for job in jobs] == [{"doubled": 2 * i} for i in range(5)]
    assert ok(cli("result", jobs[3].id, "-q", name)) == '{"doubled": 6}\n'


def test_enqueue_wait_prints_the_result(cli: Cli, queue: notifyq.Queue, name: str) -> None:
    waiting = cli.start("enqueue", name, '{"n": 21}', "--wait", "--timeout", "20")
    try:
        deadline = time.monotonic() + 10
        while queue.stats()["pending"] == 0:  # a burst worker started earlier would just exit
            assert time.monotonic() < deadline, "the job was never enqueued"
            time.sleep(0.02)
        worker_burst(cli, name)
        out, err = waiting.communicate(timeout=20)
    finally:
        waiting.kill()
        waiting.wait()
    assert waiting.returncode == 0, err
    assert out == '{"doubled": 42}\n'


def test_result_status_and_wait_before_the_job_ran(
    cli: Cli, queue: notifyq.Queue, name: str
) -> None:
    job = queue.enqueue({"n": 1})
    assert_error(cli("result", job.id, "-q", name), 5, job.id, "not ready")
    assert ok(cli("status", job.id, "-q", name)) == "queued\n"
    info = json.loads(ok(cli("status", job.id, "-q", name, "--json")))
    assert (info["id"], info["state"], info["payload"]) == (job.id, "queued", {"n": 1})
    assert_error(cli("wait", job.id, "-q", name, "--timeout", "0.2"), 4, job.id)


@pytest.mark.parametrize("command", ["result", "status", "wait", "cancel"])
def test_unknown_job_exits_3(cli: Cli, name: str, command: str) -> None:
    assert_error(cli(command, "no-such-job", "-q", name), 3, "no-such-job", name)


def test_failed_job_is_dead_lettered_requeued_and_purged(
    cli: Cli, queue: notifyq.Queue, name: str
) -> None:
    job_id = ok(cli("enqueue", name, '{"n": 1}', "--max-attempts", "1")).strip()
    worker_burst(cli, name, "cli_handlers:explode")
    assert_error(cli("result", job_id, "-q", name), 1, job_id, "ValueError: boom")
    assert job_id in ok(cli("dead", "list", name))
    [record] = json.loads(ok(cli("dead", "list", name, "--json")))
    assert (record["id"], record["error"]["message"]) == (job_id, "boom")

    assert ok(cli("dead", "requeue", name, job_id)) == f"requeued {job_id}\n"
    assert queue.job(job_id).status() == "queued"
    assert json.loads(ok(cli("dead", "list", name, "--json"))) == []

    worker_burst(cli, name, "cli_handlers:explode")
    ok(cli("dead", "requeue", name, "--all"))
    assert queue.job(job_id).status() == "queued"

    worker_burst(cli, name, "cli_handlers:explode")
    assert ok(cli("dead", "purge", name)) == f"purged 1 dead jobs from queue {name}\n"
    assert json.loads(ok(cli("dead", "list", name, "--json"))) == []
    assert queue.stats()["dead"] == 0


def test_cancel_pause_and_resume(cli: Cli, queue: notifyq.Queue, name: str) -> None:
    job = queue.enqueue({})
    assert ok(cli("cancel", job.id, "-q", name)) == "cancelled\n"
    assert_error(cli("result", job.id, "-q", name), 1, "ancel")
    ok(cli("pause", name))
    assert queue.stats()["paused"] is True
    ok(cli("resume", name))
    assert queue.stats()["paused"] is False


def test_stats(cli: Cli, queue: notifyq.Queue, name: str) -> None:
    queue.enqueue({})
    [stats] = json.loads(ok(cli("stats", name, "--json")))
    assert (stats["queue"], stats["pending"], stats["dead"]) == (name, 1, 0)
    header, row = ok(cli("stats", name)).splitlines()
    assert header.split()[:3] == ["QUEUE", "PENDING", "ACTIVE"]
    assert row.split()[:3] == [name, "1", "0"]
    assert [s["queue"] for s in json.loads(ok(cli("stats", "--json")))] == ["default"]


def test_worker_shows_progress_on_a_terminal(cli: Cli, queue: notifyq.Queue, name: str) -> None:
    queue.enqueue_many([{"n": i} for i in range(3)])
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        cli.argv(("worker", "cli_handlers:double", "-q", name, "--burst"), cli.url),
        cwd=cli.cwd,
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []

    def read() -> None:  # drain the terminal so the worker never blocks on it
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: every writer closed it
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert proc.wait(timeout=30) == 0
        reader.join(timeout=10)
    finally:
        proc.kill()
        proc.wait()
        os.close(leader)
    screen = b"".join(chunks).decode()
    assert "\r\x1b[K" in screen  # the line is redrawn in place
    assert " pending, " in screen
    assert "done: 3 jobs in " in screen


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("enqueue", "bad name!", "{}"), ["invalid queue name"]),
        (("enqueue", "q", "{not json"), ["not valid JSON"]),
        (("enqueue", "q", "-"), ["stdin is not valid JSON"]),
        (("enqueue", "q", "{}", "--timeout", "5"), ["--wait"]),
        (("stats", "bad/name"), ["invalid queue name"]),
        (("result", "bad id!"), ["invalid job id"]),
        (("dead", "requeue", "q"), ["--all"]),
        (("worker", "no_colon"), ["MODULE:HANDLER"]),
        (("worker", "no_such_module:handle"), ["cannot import"]),
        (("worker", "cli_handlers:missing"), ["no attribute"]),
    ],
)
def test_usage_errors_exit_2(cli: Cli, args: tuple[str, ...], words: list[str]) -> None:
    assert_error(cli(*args, stdin=""), 2, *words)


@pytest.mark.parametrize(
    "args", [(), ("frobnicate",), ("enqueue", "q"), ("enqueue", "q", "{}", "--delay", "-1")]
)
def test_bad_command_lines_exit_2(cli: Cli, args: tuple[str, ...]) -> None:
    proc = cli(*args)
    assert proc.returncode == 2
    assert "usage: notifyq" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args", [("stats",), ("enqueue", "q", "{}"), ("result", "j1")])
def test_unreachable_redis_exits_6(cli: Cli, args: tuple[str, ...]) -> None:
    proc = cli(*args, url="redis://127.0.0.1:1")
    assert_error(proc, 6, "Redis unavailable at redis://127.0.0.1:1")


# ------------------------------------------------------------------ server and demo


@pytest.fixture
def home() -> Iterator[pathlib.Path]:
    base = pathlib.Path(tempfile.mkdtemp(prefix="nq", dir="/tmp"))  # short: a socket lives here
    try:
        yield base / "home"
    finally:
        stop_server(base / "home")
        shutil.rmtree(base, ignore_errors=True)


def test_server_start_status_stop(cli: Cli, home: pathlib.Path) -> None:
    env = {"NOTIFYQ_HOME": str(home)}
    assert cli("server", "status", env=env).returncode == 3
    started = cli("server", "start", env=env)
    url = ok(started).strip()
    assert url == f"unix://{home / 'valkey.sock'}"
    assert f"export NOTIFYQ_URL={url}" in started.stderr
    assert url in ok(cli("server", "status", env=env))
    assert ok(cli("server", "stop", env=env)) == "server stopped\n"
    assert cli("server", "status", env=env).returncode == 3


def test_commands_share_the_default_embedded_server(cli: Cli, home: pathlib.Path) -> None:
    env = {"NOTIFYQ_HOME": str(home)}
    job_id = ok(cli("enqueue", "shared", '{"n": 2}', url=None, env=env)).strip()
    assert ok(cli("status", job_id, "-q", "shared", url=None, env=env)) == "queued\n"


@pytest.fixture(scope="module")
def demo() -> Proc:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFYQ_URL": "redis://127.0.0.1:1"}
    return subprocess.run(
        [sys.executable, "-m", "notifyq", "demo", "--terminal", "--jobs", "3"],
        cwd=ROOT,
        env=env,  # NOTIFYQ_URL points nowhere: the demo must use its own server
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_demo_runs_jobs_on_its_own_server(demo: Proc) -> None:
    assert demo.returncode == 0, demo.stderr
    lines = demo.stdout.splitlines()
    assert len([line for line in lines if line.startswith("enqueued ")]) == 3
    results = [json.loads(line.split(None, 2)[2]) for line in lines if line.startswith("result ")]
    assert len(results) == 3
    assert sorted(r.get("receipt", "") for r in results) == ["", "R-1001", "R-1003"]
    assert {"delivered_to": "+15550100002", "attempt": 2} in results  # retried once
    assert "attempt 1 failed: now retrying" in demo.stderr


def test_demo_stderr_is_clean(demo: Proc) -> None:
    assert "Traceback" not in demo.stderr
    assert "WARNING" not in demo.stderr


# ------------------------------------------------------------------ gateway

SECRET = {"NOTIFYQ_SECRET": "s3cret-for-the-cli-tests-only"}


def test_gateway_needs_a_secret(cli: Cli) -> None:
    assert_error(cli("gateway", "--port", "0", env={"NOTIFYQ_SECRET": ""}), 2, "NOTIFYQ_SECRET")


def test_gateway_enqueue_needs_a_key(cli: Cli) -> None:
    proc = cli("gateway", "--port", "0", "--enqueue-queue", "orders", env=SECRET)
    assert_error(proc, 2, "NOTIFYQ_ENQUEUE_KEY")


def test_gateway_refuses_a_static_folder_without_index(cli: Cli, tmp_path: pathlib.Path) -> None:
    proc = cli("gateway", "--port", "0", "--static", str(tmp_path / "nowhere"), env=SECRET)
    assert_error(proc, 2, "has no index.html")


def test_gateway_refuses_a_bad_port(cli: Cli) -> None:
    proc = cli("gateway", "--port", "70000", env=SECRET)
    assert proc.returncode == 2
    assert "expected a port number" in proc.stderr


def test_gateway_without_redis_exits_6(cli: Cli) -> None:
    proc = cli("gateway", "--port", "0", url="redis://127.0.0.1:1", env=SECRET)
    assert_error(proc, 6, "Redis unavailable")


def test_gateway_serves_until_sigterm(cli: Cli) -> None:
    cli.env.update(SECRET)
    proc = cli.start("gateway", "--port", "0")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once it listens
        assert line.startswith("gateway: http://127.0.0.1:"), line + proc.stderr.read()
        address = line.split()[1]
        with urllib.request.urlopen(address + "healthz", timeout=10) as response:
            health = json.loads(response.read())
        assert health["ok"] is True and health["redis"] == "up"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert "Traceback" not in proc.communicate()[1]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reap it and close its pipes


# ------------------------------------------------------------------ consumption windows


def test_worker_window_options_are_parsed() -> None:
    from notifyq.cli import build_parser

    args = build_parser().parse_args(
        ["worker", "m:h", "--window", "05:00-24:00", "--window", "01:00-04:00",
         "--timezone", "Europe/Paris"]
    )  # fmt: skip
    assert (args.windows, args.timezone) == (["05:00-24:00", "01:00-04:00"], "Europe/Paris")
    args = build_parser().parse_args(["worker", "m:h"])
    assert (args.windows, args.timezone) == (None, None)


def test_worker_burst_outside_its_window_leaves_the_jobs_queued(
    cli: Cli, queue: notifyq.Queue, name: str
) -> None:
    job = queue.enqueue({"n": 4})
    now = datetime.datetime.now(datetime.UTC)
    start, end = now + datetime.timedelta(hours=2), now + datetime.timedelta(hours=3)
    closed = f"{start:%H:%M}-{end:%H:%M}"  # a range of UTC time that starts in two hours
    proc = cli("worker", "cli_handlers:double", "-q", name, "--burst", "--window", closed,
               "--timezone", "UTC")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # "tomorrow" when the window opens after midnight (the test may run at 22:00 UTC)
    until = rf"queue {name}: outside its window until (tomorrow )?{start:%H:%M} UTC \(in "
    assert re.search(until, proc.stderr), proc.stderr
    assert "burst run ends here: its window is closed" in proc.stderr
    assert job.status() == "queued"
    ok(cli("worker", "cli_handlers:double", "-q", name, "--burst", "--window", "00:00-24:00"))
    assert job.result() == {"doubled": 8}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--window", "25:00-26:00"), ["invalid window '25:00-26:00'", "not a time of day"]),
        (("--window", "05:00-05:00"), ["starts and ends at 05:00"]),
        (("--window", "05:00-24:00", "--timezone", "Mars/Olympus"), ["unknown time zone"]),
        (("--timezone", "Europe/Paris"), ["timezone is used only with windows"]),
    ],
)
def test_worker_refuses_bad_windows_with_exit_2(
    cli: Cli, args: tuple[str, ...], words: list[str]
) -> None:
    assert_error(cli("worker", "cli_handlers:double", *args), 2, *words)


def test_enqueue_group_puts_the_job_in_its_group(cli: Cli, queue: notifyq.Queue, name: str) -> None:
    job_id = ok(cli("enqueue", name, "{}", "--group", "tenant-42")).strip()
    assert queue.job(job_id).info()["group"] == "tenant-42"
    stats = json.loads(ok(cli("stats", name, "--json")))
    [s] = stats
    assert (s["pending"], s["pending_grouped"], s["groups"]) == (1, 1, 1)
    assert_error(cli("enqueue", name, "{}", "--group", "a b"), 2, "invalid group")


# ------------------------------------------------------------------ rate limits


def test_limit_sets_shows_and_lifts_a_rate_limit(cli: Cli, queue: notifyq.Queue, name: str) -> None:
    assert ok(cli("limit", name)) == f"queue {name}: no rate limit\n"
    assert ok(cli("limit", name, "--jobs", "5", "--per", "1")) == (
        f"queue {name}: at most 5 job starts per 1 s\n"
    )
    assert queue.rate_limit() == (5, 1.0)
    assert json.loads(ok(cli("limit", name, "--json"))) == {"jobs": 5, "per": 1.0}
    [stats] = json.loads(ok(cli("stats", name, "--json")))
    assert stats["rate_limit"] == {"jobs": 5, "per": 1.0}
    header, row = ok(cli("stats", name)).splitlines()
    assert (header.split()[-1], row.split()[-1]) == ("RATE", "5/1s")

    assert ok(cli("limit", name, "--off")) == f"queue {name}: no rate limit\n"
    assert queue.rate_limit() is None
    assert json.loads(ok(cli("limit", name, "--json"))) is None
    assert ok(cli("stats", name)).splitlines()[1].split()[-1] == "-"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--jobs", "5"), ["needs both --jobs N and --per S"]),
        (("--per", "1"), ["needs both --jobs N and --per S"]),
        (("--jobs", "5", "--per", "1", "--off"), ["--off lifts the rate limit"]),
        (("--jobs", "100001", "--per", "1"), ["rate limit jobs must be an integer from 1"]),
        (("--jobs", "5", "--per", "0"), ["rate limit per must be from 0.001"]),
        (("--jobs", "0", "--per", "1"), []),  # argparse
        (("--jobs", "5", "--per", "soon"), []),
    ],
)
def test_limit_refuses_bad_options_with_exit_2(
    cli: Cli, queue: notifyq.Queue, name: str, args: tuple[str, ...], words: list[str]
) -> None:
    queue.set_rate_limit(7, 2)
    proc = cli("limit", name, *args)
    if words:
        assert_error(proc, 2, *words)
    else:
        assert proc.returncode == 2 and "usage:" in proc.stderr, proc.stderr
    assert queue.rate_limit() == (7, 2.0)


# ------------------------------------------------------------------ workers, watch, logs


@pytest.fixture
def held_worker(queue: notifyq.Queue) -> Iterator[tuple[notifyq.Worker, notifyq.Job]]:
    """A worker (one thread) whose first job is held by its handler until the test ends."""
    gate, started = threading.Event(), threading.Event()

    def held(payload: object) -> object:
        started.set()
        assert gate.wait(60)
        return payload

    worker = notifyq.Worker(queue, held, concurrency=1, lease=1.0)
    with running(worker):
        job = queue.enqueue("held")
        assert started.wait(10)
        eventually(lambda: any(w["jobs"] for w in queue.workers()))
        yield worker, job
        gate.set()


def test_workers_shows_a_running_worker_and_its_job(
    cli: Cli, name: str, held_worker: tuple[notifyq.Worker, notifyq.Job]
) -> None:
    worker, job = held_worker
    header, row = ok(cli("workers", name)).splitlines()
    assert header.split() == ["WORKER", "HOST", "PID", "QUEUES", "BEAT", "UP", "DONE", "RUNNING"]
    cells = row.split()
    assert (cells[0], cells[2], cells[3], cells[-1]) == (worker.id, str(os.getpid()), name,
                                                         job.id[:8])  # fmt: skip
    assert cells[4].endswith("s") and cells[4] != "lost"
    [entry] = json.loads(ok(cli("workers", name, "--json")))
    assert (entry["id"], entry["alive"], entry["queues"]) == (worker.id, True, [name])
    assert [j["id"] for j in entry["jobs"]] == [job.id]


def test_workers_says_when_there_are_none(cli: Cli, name: str) -> None:
    assert ok(cli("workers", name)) == f"no workers on {name}\n"
    assert json.loads(ok(cli("workers", name, "--json"))) == []


def test_stats_watch_prints_frames_with_the_counts(
    cli: Cli, queue: notifyq.Queue, name: str, held_worker: tuple[notifyq.Worker, notifyq.Job]
) -> None:
    queue.enqueue_many([1, 2])  # wait behind the held job (one thread)
    out = ok(cli("stats", name, "--watch", "--count", "2", "--interval", "0.2"))
    assert "\x1b[" not in out  # not a terminal: frames one after the other
    frames = [f for f in out.split("notifyq stats ") if f]
    assert len(frames) == 2
    for frame in frames:
        header, row = [line.split() for line in frame.splitlines()[2:4]]
        assert header == ["QUEUE", "PENDING", "ACTIVE", "DELAYED", "DEAD", "COMPLETED", "DONE/S",
                          "PAUSED", "WORKERS"]  # fmt: skip
        assert row[:6] == [name, "2", "1", "0", "0", "0"] and row[-2:] == ["no", "1"]
    assert frames[0].splitlines()[3].split()[6] == "-"
    assert frames[1].splitlines()[3].split()[6] == "0.0"


def test_stats_watch_redraws_a_terminal_and_ctrl_c_exits_0(cli: Cli, name: str) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        cli.argv(("stats", name, "--watch", "--interval", "0.2"), cli.url),
        cwd=cli.cwd, env=cli.env, stdout=follower, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(follower)
    screen = b""
    try:
        deadline = time.monotonic() + 20
        while screen.count(b"notifyq stats") < 2:  # two frames drawn
            assert time.monotonic() < deadline, screen
            screen += os.read(leader, 4096)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        os.close(leader)
    assert screen.count(b"\x1b[H\x1b[2J") >= 2  # each frame redrawn from the top
    assert name.encode() in screen


def test_worker_logs_json_lines_with_the_job(cli: Cli, queue: notifyq.Queue, name: str) -> None:
    job = queue.enqueue({"n": 1}, max_attempts=1)
    proc = cli("worker", "cli_handlers:explode", "-q", name, "--burst", "--log-format", "json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert all(r["time"].endswith("Z") for r in records)
    [failed] = [r for r in records if r.get("job_id") == job.id]
    assert (failed["queue"], failed["attempt"], failed["level"]) == (name, 1, "INFO")
    assert "now dead" in failed["message"]
    # the same from the environment, and given before the command
    again = queue.enqueue({"n": 2}, max_attempts=1)
    proc = cli("--log-format", "json", "worker", "cli_handlers:explode", "-q", name, "--burst")
    assert any(json.loads(line).get("job_id") == again.id for line in proc.stderr.splitlines())
    last = queue.enqueue({"n": 3}, max_attempts=1)
    proc = cli("worker", "cli_handlers:explode", "-q", name, "--burst",
               env={"NOTIFYQ_LOG_FORMAT": "json"})  # fmt: skip
    assert any(json.loads(line).get("job_id") == last.id for line in proc.stderr.splitlines())


@pytest.mark.parametrize(
    "args",
    [
        ("--log-format", "xml", "stats"),
        ("worker", "cli_handlers:double", "--log-format", "yaml"),
        ("stats", "--watch", "--interval", "0"),
        ("stats", "--watch", "--count", "0"),
    ],
)
def test_a_bad_log_format_or_watch_option_is_a_usage_error(cli: Cli, args: tuple[str, ...]) -> None:
    proc = cli(*args)
    assert proc.returncode == 2
    assert "usage: notifyq" in proc.stderr and "Traceback" not in proc.stderr


def test_a_bad_log_format_in_the_environment_exits_2(cli: Cli, name: str) -> None:
    proc = cli("worker", "cli_handlers:double", "-q", name, "--burst",
               env={"NOTIFYQ_LOG_FORMAT": "xml"})  # fmt: skip
    assert_error(proc, 2, "NOTIFYQ_LOG_FORMAT", "text, json")
    assert_error(cli("stats", name, "--count", "2"), 2, "--watch")


# ------------------------------------------------------------------ metrics


def test_metrics_options_are_checked(cli: Cli) -> None:
    proc = cli("worker", "cli_handlers:double", "--metrics-port", "70000")
    assert proc.returncode == 2 and "usage: notifyq" in proc.stderr
    short = {"NOTIFYQ_METRICS_TOKEN": "short", **SECRET}
    proc = cli("worker", "cli_handlers:double", "--burst", "--metrics-port", "0", env=short)
    assert_error(proc, 2, "NOTIFYQ_METRICS_TOKEN", "16 characters")
    assert_error(cli("gateway", "--port", "0", "--metrics", env=short), 2, "16 characters")
    proc = cli("gateway", "--port", "0", "--metrics", "--metrics-queue", "a b", env=SECRET)
    assert_error(proc, 2, "invalid queue name")


def test_a_metrics_port_in_use_is_one_line_and_exit_2(cli: Cli) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        proc = cli("worker", "cli_handlers:double", "--burst", "--metrics-port", port)
    assert_error(proc, 2, f"cannot serve metrics on 127.0.0.1:{port}")
