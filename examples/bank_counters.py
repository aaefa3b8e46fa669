"""Bank counters: one customer brings 50 requests, two others 3 each; two counters serve
one request at a time.

First morning, one plain queue: whoever comes first is served first, so the two small
customers wait behind all 50 requests of the big one. Second morning, each request is
enqueued with its customer as its ``group``: the counters serve the customers who are
waiting in turn, one request each, so the small customers are done within the first
few turns while the big customer's requests go on in their own order.

Run it with ``python examples/bank_counters.py``. It uses the server in ``NOTIFYQ_URL``
if that is set (queues ``bank-fifo`` and ``bank-fair``), else a throwaway Valkey server
that it starts and stops. It takes a few seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from _server import server_url

import notifyq

CUSTOMERS = {"big-corp": 50, "ann": 3, "bob": 3}  # requests each, in the order they arrive
SERVICE_TIME = 0.02  # seconds a counter spends on one request


def morning(url: str, queue_name: str, fair: bool) -> list[str]:
    """Customers queue up before the bank opens; two counters then serve until nobody is
    left. Returns who was served at each turn."""
    bank = notifyq.Queue(queue_name, url)
    bank.pause()  # the doors are closed while the queue forms
    for customer, count in CUSTOMERS.items():
        requests = [{"customer": customer, "n": n} for n in range(1, count + 1)]
        bank.enqueue_many(requests, group=customer if fair else None)
    print(f"bank: {bank.stats()['pending']} requests waiting; doors open")
    bank.resume()

    turns: list[str] = []
    lock = threading.Lock()

    def counter(name: str) -> Callable[[dict[str, Any]], None]:
        def serve(request: dict[str, Any]) -> None:
            with lock:
                turns.append(request["customer"])
                turn = len(turns)
            print(f"  turn {turn:2}: {name} serves {request['customer']} #{request['n']}")
            time.sleep(SERVICE_TIME)  # counting the notes

        return serve

    counters = [
        notifyq.Worker(bank, counter(name), concurrency=1, name=name)
        for name in ("counter-1", "counter-2")
    ]
    threads = [threading.Thread(target=c.run, kwargs={"burst": True}) for c in counters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)  # burst workers stop once nobody waits
    return turns


def last_turn(turns: list[str], customer: str) -> int:
    return max(i + 1 for i, who in enumerate(turns) if who == customer)


def main(url: str) -> None:
    print("bank: morning 1, one line for everybody (no groups)")
    fifo = morning(url, "bank-fifo", fair=False)
    print("bank: morning 2, each customer a group (fair turns)")
    fair = morning(url, "bank-fair", fair=True)

    total = sum(CUSTOMERS.values())
    for title, turns in (("no groups", fifo), ("groups", fair)):
        done = {c: last_turn(turns, c) for c in ("ann", "bob")}
        print(f"bank: with {title}, ann done at turn {done['ann']}, bob at turn {done['bob']}"
              f" of {total}")  # fmt: skip
    small = max(last_turn(fair, "ann"), last_turn(fair, "bob"))
    big_first = [i + 1 for i, who in enumerate(fair) if who == "big-corp"][:3]
    if small <= 10 and len(fair) == total:
        print(f"bank: fair: the small customers were all served within the first {small} "
              f"turns; big-corp was served at turns {big_first}... "
              f"and all {total} requests ran")  # fmt: skip
    else:
        print(f"bank: NOT fair: small customers done at turn {small}")
    notifyq.connection.close_shared()


if __name__ == "__main__":
    with server_url("bank") as url:
        main(url)
    print("bank: closed")
