"""The invariant of fair groups, read from the server: what the group tests assert after
every kind of move (enqueue, claim, retry, delay, lapsed lease, release, requeue, cancel)."""

from __future__ import annotations

import redis

from notifyq.keys import UNGROUPED, QueueKeys


def group_lists(r: redis.Redis, keys: QueueKeys) -> dict[str, list[str]]:
    """Every group list of the queue that exists, with its ids (oldest last)."""
    prefix = f"{keys.base}pending:g:"
    found = {}
    for key in r.scan_iter(match=f"{prefix}*", count=1000):
        name = key.decode()
        found[name[len(prefix) :]] = [i.decode() for i in r.lrange(name, 0, -1)]
    return found


def assert_rotation_sound(r: redis.Redis, keys: QueueKeys) -> list[str]:
    """A group is in the rotation iff its list is not empty, once; the ungrouped member is
    there iff a group is; the ``grouped`` count is the number of ids in group lists.
    Returns the rotation, head first."""
    rotation = [m.decode() for m in reversed(r.lrange(keys.groups, 0, -1))]
    groups = [m for m in rotation if m != UNGROUPED]
    lists = group_lists(r, keys)
    waiting = {g for g, ids in lists.items() if ids}
    assert len(groups) == len(set(groups)), f"a group twice in the rotation: {rotation}"
    assert set(groups) == waiting, f"rotation {rotation}, groups with jobs {sorted(waiting)}"
    assert rotation.count(UNGROUPED) == (1 if groups else 0), rotation
    grouped = int(r.hget(keys.config, "grouped") or 0)
    assert grouped == sum(len(ids) for ids in lists.values())
    return rotation
