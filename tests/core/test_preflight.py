"""The rules of ``notifyq check``, one server's settings at a time (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest

from notifyq import preflight

SOUND = {
    "version": "7.0.15", "server": "redis", "mode": "standalone", "role": "master",
    "replicas": 1, "maxmemory-policy": "noeviction", "maxmemory": "0",
    "appendonly": "yes", "appendfsync": "everysec", "save": "",
}  # fmt: skip


def level(topic: str, **changes: Any) -> tuple[str, str]:
    [finding] = [f for f in preflight.assess({**SOUND, **changes}) if f.topic == topic]
    return finding.level, finding.message


def test_a_sound_server_has_no_warning() -> None:
    found = preflight.assess(SOUND)
    assert [f.topic for f in found] == ["version", "eviction", "persistence", "replication"]
    assert preflight.worst(found) == "ok"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"maxmemory-policy": "allkeys-lru", "maxmemory": "104857600"}, "error"),
        ({"maxmemory-policy": "volatile-ttl", "maxmemory": "1"}, "error"),
        ({"maxmemory-policy": "allkeys-lru", "maxmemory": "0"}, "warn"),
        ({"maxmemory-policy": None}, "warn"),
        ({"maxmemory-policy": "noeviction", "maxmemory": "104857600"}, "ok"),
    ],
)
def test_eviction(changes: dict[str, Any], expected: str) -> None:
    assert level("eviction", **changes)[0] == expected


@pytest.mark.parametrize(
    ("changes", "expected", "words"),
    [
        ({"appendfsync": "always"}, "ok", "survives a crash of the server or of the machine"),
        ({"appendfsync": "everysec"}, "ok", "may lose the last 1-2 s"),
        ({"appendfsync": "no"}, "warn", "many seconds"),
        ({"appendonly": "no", "save": "3600 1"}, "warn", "since the last snapshot"),
        ({"appendonly": "no", "save": ""}, "warn", "loses every job"),
        ({"appendonly": None}, "warn", "CONFIG GET refused"),
    ],
)
def test_persistence(changes: dict[str, Any], expected: str, words: str) -> None:
    found, message = level("persistence", **changes)
    assert found == expected and words in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"version": "6.0.16"}, "error"),
        ({"version": "6.2.0"}, "ok"),
        ({"version": "6.2.14", "mode": "cluster"}, "error"),
        ({"version": "7.0.0", "mode": "cluster"}, "ok"),
        ({"version": "7.0.0", "mode": "cluster", "server": "valkey"}, "error"),
        ({"version": "7.2.5", "mode": "cluster", "server": "valkey"}, "ok"),
        ({"version": None}, "warn"),
        ({"version": "unstable"}, "warn"),
    ],
)
def test_version(changes: dict[str, Any], expected: str) -> None:
    assert level("version", **changes)[0] == expected


def test_replication() -> None:
    assert level("replication", role="slave")[0] == "error"
    assert level("replication", replicas=0)[0] == "note"
    assert level("replication", replicas=2)[0] == "ok"


def test_worst_orders_the_levels() -> None:
    f = preflight.Finding
    assert preflight.worst([]) == "ok"
    assert preflight.worst([f("note", "a", ""), f("warn", "b", ""), f("ok", "c", "")]) == "warn"
    assert preflight.worst([f("error", "a", ""), f("warn", "b", "")]) == "error"
