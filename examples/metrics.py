"""Prometheus metrics: what a scrape of a worker and of the gateway tells about a queue.

An SMS sender works through queue ``sms``: five messages go out, one number is invalid
(dead-lettered). A named listener, ``audit``, was connected once and is now down, so the
events since then wait for it: that is its lag. The script then scrapes, as Prometheus
would, the worker's ``/metrics`` (its job durations and outcomes) and the gateway's
``/metrics`` (queue depths and lifetime counters from Redis, the listener's lag) and
prints the interesting lines.

Run it with ``python examples/metrics.py``. It uses the server in ``NOTIFYQ_URL`` if that
is set (queue ``sms``), else a throwaway Valkey server that it starts and stops.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
import urllib.request
from typing import Any

from _server import server_url

import notifyq
from notifyq.gateway import Gateway


def send_sms(message: dict[str, Any]) -> str:
    """The worker's handler: an invalid number fails for good (max_attempts=1)."""
    if not message["to"].startswith("+"):
        raise ValueError(f"not a phone number: {message['to']!r}")
    time.sleep(0.02)  # the SMS module's own pace
    return f"sent to {message['to']}"


def scrape(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback
    with opener.open(url, timeout=10) as reply:
        return str(reply.read().decode())


def show(title: str, text: str, pattern: str) -> None:
    print(f"--- {title}")
    for line in text.splitlines():
        if re.match(pattern, line) and not line.startswith("#"):
            print(line)


async def main(url: str) -> None:
    sms = notifyq.Queue("sms", url)
    # the audit listener joins (its group starts at the end of the stream), then goes down
    with notifyq.Listener(sms, "audit", url=url):
        pass

    numbers = ["+15550101", "+15550102", "+15550103", "+15550104", "+15550105", "5550106"]
    jobs = [sms.enqueue({"to": n, "text": "your parcel is on its way"}, max_attempts=1)
            for n in numbers]  # fmt: skip
    print(f"producer: enqueued {len(jobs)} messages on queue sms")

    worker = notifyq.Worker(sms, send_sms, metrics_port=0, concurrency=2)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while worker.processed < len(jobs):
        assert time.monotonic() < deadline, "the worker did not finish in time"
        await asyncio.sleep(0.02)
    assert worker.metrics_address is not None
    host, port = worker.metrics_address
    print(f"worker: {worker.processed} jobs done; metrics at http://{host}:{port}/metrics")

    later = sms.enqueue({"to": "+15550107", "text": "see you tomorrow"}, delay=3600)
    print(f"producer: scheduled {later.id} for tomorrow")

    gateway = Gateway(url, secret=secrets.token_bytes(32), port=0, metrics=True,
                      metrics_queues=["sms"])  # fmt: skip
    async with gateway:
        print(f"gateway: metrics at {gateway.address}metrics")
        worker_text = await asyncio.to_thread(scrape, f"http://{host}:{port}/metrics")
        gateway_text = await asyncio.to_thread(scrape, f"{gateway.address}metrics")

    mine = r"notifyq_worker_jobs_total|notifyq_job_duration_seconds_(count|sum)"
    show("worker /metrics (this worker's jobs)", worker_text, mine)
    queue = r"notifyq_queue_(jobs|enqueued_total|completed_total|dead_total)|notifyq_listener"
    show("gateway /metrics (the queue, from Redis)", gateway_text, queue)
    worker.stop()
    thread.join(30)
    print("metrics: done")


if __name__ == "__main__":
    with server_url("metrics") as redis_url:
        asyncio.run(main(redis_url))
