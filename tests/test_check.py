"""``notifyq check`` against real servers started with the settings it judges."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import pytest
import redis

from tests.servers import Node, running_node
from tests.test_cli import Cli


@pytest.fixture
def cli(redis_url: str, tmp_path: pathlib.Path) -> Cli:
    return Cli(redis_url, tmp_path)


@pytest.fixture
def evicting(tmp_path: pathlib.Path) -> Iterator[Node]:
    """A server that may evict keys when full, with AOF synced on every write."""
    with running_node(tmp_path / "evicting",
        "--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru",
        "--appendonly", "yes", "--appendfsync", "always",
    ) as node:  # fmt: skip
        yield node


def findings(cli: Cli, url: str) -> dict[str, dict[str, str]]:
    proc = cli("check", "--json", url=url)
    assert proc.returncode in (0, 1), proc.stderr
    [server] = json.loads(proc.stdout)
    return {f["topic"]: f for f in server["findings"]}


def test_check_reports_the_test_servers_own_settings(
    cli: Cli, redis_url: str, r: redis.Redis
) -> None:
    config = r.config_get("*")
    found = findings(cli, redis_url)
    assert set(found) == {"version", "eviction", "persistence", "replication"}
    policy = config["maxmemory-policy"]
    assert policy in found["eviction"]["message"]
    assert found["eviction"]["level"] == ("ok" if policy == "noeviction" else "error")
    assert f"appendonly {config['appendonly']}" in found["persistence"]["message"]
    version = r.info("server").get("valkey_version") or r.info("server")["redis_version"]
    assert version in found["version"]["message"]


def test_check_fails_on_a_server_that_may_evict_jobs(cli: Cli, evicting: Node) -> None:
    proc = cli("check", url=evicting.url)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"server {evicting.url}"
    eviction = next(line for line in lines if " eviction " in line)
    assert eviction.split()[0] == "error" and "allkeys-lru" in eviction
    persistence = next(line for line in lines if " persistence " in line)
    assert persistence.split()[0] == "ok" and "appendfsync always" in persistence


def test_check_says_what_it_could_not_read(cli: Cli, evicting: Node) -> None:
    """An ACL user without CONFIG (a managed service, a least-privilege user): the settings
    are reported unknown, with what to check by hand, and nothing fails."""
    evicting.client().acl_setuser(
        "reader", enabled=True, passwords=["+pw-reader-1"], keys=["*"],
        commands=["+@all", "-config"],
    )  # fmt: skip
    url = evicting.url.replace("redis://", "redis://reader:pw-reader-1@")
    found = findings(cli, url)
    assert found["eviction"]["level"] == "warn"
    assert "unknown (CONFIG GET refused)" in found["eviction"]["message"]
    assert "unknown (CONFIG GET refused)" in found["persistence"]["message"]
    assert found["version"]["level"] == "ok"
    assert cli("check", url=url).returncode == 0
