"""A Redis server that speaks only TLS, with ACL users, for the whole session.

Debian's ``/usr/bin/redis-server`` (built with TLS; ``make test`` installs it) is started
on a free loopback port with TLS only (``port 0``), the default user switched off and an
``admin`` user for the fixtures. Certificates are made here with the ``openssl`` command
line: a CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and a
second CA the server does not trust (with a client certificate of its own). Tests make
their own users with ``ACL SETUSER`` (``user``) and never use ``admin`` for what they test.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis

from notifyq import access, connection
from notifyq.asyncio import connection as aconnection

REDIS_SERVER = "/usr/bin/redis-server"
ADMIN = "admin"
ADMIN_PASSWORD = secrets.token_hex(16)
START_TIMEOUT = 10.0  # seconds the server may take to say it is ready


@dataclass(frozen=True)
class Certs:
    """File names of the certificates and keys made for the session."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA the server does not know
    stranger_cert: Path  # a client certificate signed by ``other_ca``
    stranger_key: Path


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
            cwd=folder)  # fmt: skip
    return cert, key


def make_cert(folder: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    """A certificate for ``name`` signed by ``ca`` (cert, key), with these v3 extensions."""
    cert, key, request = folder / f"{name}.crt", folder / f"{name}.key", folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    ext.write_text(extensions + "\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", request, "-subj", f"/CN={name}", cwd=folder)  # fmt: skip
    openssl("x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-out", cert, "-days", "2", "-extfile", ext, cwd=folder)  # fmt: skip
    return cert, key


def make_certs(folder: Path) -> Certs:
    ca = make_ca(folder, "notifyq-test-ca")
    other = make_ca(folder, "unknown-ca")
    server = make_cert(folder, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost")
    client = make_cert(folder, "client", ca, "extendedKeyUsage=clientAuth")
    stranger = make_cert(folder, "stranger", other, "extendedKeyUsage=clientAuth")
    return Certs(ca[0], *server, *client, other[0], *stranger)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TlsServer:
    """A redis-server process listening with TLS only on 127.0.0.1, stopped by its PID."""

    def __init__(self, folder: Path, certs: Certs, client_certs: str = "optional") -> None:
        if not Path(REDIS_SERVER).is_file():
            pytest.fail(
                f"{REDIS_SERVER} is missing: the TLS and ACL tests run Debian's redis-server "
                "(make test installs it; or: sudo apt-get install redis-server)"
            )
        self.folder, self.certs, self.port = folder, certs, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "redis.conf"
        conf.write_text(
            f"port 0\ntls-port {self.port}\nbind 127.0.0.1\n"
            f"tls-cert-file {certs.server_cert}\ntls-key-file {certs.server_key}\n"
            f"tls-ca-cert-file {certs.ca}\ntls-auth-clients {client_certs}\n"
            f'dir {folder}\nsave ""\nappendonly no\ndaemonize no\nlogfile ""\n'
            f"user default off\nuser {ADMIN} on >{ADMIN_PASSWORD} ~* &* +@all\n"
        )
        self.log: list[str] = []
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [REDIS_SERVER, str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError("redis-server did not start:\n" + "".join(self.log[-20:]))

    def _read_log(self) -> None:
        """Keep the server's output (so its pipe never fills) and spot when it is ready."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)
            if "Ready to accept connections" in line:
                self._ready.set()

    def url(self, user: str | None = None, password: str | None = None, **params: str) -> str:
        """``rediss://user:password@127.0.0.1:port/0?params``; ``ssl_ca_certs`` is the
        session CA unless given (``""``: none)."""
        params.setdefault("ssl_ca_certs", str(self.certs.ca))
        query = urlencode({k: v for k, v in params.items() if v}, safe="/")
        login = f"{user}:{password}@" if user else ""
        return f"rediss://{login}127.0.0.1:{self.port}/0" + (f"?{query}" if query else "")

    def admin(self) -> redis.Redis:
        return redis.Redis.from_url(self.url(ADMIN, ADMIN_PASSWORD))

    def stop(self) -> None:
        died = self.proc.poll() is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=10)  # it reads to the end of the output, then stops
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        if died:  # it crashed while in use: show why
            raise RuntimeError("redis-server exited early:\n" + "".join(self.log[-60:]))


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.fail("the security tests make their certificates with the openssl command")
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def tls_server(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    server = TlsServer(tmp_path_factory.mktemp("tls-redis"), certs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def strict_tls_server(
    certs: Certs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsServer]:
    """A second server that takes only clients with a certificate of the test CA."""
    server = TlsServer(tmp_path_factory.mktemp("mtls-redis"), certs, client_certs="yes")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def admin(tls_server: TlsServer) -> Iterator[redis.Redis]:
    client = tls_server.admin()
    yield client
    client.close()


MakeUser = Callable[..., str]


@pytest.fixture
def user(tls_server: TlsServer, admin: redis.Redis) -> Iterator[MakeUser]:
    """``user(*roles, rules=..., drop=(), **url_params)``: a new ACL user with a random
    password, allowed what ``notifyq.access.rules(*roles)`` gives (or ``rules``), less the
    commands in ``drop``; returns its URL. Users are deleted after the test."""
    made: list[str] = []

    def make(*roles: str, rules: str | None = None, drop: tuple[str, ...] = (),
             **params: str) -> str:  # fmt: skip
        name, password = f"u-{uuid.uuid4().hex[:10]}", secrets.token_hex(12)
        given = (rules if rules is not None else access.rules(*roles)).split()
        given += [f"-{c}" for c in drop]
        admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", *given)
        made.append(name)
        return tls_server.url(name, password, **params)

    yield make
    connection.close_shared()  # their connections, before the users go
    for name in made:
        admin.execute_command("ACL", "DELUSER", name)


@pytest.fixture
def name(admin: redis.Redis) -> Iterator[str]:
    """A queue name no other test uses; its keys on the TLS server are deleted afterwards."""
    queue = f"s-{uuid.uuid4().hex[:12]}"
    yield queue
    keys = list(admin.scan_iter(match=f"nq:{{{queue}}}:*", count=1000))
    if keys:
        admin.delete(*keys)


@pytest.fixture
async def close_async_backends() -> AsyncIterator[None]:
    """Close the asyncio backends the test's event loop opened (before its users go)."""
    yield
    with contextlib.suppress(Exception):
        await aconnection.close_shared()
