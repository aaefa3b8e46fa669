"""What one chaos run is made of, and the files its processes share.

Every process of a run reads the same ``Plan`` (``plan.json`` in the run directory), so the
rules that decide a job's fate (whether it fails for good, whether it is delayed, how long
its handler takes) are computed, never guessed, by the checker afterwards. Each process
writes what it saw as JSON lines, one ``os.write`` per line on a file opened with
``O_APPEND``: a line is in the file as soon as the call returns, so a SIGKILL loses nothing
already written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class Plan:
    """The settings of a run; ``jobs`` are numbered 0..jobs-1."""

    dir: str  # the run directory: every log of the run is in it
    url: str  # the server (same port across restarts)
    gateway_port: int
    secret: str  # signs the WebSocket clients' job tokens
    fsync: str  # appendfsync: always | everysec
    jobs: int
    seconds: float  # how long the producers take to enqueue every job
    seed: int
    producers: int = 4
    workers: int = 4
    ws_clients: int = 200
    ws_processes: int = 2
    queue: str = "chaos"
    listener_name: str = "chaos-audit"
    lease: float = 3.0  # seconds; a killed worker's jobs come back after this
    concurrency: int = 8  # jobs one worker runs at once
    max_attempts: int = 5
    fail_every: int = 100  # job n with n % fail_every == 7 fails on every attempt
    ws_drop_every: float = 60.0  # mean seconds between a client's own dropped connections

    # -- the rules of a job, from its number

    def fails(self, n: int) -> bool:
        """Does job ``n`` fail on every attempt (and so end dead-lettered)?"""
        return n % self.fail_every == 7

    def delay(self, n: int) -> float:
        """Odd jobs start after 1 s: their followers subscribe before they run, and they
        go through the delayed set and housekeeping; even ones are claimed at once."""
        return 1.0 if n % 2 else 0.0

    def handler_ms(self, n: int) -> int:
        """How long job ``n``'s handler works: 20 to 200 ms (long enough that a killed
        worker is usually running a few jobs)."""
        return 20 + (n * 7919) % 181

    def group(self, n: int) -> str | None:
        """Two jobs in three wait in a fair group (``tenant-0`` .. ``tenant-4``), so that the
        groups' lists and their rotation go through the kills and restarts too; the third
        waits in the plain normal list."""
        return None if n % 3 == 2 else f"tenant-{n % 5}"

    def producer_of(self, n: int) -> int:
        return n % self.producers

    def client_of(self, n: int) -> int:
        """The WebSocket client that follows job ``n``."""
        return n % self.ws_clients

    def payload(self, n: int) -> dict[str, Any]:
        return {"n": n, "ms": self.handler_ms(n), "fail": self.fails(n)}

    # -- files

    def path(self, name: str) -> pathlib.Path:
        return pathlib.Path(self.dir) / name

    def save(self) -> None:
        self.path(PLAN_FILE).write_text(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def load(cls, run_dir: str) -> Plan:
        return cls(**json.loads((pathlib.Path(run_dir) / PLAN_FILE).read_text()))


class Log:
    """An append-only JSON-lines file written with one unbuffered ``os.write`` per line."""

    def __init__(self, path: pathlib.Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, **fields: Any) -> None:
        os.write(self._fd, (json.dumps(fields, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        os.close(self._fd)


def read_lines(path: pathlib.Path) -> Iterator[dict[str, Any]]:
    """Every complete line of a JSON-lines file (a line cut short is skipped)."""
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                yield json.loads(line)


class Tail:
    """Reads the lines added to a file since the last call (for files still being written)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def new_lines(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        return [json.loads(line) for line in lines if line]


def exit_with_parent() -> None:
    """Exit if the process that started this one goes away, so that a run killed outright
    leaves no process behind: a daemon thread checks the parent twice a second."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, name="chaos-parent-watch", daemon=True).start()


def ready() -> None:
    """Tell the run this process is up (it waits for this line in the process's log)."""
    print("ready", flush=True)


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def hold_stop_signals() -> None:
    """Block SIGTERM and SIGINT in this thread and every thread started after it, so that
    ``wait_for_stop`` receives them (call it first thing in ``main``)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def wait_for_stop() -> None:
    """Block the main thread until SIGTERM or SIGINT (held by ``hold_stop_signals``)."""
    signal.sigwait(STOP_SIGNALS)


def run_dir_from_argv() -> str:
    if len(sys.argv) < 2:
        sys.exit(f"usage: python -m {sys.modules['__main__'].__spec__.name} RUN_DIR ...")  # type: ignore[union-attr]
    return sys.argv[1]
