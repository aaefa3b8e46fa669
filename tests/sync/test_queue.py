"""The blocking Queue and Job against a real server: enqueue, read, cancel, dead letters."""

from __future__ import annotations

import json
import multiprocessing
import time

import pytest
import redis

import notifyq
from notifyq import Queue
from notifyq.errors import (
    JobCancelled,
    JobFailed,
    JobNotFound,
    NotReplicated,
    PayloadTooLarge,
    RedisUnavailable,
    ResultNotReady,
    SerializationError,
    ValidationError,
)


def queue_keys(r: redis.Redis, name: str) -> list[bytes]:
    return sorted(r.scan_iter(match=f"nq:{{{name}}}:*"))


def test_enqueue_is_readable_at_once(queue: Queue, r: redis.Redis) -> None:
    job = queue.enqueue({"order": 1})
    assert job.status() == "queued"
    assert job.info()["payload"] == {"order": 1}
    assert r.lrange(queue.keys.pending("normal"), 0, -1) == [job.id.encode()]
    with pytest.raises(ResultNotReady, match="queued"):
        job.result()


def test_result_key_is_plain_json_with_a_ttl(queue: Queue, r: redis.Redis) -> None:
    job = queue.enqueue({"n": 2}, result_ttl=120)
    notifyq.Worker(queue, lambda p: {"double": p["n"] * 2}).run(burst=True)
    raw = r.get(f"nq:{{{queue.name}}}:result:{job.id}")
    assert raw is not None
    record = json.loads(raw)
    assert record["status"] == "completed" and record["result"] == {"double": 4}
    assert record["id"] == job.id and record["queue"] == queue.name and record["v"] == 1
    assert 0 < r.ttl(queue.keys.result(job.id)) <= 120
    assert job.result() == {"double": 4}
    assert job.status() == "completed"


@pytest.mark.parametrize("payload", [object(), {"x": {1, 2}}, float("nan")])
def test_unserialisable_payload_writes_nothing(
    queue: Queue, r: redis.Redis, payload: object
) -> None:
    with pytest.raises(SerializationError):
        queue.enqueue(payload)
    assert queue_keys(r, queue.name) == []


def test_oversize_payload_writes_nothing(name: str, redis_url: str, r: redis.Redis) -> None:
    small = Queue(name, redis_url, max_payload=100)
    with pytest.raises(PayloadTooLarge, match="limit is 100"):
        small.enqueue("x" * 200)
    with pytest.raises(PayloadTooLarge):
        small.enqueue_many([1, 2, "x" * 200])
    assert queue_keys(r, name) == []


def test_invalid_queue_name(redis_url: str) -> None:
    with pytest.raises(ValidationError, match="invalid queue name"):
        Queue("bad name{}", redis_url)


def test_unknown_job(queue: Queue) -> None:
    with pytest.raises(JobNotFound, match="nope"):
        queue.job("nope")
    with pytest.raises(JobNotFound):
        notifyq.Job(queue, "nope").status()
    with pytest.raises(JobNotFound):
        notifyq.Job(queue, "nope").wait(timeout=1)


def test_idempotency_key_returns_the_existing_job(queue: Queue) -> None:
    first = queue.enqueue({"n": 1}, idempotency_key="order-7")
    again = queue.enqueue({"n": 2}, idempotency_key="order-7")
    assert again == first
    assert queue.stats()["pending"] == 1
    assert queue.job(first.id).info()["payload"] == {"n": 1}


def test_given_job_id_is_enqueued_once(queue: Queue) -> None:
    a = queue.enqueue(1, job_id="invoice-42")
    b = queue.enqueue(2, job_id="invoice-42")
    assert a.id == b.id == "invoice-42"
    assert queue.stats()["pending"] == 1


def _enqueue_with_key(url: str, name: str, n: int, out: multiprocessing.Queue) -> None:
    q = Queue(name, url)
    out.put({q.enqueue({"i": i}, idempotency_key="the-one").id for i in range(n)})


def test_concurrent_enqueues_with_one_key_from_many_processes(queue: Queue) -> None:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    procs = [
        ctx.Process(target=_enqueue_with_key, args=(queue.url, queue.name, 50, out))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    ids = set().union(*(out.get(timeout=60) for _ in procs))
    for p in procs:
        p.join(timeout=30)
    assert len(ids) == 1
    assert queue.stats()["totals"]["enqueued"] == 1
    assert queue.stats()["pending"] == 1


class CountingConnection(redis.Connection):
    sends = 0

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        CountingConnection.sends += 1
        return super().send_packed_command(command, check_health)


@pytest.mark.standalone(reason="it counts the sends of a plain redis-py client it passes in")
def test_enqueue_many_is_one_round_trip_per_batch(name: str, redis_url: str) -> None:
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)
    q = Queue(name, client=client)
    q.stats()  # connect first
    CountingConnection.sends = 0
    jobs = q.enqueue_many([{"i": i} for i in range(2500)], batch_size=1000)
    assert CountingConnection.sends == 3
    assert len({j.id for j in jobs}) == 2500
    assert q.stats()["pending"] == 2500
    q.close()


def test_delayed_job_waits_for_its_time(queue: Queue) -> None:
    job = queue.enqueue("later", delay=0.6)
    assert job.status() == "delayed"
    assert queue.stats()["delayed"] == 1
    started = time.monotonic()
    notifyq.Worker(queue, lambda p: p, lease=0.6).run(burst=True)
    assert time.monotonic() - started >= 0.5
    assert job.result() == "later"


def test_priorities_run_high_then_normal_then_low(queue: Queue) -> None:
    order: list[str] = []
    queue.pause()
    for p in ["low", "normal", "high", "low", "high"]:
        queue.enqueue(p, priority=p)
    queue.resume()
    notifyq.Worker(queue, order.append, concurrency=1).run(burst=True)
    assert order == ["high", "high", "normal", "low", "low"]


def test_paused_queue_is_not_consumed(queue: Queue) -> None:
    queue.pause()
    job = queue.enqueue(1)
    notifyq.Worker(queue, lambda p: p).run(burst=True)
    assert job.status() == "queued"
    assert queue.stats()["paused"] is True
    queue.resume()
    notifyq.Worker(queue, lambda p: p).run(burst=True)
    assert job.result() == 1


def test_cancel_queued_and_delayed_jobs(queue: Queue) -> None:
    queued, delayed = queue.enqueue(1), queue.enqueue(2, delay=60)
    assert queued.cancel() == "cancelled"
    assert delayed.cancel() == "cancelled"
    assert queue.stats()["pending"] == queue.stats()["delayed"] == 0
    with pytest.raises(JobCancelled):
        queued.result()
    with pytest.raises(JobCancelled):
        delayed.wait(timeout=1)
    assert queued.cancel() == "cancelled"  # already final: says so


def test_dead_letters_list_requeue_and_purge(queue: Queue) -> None:
    def boom(payload: int) -> None:
        raise ValueError(f"bad {payload}")

    jobs = [queue.enqueue(i, max_attempts=1) for i in range(3)]
    notifyq.Worker(queue, boom, concurrency=1).run(burst=True)
    dead = queue.dead_letters()
    assert [d["id"] for d in dead] == [j.id for j in reversed(jobs)]
    assert dead[0]["error"]["type"] == "ValueError"
    assert "bad 2" in dead[0]["error"]["message"]
    assert "Traceback" in dead[0]["error"]["traceback"]
    with pytest.raises(JobFailed, match="ValueError: bad 0"):
        jobs[0].result()

    queue.requeue(jobs[0].id)
    assert jobs[0].status() == "queued"
    with pytest.raises(ResultNotReady):
        jobs[0].result()
    with pytest.raises(JobNotFound):
        queue.requeue(jobs[0].id)  # no longer dead
    notifyq.Worker(queue, lambda p: p * 10).run(burst=True)
    assert jobs[0].result() == 0

    assert queue.purge_dead() == 2
    assert queue.dead_letters() == []
    with pytest.raises(JobNotFound):
        jobs[1].status()


def test_stats_count_each_state(queue: Queue) -> None:
    queue.enqueue(1)
    queue.enqueue(2, priority="high")
    queue.enqueue(3, delay=60)
    s = queue.stats()
    assert (s["pending"], s["delayed"], s["active"], s["dead"]) == (2, 1, 0, 0)
    assert s["pending_by_priority"] == {"high": 1, "normal": 1, "low": 0}
    assert s["totals"]["enqueued"] == 3


def test_unreachable_redis_names_the_url() -> None:
    q = Queue("q", "redis://:secret@127.0.0.1:1/0")
    with pytest.raises(RedisUnavailable, match=r"127\.0\.0\.1:1") as info:
        q.enqueue(1)
    assert "secret" not in str(info.value)
    assert isinstance(info.value, ConnectionError)


def test_replicas_option_refuses_an_enqueue_no_replica_holds(name: str, redis_url: str) -> None:
    queue = Queue(name, redis_url, replicas=1, replica_timeout=0.05)  # the test server has none
    with pytest.raises(NotReplicated, match="held by 0 of the 1 replicas") as err:
        queue.enqueue({"a": 1}, idempotency_key="k")
    [job_id] = err.value.job_ids
    assert Queue(name, redis_url).job(job_id).status() == "queued"  # on the master all the same
    with pytest.raises(NotReplicated):
        queue.enqueue({"a": 1}, idempotency_key="k")  # the retry the error advises
    assert Queue(name, redis_url).stats()["pending"] == 1  # made no second job
    for bad in ({"replicas": -1}, {"replicas": True}, {"replicas": 1, "replica_timeout": 0}):
        with pytest.raises(ValidationError):
            Queue(name, redis_url, **bad)  # type: ignore[arg-type]
