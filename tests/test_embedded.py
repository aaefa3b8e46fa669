"""The embedded Valkey server: real processes, no mocks."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest
import redis

from notifyq.embedded import default_home, ensure_server, server_status, stop_server
from notifyq.errors import RedisUnavailable, ValidationError

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _servers(home: pathlib.Path) -> list[int]:
    """Pids of live (non-zombie) valkey-server processes serving ``home``'s socket."""
    needle = os.fsencode(home / "valkey.sock")
    pids = []
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            zombie = (proc / "stat").read_text().rpartition(")")[2].split()[0] == "Z"
        except (OSError, IndexError):
            continue
        if b"valkey-server" in cmdline and needle in cmdline and not zombie:
            pids.append(int(proc.name))
    return pids


def _python(code: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-c", code, *args], cwd=ROOT, text=True, **kwargs
    )


@pytest.fixture
def home() -> Iterator[pathlib.Path]:
    base = pathlib.Path(tempfile.mkdtemp(prefix="nq", dir="/tmp"))
    home = base / "home"  # not created yet: ensure_server must create it
    try:
        yield home
    finally:
        try:
            stop_server(home)
        finally:
            for pid in _servers(home):  # only if stop_server failed; these are ours
                os.kill(pid, signal.SIGKILL)
            shutil.rmtree(base, ignore_errors=True)


def _recorded_pid(home: pathlib.Path) -> int:
    pid = json.loads((home / "server.json").read_text())["pid"]
    assert isinstance(pid, int)
    return pid


def test_ensure_server_starts_a_server_that_answers(home: pathlib.Path) -> None:
    url = ensure_server(home)
    assert url == f"unix://{home / 'valkey.sock'}"
    with redis.Redis.from_url(url) as client:
        assert client.ping()
    assert home.stat().st_mode & 0o777 == 0o700
    assert (home / "valkey.conf").is_file()
    assert (home / "valkey.log").is_file()
    info = json.loads((home / "server.json").read_text())
    assert info["socket"] == str(home / "valkey.sock")
    assert info["started_at"]
    assert _servers(home) == [info["pid"]]
    assert os.getsid(info["pid"]) == info["pid"]  # detached: leads its own session


def test_second_call_reuses_the_running_server(home: pathlib.Path) -> None:
    url = ensure_server(home)
    pid = _recorded_pid(home)
    assert ensure_server(home) == url
    assert _recorded_pid(home) == pid
    assert _servers(home) == [pid]


def test_concurrent_calls_from_many_processes_start_one_server(home: pathlib.Path) -> None:
    code = (
        "import pathlib, sys\n"
        "from notifyq.embedded import ensure_server, server_status\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"  # barrier: wait until every process is up
        "url = ensure_server(pathlib.Path(sys.argv[1]))\n"
        "print(url, server_status(pathlib.Path(sys.argv[1]))['pid'], flush=True)\n"
    )
    procs = [
        _python(code, str(home), stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(8)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = {proc.communicate(timeout=60)[0] for proc in procs}
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()
    assert all(proc.returncode == 0 for proc in procs)
    assert len(outputs) == 1, outputs
    url, pid = outputs.pop().split()
    assert url == f"unix://{home / 'valkey.sock'}"
    assert _servers(home) == [int(pid)]


def test_data_survives_stop_and_restart(home: pathlib.Path) -> None:
    url = ensure_server(home)
    first = _recorded_pid(home)
    with redis.Redis.from_url(url) as client:
        client.set("greeting", "hello")
        client.rpush("jobs", "a", "b")
    assert stop_server(home) is True
    assert server_status(home) is None
    assert not (home / "server.json").exists()
    assert _servers(home) == []
    assert ensure_server(home) == url
    assert _recorded_pid(home) != first
    with redis.Redis.from_url(url) as client:
        assert client.get("greeting") == b"hello"
        assert client.lrange("jobs", 0, -1) == [b"a", b"b"]


def test_stop_server_when_not_running(home: pathlib.Path) -> None:
    assert stop_server(home) is False
    assert not home.exists()  # stopping does not create the home directory
    ensure_server(home)
    assert stop_server(home) is True
    assert stop_server(home) is False


def test_server_status(home: pathlib.Path) -> None:
    assert server_status(home) is None
    url = ensure_server(home)
    assert server_status(home) == {
        "url": url,
        "pid": _recorded_pid(home),
        "home": str(home),
        "socket": str(home / "valkey.sock"),
    }


def test_server_survives_the_process_that_started_it(home: pathlib.Path) -> None:
    code = (
        "import pathlib, sys, time\n"
        "from notifyq.embedded import ensure_server\n"
        "print(ensure_server(pathlib.Path(sys.argv[1])), flush=True)\n"
        "time.sleep(60)\n"
    )
    # Its own process group, like a foreground job in a terminal; then "press Ctrl-C".
    with _python(code, str(home), stdout=subprocess.PIPE, start_new_session=True) as starter:
        assert starter.stdout is not None
        url = starter.stdout.readline().strip()
        os.killpg(starter.pid, signal.SIGINT)
        assert starter.wait(timeout=30) != 0
    with redis.Redis.from_url(url) as client:
        assert client.ping()
    assert server_status(home) is not None


def test_too_long_home_is_rejected() -> None:
    home = pathlib.Path("/tmp") / ("x" * 100)
    with pytest.raises(ValidationError, match="NOTIFYQ_HOME"):
        ensure_server(home)
    assert not home.exists()


@pytest.mark.skipif(sys.platform != "linux", reason="107 bytes is the Linux limit")
def test_longest_allowed_socket_path_works(home: pathlib.Path) -> None:
    # Same base directory as the fixture's home, so that the fixture cleans up after us.
    long_home = home.parent / ("h" * (107 - len(f"{home.parent}/valkey.sock") - 1))
    assert len(os.fsencode(long_home / "valkey.sock")) == 107
    try:
        url = ensure_server(long_home)
        with redis.Redis.from_url(url) as client:
            assert client.ping()
        status = server_status(long_home)
        assert status is not None
        assert status["pid"] == _recorded_pid(long_home)  # recognised via /proc cmdline
    finally:
        stop_server(long_home)
    assert _servers(long_home) == []


def test_failed_start_raises_with_the_log_tail(home: pathlib.Path) -> None:
    home.mkdir(mode=0o700)
    (home / "appendonlydir").write_text("not a directory")  # valkey cannot open its AOF dir
    with pytest.raises(RedisUnavailable) as caught:
        ensure_server(home, timeout=5)
    assert "valkey-server exited" in caught.value.reason
    assert "append" in caught.value.reason.lower()  # from valkey.log
    assert not (home / "server.json").exists()
    assert _servers(home) == []


def test_stale_server_json_pointing_at_another_process(home: pathlib.Path) -> None:
    home.mkdir(mode=0o700)
    (home / "server.json").write_text(json.dumps({"pid": os.getpid()}))
    url = ensure_server(home, timeout=5)
    pid = _recorded_pid(home)
    assert pid != os.getpid()
    assert _servers(home) == [pid]
    with redis.Redis.from_url(url) as client:
        assert client.ping()


def test_default_home(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NOTIFYQ_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_home() == tmp_path / ".local" / "share" / "notifyq"
    monkeypatch.setenv("XDG_DATA_HOME", "/data")
    assert default_home() == pathlib.Path("/data/notifyq")
    monkeypatch.setenv("NOTIFYQ_HOME", "/nq")
    assert default_home() == pathlib.Path("/nq")
