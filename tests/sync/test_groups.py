"""Fair turns between groups, blocking API: a group that floods a queue does not make the
others wait behind it, order within a group stays FIFO, and the rotation stays exactly the
groups that have waiting jobs through every move a job can make."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

import notifyq
from notifyq import Queue, ops
from notifyq.errors import JobCancelled, ValidationError
from notifyq.keys import UNGROUPED

from ..rotation import assert_rotation_sound, group_lists
from ..support import eventually


def served(queue: Queue, **settings: Any) -> list[Any]:
    """Run a one-at-a-time burst worker; the payloads in the order the handler saw them."""
    order: list[Any] = []
    notifyq.Worker(queue, order.append, concurrency=1, **settings).run(burst=True)
    return order


def test_a_flood_in_one_group_does_not_starve_another(queue: Queue, r: redis.Redis) -> None:
    """200 jobs of group a, then 3 of group b, while a worker serving one job at a time is
    busy with the first: b's jobs start within the next few turns, not after a's 200."""
    order: list[str] = []
    first_started, go_on = threading.Event(), threading.Event()

    def handler(payload: str) -> None:
        order.append(payload)
        if payload == "a0":
            first_started.set()
            assert go_on.wait(30)

    worker = notifyq.Worker(queue, handler, concurrency=1)
    thread = threading.Thread(target=worker.run, kwargs={"burst": True}, daemon=True)
    queue.enqueue("a0", group="a")
    thread.start()
    assert first_started.wait(30)
    queue.enqueue_many([f"a{i}" for i in range(1, 200)], group="a")
    queue.enqueue_many([f"b{i}" for i in range(3)], group="b")
    assert_rotation_sound(r, queue.keys)
    go_on.set()
    thread.join(60)
    assert not thread.is_alive()

    assert len(order) == 203
    after = order[1:]  # what started once b's jobs were waiting
    assert [after.index(f"b{i}") for i in range(3)] == [1, 3, 5]  # a, b, a, b, a, b, a...
    assert [p for p in order if p[0] == "a"] == [f"a{i}" for i in range(200)]  # FIFO
    assert [p for p in order if p[0] == "b"] == ["b0", "b1", "b2"]
    assert assert_rotation_sound(r, queue.keys) == []
    assert not r.exists(queue.keys.groups)


def test_started_at_follows_the_turns(queue: Queue) -> None:
    """The job records tell the same order: each group's first job started before any
    group's second."""
    queue.pause()
    jobs = {g: queue.enqueue_many(range(3), group=g) for g in ("x", "y", "z")}
    queue.resume()
    served(queue)
    started = {g: [j.info()["started_at"] for j in js] for g, js in jobs.items()}
    assert max(s[0] for s in started.values()) <= min(s[1] for s in started.values())
    assert all(s == sorted(s) for s in started.values())


def test_jobs_without_a_group_take_a_turn_like_a_group(queue: Queue, r: redis.Redis) -> None:
    """high first as ever; then the ungrouped normal jobs and each group in turn; low last."""
    queue.pause()
    queue.enqueue_many(["u0", "u1", "u2"])
    queue.enqueue_many(["g0", "g1", "g2"], group="g")
    queue.enqueue_many(["h0", "h1"], group="h")
    queue.enqueue("low", priority="low")
    queue.enqueue("high", priority="high")
    assert assert_rotation_sound(r, queue.keys) == [UNGROUPED, "g", "h"]
    queue.resume()
    assert served(queue) == ["high", "u0", "g0", "h0", "u1", "g1", "h1", "u2", "g2", "low"]
    assert_rotation_sound(r, queue.keys)


def test_a_queue_without_groups_keeps_no_rotation(queue: Queue, r: redis.Redis) -> None:
    queue.pause()
    queue.enqueue_many(range(5))
    queue.resume()
    assert served(queue) == [0, 1, 2, 3, 4]
    assert not r.exists(queue.keys.groups)
    assert r.hget(queue.keys.config, "grouped") is None


def test_the_group_is_in_the_record_and_refused_when_bad(queue: Queue, r: redis.Redis) -> None:
    job = queue.enqueue({"n": 1}, group="tenant-42")
    assert job.info()["group"] == "tenant-42"
    assert "group" not in queue.enqueue(2).info()
    assert r.lrange(queue.keys.group_pending("tenant-42"), 0, -1) == [job.id.encode()]
    for bad in ("", "a b", "x" * 65, "a:b", "{q}", 5):
        with pytest.raises(ValidationError, match="invalid group"):
            queue.enqueue(1, group=bad)  # type: ignore[arg-type]
    for priority in ("high", "low"):
        with pytest.raises(ValidationError, match="priority normal only"):
            queue.enqueue(1, group="g", priority=priority)
    with pytest.raises(ValidationError, match="invalid group"):
        queue.enqueue_many([1, 2], group="a b")
    assert queue.stats()["pending"] == 2  # the refusals wrote nothing


def test_stats_count_grouped_jobs(queue: Queue) -> None:
    queue.enqueue_many(range(4), group="a")
    queue.enqueue_many(range(2), group="b")
    queue.enqueue(1)
    queue.enqueue(2, priority="high")
    later = queue.enqueue(3, group="c", delay=60)
    s = queue.stats()
    assert (s["pending"], s["pending_grouped"], s["groups"], s["delayed"]) == (8, 6, 2, 1)
    assert s["pending_by_priority"] == {"high": 1, "normal": 7, "low": 0}
    later.cancel()
    queue._run(ops.claim(queue.keys, "w", 2, 10_000))  # high, then the ungrouped turn
    s = queue.stats()
    assert (s["pending"], s["pending_grouped"], s["groups"]) == (6, 6, 2)
    assert queue._run(ops.backlog(queue.keys)) > 0  # a burst worker is not done
    queue._run(ops.claim(queue.keys, "w", 6, 10_000))
    s = queue.stats()
    assert (s["pending"], s["pending_grouped"], s["groups"], s["delayed"]) == (0, 0, 0, 0)
    assert queue._run(ops.backlog(queue.keys)) == 0


def test_cancel_a_queued_grouped_job(queue: Queue, r: redis.Redis) -> None:
    [a0, a1] = queue.enqueue_many(["a0", "a1"], group="a")
    [b0] = queue.enqueue_many(["b0"], group="b")
    assert a0.cancel() == "cancelled"
    assert assert_rotation_sound(r, queue.keys) == [UNGROUPED, "a", "b"]
    assert b0.cancel() == "cancelled"  # b's last job: b leaves the rotation
    assert assert_rotation_sound(r, queue.keys) == [UNGROUPED, "a"]
    assert a1.cancel() == "cancelled"
    assert assert_rotation_sound(r, queue.keys) == []
    assert queue.stats()["pending"] == 0
    with pytest.raises(JobCancelled):
        a1.result()


def test_retries_and_delays_go_back_to_their_group(queue: Queue, r: redis.Redis) -> None:
    """A failed attempt waits in ``delayed`` and comes back to its group's list; a delayed
    job joins its group when due; nothing is lost and the rotation stays sound throughout."""
    tries: dict[str, int] = {}

    def flaky(payload: str) -> str:
        tries[payload] = tries.get(payload, 0) + 1
        assert_rotation_sound(r, queue.keys)
        if tries[payload] < 2:
            raise RuntimeError("once more")
        return payload

    jobs = queue.enqueue_many([f"a{i}" for i in range(5)], group="a")
    jobs += queue.enqueue_many([f"b{i}" for i in range(2)], group="b")
    jobs.append(queue.enqueue("later", group="c", delay=0.2))
    served_jobs = notifyq.Worker(queue, flaky, concurrency=1, backoff=(0.01, 0.05))
    served_jobs.run(burst=True)
    assert [j.result() for j in jobs] == [*(f"a{i}" for i in range(5)), "b0", "b1", "later"]
    assert all(n == 2 for n in tries.values())
    assert assert_rotation_sound(r, queue.keys) == []
    assert group_lists(r, queue.keys) == {}


def test_a_lapsed_lease_and_a_release_put_the_job_first_in_its_group(
    queue: Queue, r: redis.Redis
) -> None:
    """A job whose worker died (its lease lapsed) or was released goes back to the front of
    its group's list, and the group back into the rotation."""
    queue.pause()
    [a0, a1] = queue.enqueue_many(["a0", "a1"], group="a")
    queue.resume()
    [lost] = queue._run(ops.claim(queue.keys, "killed", 1, 50))
    [released] = queue._run(ops.claim(queue.keys, "stopping", 1, 10_000))
    assert (lost.id, released.id) == (a0.id, a1.id)
    assert assert_rotation_sound(r, queue.keys) == []  # a's list is empty: a left

    def taken_back() -> bool:
        return queue._run(ops.maintain(queue.keys))[1] == 1

    eventually(taken_back)
    assert assert_rotation_sound(r, queue.keys) == [UNGROUPED, "a"]
    assert queue._run(ops.settle([(released, ops.Settlement("release", "null"))])) == ["queued"]
    assert_rotation_sound(r, queue.keys)
    assert r.lrange(queue.keys.group_pending("a"), 0, -1) == [a0.id.encode(), a1.id.encode()]
    assert served(queue) == ["a1", "a0"]  # the release went to the front last
    assert (a0.info()["attempt"], a1.info()["attempt"]) == (2, 1)
    assert assert_rotation_sound(r, queue.keys) == []


def test_a_requeued_dead_letter_goes_back_to_its_group(queue: Queue, r: redis.Redis) -> None:
    def boom(payload: str) -> None:
        raise ValueError(payload)

    [dead] = queue.enqueue_many(["d"], group="a", max_attempts=1)
    notifyq.Worker(queue, boom, concurrency=1).run(burst=True)
    assert dead.status() == "dead"
    assert assert_rotation_sound(r, queue.keys) == []
    queue.enqueue_many(["b0", "b1"], group="b")
    queue.requeue(dead.id)
    assert dead.info()["group"] == "a"
    assert assert_rotation_sound(r, queue.keys) == [UNGROUPED, "b", "a"]
    assert served(queue) == ["b0", "d", "b1"]
    assert assert_rotation_sound(r, queue.keys) == []


def test_a_group_list_something_else_overwrote_is_set_aside(queue: Queue, r: redis.Redis) -> None:
    """A claim that finds a group's list replaced by another type sets it aside (quarantine)
    and goes on with the other groups; enqueue refuses to write to it."""
    [a0] = queue.enqueue_many(["a0"], group="a")
    queue.enqueue_many(["b0"], group="b")
    due = queue.enqueue("a-due", group="a", delay=0.05)
    r.delete(queue.keys.group_pending("a"))
    r.set(queue.keys.group_pending("a"), "x")
    with pytest.raises(notifyq.errors.CorruptRecord, match="pending:g:a holds a string"):
        queue.enqueue("a1", group="a")
    eventually(lambda: queue._run(ops.maintain(queue.keys))[0] == 1)
    assert r.lrange(queue.keys.pending("normal"), 0, -1) == [due.id.encode()]  # not lost
    assert served(queue) == ["a-due", "b0"]
    assert queue.quarantined()[0]["id"] == "pending:g:a"
    assert not r.exists(queue.keys.groups)
    assert a0.status() == "queued"  # its id went with the overwritten list; its record stays


def test_many_workers_serve_many_groups_once_each(
    queue: Queue, start_worker: Callable[..., notifyq.Worker], r: redis.Redis
) -> None:
    """Two workers of four threads, twenty groups: every job runs once, none is lost."""
    seen: list[int] = []
    lock = threading.Lock()

    def record(payload: int) -> None:
        with lock:
            seen.append(payload)

    queue.pause()
    for g in range(20):
        queue.enqueue_many(range(g * 10, g * 10 + 10), group=f"g{g}")
    queue.resume()
    start_worker(record, concurrency=4)
    start_worker(record, concurrency=4)
    eventually(lambda: len(seen) == 200, timeout=60)
    assert sorted(seen) == list(range(200))
    eventually(lambda: queue.stats()["active"] == 0, timeout=30)
    assert assert_rotation_sound(r, queue.keys) == []
