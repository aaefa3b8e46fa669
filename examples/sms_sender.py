"""SMS sender: the business raises SMS faster than the provider takes them.

The provider accepts 5 messages a second. The shop raises a burst of 30 at once (the
producer returns at once: the queue absorbs it); three sender workers, each with its own
connections (as if on three machines), send them. The queue's rate limit, kept in Redis
and enforced by the claim script, holds all three together to 5 starts in any second;
the other messages wait safely in the queue.

Run it with ``python examples/sms_sender.py``. It uses the server in ``NOTIFYQ_URL`` if
that is set (queue ``sms``), else a throwaway Valkey server that it starts and stops.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from _server import server_url

import notifyq

MESSAGES, WORKERS, PER_SECOND = 30, 3, 5


def send(sms: dict[str, Any], job: notifyq.ActiveJob) -> dict[str, Any]:
    """The senders' handler: hand the message to the (pretend) provider."""
    time.sleep(0.05)  # the provider's API call
    return {"delivered_to": sms["to"]}


def main(url: str) -> None:
    shop = notifyq.Queue("sms", url)
    shop.set_rate_limit(PER_SECOND, 1)
    limit = shop.rate_limit()
    assert limit is not None
    print(f"sms: queue sms limited to {limit.jobs} starts in any {limit.per:g} s")

    started = time.monotonic()
    jobs = shop.enqueue_many({"to": f"+1 555 01{i:02d}", "text": "Your order shipped"}
                             for i in range(MESSAGES))  # fmt: skip
    print(f"shop: raised {len(jobs)} SMS in {time.monotonic() - started:.3f}s and moved on")

    # Three senders, each with a client (and so connections) of its own.
    clients = [redis.Redis.from_url(url) for _ in range(WORKERS)]
    workers = [
        notifyq.Worker("sms", send, client=c, concurrency=4, name=f"sender-{i + 1}")
        for i, c in enumerate(clients)
    ]
    threads = [threading.Thread(target=w.run, kwargs={"burst": True}) for w in workers]
    try:
        for t in threads:
            t.start()
        results = [job.wait(timeout=30) for job in jobs]
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(timeout=30)
        for c in clients:
            c.close()
    shop.clear_rate_limit()

    # When each SMS was sent, by whom: the job records, times from the server's clock.
    records = sorted((job.info() for job in jobs), key=lambda rec: rec["started_at"])
    first = records[0]["started_at"]
    plain = redis.Redis.from_url(url, decode_responses=True)
    for rec in records:
        by = plain.hget(shop.keys.job(rec["id"]), "worker")
        offset = (rec["started_at"] - first) / 1000
        print(f"{offset:6.3f}s  sent by {by}: SMS to {rec['payload']['to']}")
    plain.close()

    # What the limit promised, checked: no window of one second holds more than
    # PER_SECOND sends, i.e. any PER_SECOND + 1 consecutive sends span at least 1 s.
    times = [rec["started_at"] for rec in records]
    busiest = max(sum(1 for t in times if start <= t < start + 1000) for start in times)
    spans = [b - a for a, b in zip(times, times[PER_SECOND:], strict=False)]
    per_second = [sum(1 for t in times if (t - first) // 1000 == s)
                  for s in range((times[-1] - first) // 1000 + 1)]  # fmt: skip
    print(f"sms: sends in each second since the first: {per_second}")
    print(f"sms: busiest one-second window: {busiest} sends (limit {PER_SECOND})")
    print(f"sms: any {PER_SECOND + 1} consecutive sends span at least {min(spans) / 1000:.3f}s")
    done = sum(1 for r in results if r.get("delivered_to"))
    print(f"sms: {done} of {MESSAGES} delivered by {WORKERS} senders")
    if busiest > PER_SECOND or done != MESSAGES:
        raise SystemExit("sms: the limit was not kept")


if __name__ == "__main__":
    with server_url("sms") as url:
        try:
            main(url)
        finally:
            notifyq.connection.close_shared()  # before the server goes away
    print("sms: done")
