"""``notifyq check``: what a Redis server's settings mean for notifyq's guarantees.

notifyq's promises ("durable when enqueue returns", "nothing lost") hold only as far as the
server keeps what it acknowledged. Three settings decide that, and they are easy to get
wrong on a new deployment:

* ``maxmemory-policy``: any policy but ``noeviction`` lets the server delete keys when it
  is full, job records and pending lists included. Jobs then vanish without an error.
* ``appendonly`` / ``appendfsync`` and ``save``: what a restart or a crash loses.
* the server's version: notifyq needs Redis 6.2 (``XAUTOCLAIM``), and Redis 7.0 or
  Valkey 7.2 for a cluster (sharded pub/sub).

``facts()`` reads them (a flow: one round trip); ``assess()`` turns them into findings, a
pure function so each rule is tested on its own. A server that refuses ``CONFIG GET``
(an ACL user without it, or a managed service) gives "unknown" findings that say what to
check by hand. docs/production.md explains each setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codec import loose_text
from .ops import Command, Flow, Pipeline

#: The settings read with CONFIG GET, one command each, so that one a server does not
#: know (or an ACL refuses) spoils none of the others.
SETTINGS = ("maxmemory-policy", "maxmemory", "appendonly", "appendfsync", "save")

OK, NOTE, WARN, ERROR = "ok", "note", "warn", "error"
LEVELS = (OK, NOTE, WARN, ERROR)


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # ok | note | warn | error
    topic: str  # version | eviction | persistence | replication
    message: str


def facts() -> Flow[dict[str, Any]]:
    """The server's version, mode, replicas and the settings above (None where refused)."""
    replies = yield Pipeline(
        [Command("INFO", "server"), Command("INFO", "replication")]
        + [Command("CONFIG", "GET", name) for name in SETTINGS],
        errors_as_replies=True,
    )
    server, replication, *settings = replies
    out: dict[str, Any] = {}
    for name, reply in zip(SETTINGS, settings, strict=True):
        out[name] = _setting(reply, name)
    info = server if isinstance(server, dict) else {}
    out["version"] = loose_text(info.get("valkey_version") or info.get("redis_version"))
    out["server"] = "valkey" if info.get("valkey_version") else "redis"
    out["mode"] = loose_text(info.get("redis_mode") or info.get("server_mode"))
    roles = replication if isinstance(replication, dict) else {}
    out["role"] = loose_text(roles.get("role"))
    out["replicas"] = roles.get("connected_slaves")
    return out


def _setting(reply: Any, name: str) -> str | None:
    """The value of a CONFIG GET reply (a dict or a flat list), or None if refused/absent."""
    if isinstance(reply, Exception):
        return None
    if isinstance(reply, dict):
        value = reply.get(name, reply.get(name.encode()))
    elif isinstance(reply, list | tuple) and len(reply) == 2:
        value = reply[1]
    else:
        value = None
    return None if value is None else loose_text(value)


def version_tuple(version: str | None) -> tuple[int, ...] | None:
    if not version:
        return None
    parts = []
    for part in version.split(".")[:3]:
        if not part.isdigit():
            return None
        parts.append(int(part))
    return tuple(parts)


def assess(found: dict[str, Any]) -> list[Finding]:
    """The findings for one server's ``facts()``, most important first within each topic."""
    return [
        *_version(found),
        *_eviction(found),
        *_persistence(found),
        *_replication(found),
    ]


def _version(found: dict[str, Any]) -> list[Finding]:
    name = "Valkey" if found.get("server") == "valkey" else "Redis"
    version = version_tuple(found.get("version"))
    if version is None:
        return [Finding(WARN, "version", "the server did not say its version (INFO server)")]
    shown = f"{name} {found['version']}"
    if version < (6, 2):
        return [Finding(ERROR, "version", f"{shown}: notifyq needs Redis 6.2 or later")]
    if found.get("mode") == "cluster" and version < ((7, 2) if name == "Valkey" else (7, 0)):
        return [
            Finding(
                ERROR,
                "version",
                f"{shown} in cluster mode: notifyq needs sharded pub/sub there "
                "(Redis 7.0, Valkey 7.2)",
            )
        ]
    return [Finding(OK, "version", shown)]


def _eviction(found: dict[str, Any]) -> list[Finding]:
    policy, limit = found.get("maxmemory-policy"), found.get("maxmemory")
    if policy is None:
        return [
            Finding(
                WARN,
                "eviction",
                "maxmemory-policy unknown (CONFIG GET refused): make sure it is noeviction, "
                "or jobs may be evicted and lost",
            )
        ]
    if policy == "noeviction":
        return [
            Finding(
                OK,
                "eviction",
                "maxmemory-policy noeviction: a full server refuses enqueues with an error, "
                "it never drops a job",
            )
        ]
    unlimited = limit == "0"
    return [
        Finding(
            WARN if unlimited else ERROR,
            "eviction",
            f"maxmemory-policy {policy}: "
            + (
                "harmless while maxmemory is 0 (no limit), but the moment a limit is set the "
                "server may delete job records and pending lists: set noeviction"
                if unlimited
                else "a full server deletes keys, job records and pending lists included, "
                "and their jobs are lost without an error: set noeviction"
            ),
        )
    ]


def _persistence(found: dict[str, Any]) -> list[Finding]:
    aof, fsync, save = found.get("appendonly"), found.get("appendfsync"), found.get("save")
    if aof is None:
        return [
            Finding(
                WARN,
                "persistence",
                "persistence unknown (CONFIG GET refused): see docs/production.md for what "
                "each setting loses",
            )
        ]
    if aof == "yes":
        if fsync == "always":
            return [
                Finding(
                    OK,
                    "persistence",
                    "appendonly yes, appendfsync always: an acknowledged enqueue or result "
                    "survives a crash of the server or of the machine",
                )
            ]
        if fsync == "everysec":
            return [
                Finding(
                    OK,
                    "persistence",
                    "appendonly yes, appendfsync everysec: a crash of the server process loses "
                    "nothing acknowledged; a crash of the machine may lose the last 1-2 s",
                )
            ]
        return [
            Finding(
                WARN,
                "persistence",
                f"appendonly yes, appendfsync {fsync}: the operating system decides when writes "
                "reach the disk; a machine crash may lose many seconds of jobs",
            )
        ]
    if save:
        return [
            Finding(
                WARN,
                "persistence",
                f"snapshots only (save {save!r}, appendonly no): a restart loses every job "
                "enqueued or finished since the last snapshot; use appendonly yes",
            )
        ]
    return [
        Finding(
            WARN,
            "persistence",
            "no persistence (appendonly no, save ''): a restart of the server loses every job; "
            "fine for tests and throwaway servers, not for jobs that matter",
        )
    ]


def _replication(found: dict[str, Any]) -> list[Finding]:
    role, replicas = found.get("role"), found.get("replicas")
    if role == "slave":
        return [
            Finding(
                ERROR,
                "replication",
                "this server is a replica: it refuses writes; point notifyq at the primary "
                "(or use redis+sentinel:// / redis+cluster://)",
            )
        ]
    if isinstance(replicas, int) and replicas > 0:
        return [
            Finding(
                OK,
                "replication",
                f"{replicas} replica(s) connected: Queue(replicas=N) makes enqueue wait for "
                "them (docs/scaling.md)",
            )
        ]
    return [
        Finding(
            NOTE,
            "replication",
            "no replica: a lost machine loses its data; a replica and Queue(replicas=1) "
            "keep acknowledged jobs through a failover",
        )
    ]


def worst(findings: list[Finding]) -> str:
    return max((f.level for f in findings), key=LEVELS.index, default=OK)


def check(backend: Any) -> list[tuple[str, list[Finding]]]:
    """``(server, findings)`` for the server of ``backend``, or for each master of a
    cluster (``redis+cluster://``): each master keeps its own settings."""
    from .connection import redact

    if getattr(backend, "sharded", False):  # a cluster.ClusterBackend
        nodes = [backend.node(address) for address in backend.topology().masters]
    else:
        nodes = [backend]
    return [(redact(node.url), assess(node.run(facts()))) for node in nodes]
