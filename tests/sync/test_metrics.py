"""The blocking worker's metrics endpoint: what a Prometheus scrape reads from it."""

from __future__ import annotations

import threading
import urllib.error

import pytest
import redis

import notifyq
from notifyq.errors import ValidationError
from notifyq.keys import QueueKeys

from .. import promtext
from ..promtext import url_of
from ..support import eventually, running

TOKEN = "metrics-token-0123456789"


def served(worker: notifyq.Worker) -> tuple[str, int]:
    """The worker's metrics address, once its run() has started serving."""
    eventually(lambda: worker.metrics_address is not None, timeout=30)
    assert worker.metrics_address is not None
    return worker.metrics_address


def test_a_scrape_counts_the_jobs_and_their_durations(queue: notifyq.Queue) -> None:
    for payload in promtext.KNOWN_PAYLOADS:
        queue.enqueue(payload, max_attempts=2)
    worker = notifyq.Worker(queue, promtext.known_handler, metrics_port=0, backoff=(0.01, 0.05),
                            concurrency=2)  # fmt: skip
    with running(worker):
        eventually(lambda: worker.processed >= promtext.KNOWN_ATTEMPTS, timeout=30)
        host, port = served(worker)
        assert host == "127.0.0.1"
        status, body, headers = promtext.scrape(url_of((host, port)))
        assert status == 200
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        promtext.check_known_jobs(body, queue.name, concurrency=2)
        assert promtext.scrape(f"http://{host}:{port}/other")[0] == 404
    with pytest.raises(urllib.error.URLError):  # closed when the worker stopped
        promtext.scrape(f"http://{host}:{port}/metrics")


def test_running_jobs_are_counted_while_they_run(queue: notifyq.Queue) -> None:
    release = threading.Event()
    queue.enqueue_many([1, 2])
    worker = notifyq.Worker(queue, lambda p: release.wait(30), metrics_port=0)
    with running(worker):
        url = url_of(served(worker))

        def two_running() -> bool:
            families = promtext.parse(promtext.scrape(url)[1])
            return promtext.series(families, "notifyq_worker_jobs_running") != [] and (
                promtext.value(families, "notifyq_worker_jobs_running", queue=queue.name) == 2
            )

        eventually(two_running, timeout=30)
        release.set()


def test_with_a_token_set_a_scrape_must_send_it(
    queue: notifyq.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFYQ_METRICS_TOKEN", TOKEN)
    worker = notifyq.Worker(queue, promtext.known_handler, metrics_port=0)
    with running(worker):
        url = url_of(served(worker))
        status, _, headers = promtext.scrape(url)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert promtext.scrape(url, token=TOKEN[:-1])[0] == 401
        assert promtext.scrape(url, token=TOKEN)[0] == 200


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"metrics_port": 70000}, "metrics_port must be a port number"),
        ({"metrics_port": "9100"}, "metrics_port must be a port number"),
        ({"metrics_port": 0, "metrics_host": ""}, "metrics_host must be"),
    ],
)
def test_bad_metrics_settings_are_refused(
    queue: notifyq.Queue, settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        notifyq.Worker(queue, promtext.known_handler, **settings)  # type: ignore[arg-type]


def test_claim_errors_are_counted_by_reason(queue: notifyq.Queue, r: redis.Redis) -> None:
    pending = QueueKeys(queue.name).pending("normal")
    r.set(pending, "not a list")  # claim.lua refuses the queue: the claim loop pauses
    worker = notifyq.Worker(queue, promtext.known_handler, metrics_port=0)
    with running(worker):
        url = url_of(served(worker))

        def counted() -> bool:
            families = promtext.parse(promtext.scrape(url)[1])
            return {"reason": "corrupt_key"} in promtext.series(
                families, "notifyq_worker_claim_errors_total"
            )

        eventually(counted, timeout=30)
        r.delete(pending)
