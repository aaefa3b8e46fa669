"""Remote orders in batches: one costly, flaky call for many orders.

The remote order system charges per call and its first call of the day times out. So the
shop's worker sends orders in batches (``batch_size=5``, waiting at most 0.5 s for a batch
to fill), and a failed call is retried with backoff. Each order is still a job of its own:
its own result (read with ``job.wait()``), its own events, its own retries.

Run it with ``python examples/remote_orders.py``. It uses the server in ``NOTIFYQ_URL`` if
that is set (queue ``orders``), else a throwaway Valkey server that it starts and stops.
"""

from __future__ import annotations

import threading
from typing import Any

from _server import server_url

import notifyq

PRICE_PER_CALL = 0.50  # what the remote system charges per call, whatever its size


class RemoteOrderSystem:
    """A stand-in for the remote system: one call takes many orders; the first one fails."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def submit(self, orders: list[dict[str, Any]]) -> list[str]:
        """Confirmation numbers, one per order, in order; ``TimeoutError`` on the first call."""
        with self._lock:
            self.calls += 1
            call = self.calls
        if call == 1:
            raise TimeoutError("the remote order system did not answer")
        return [f"R-{call}{o['order']:03d}" for o in orders]


remote = RemoteOrderSystem()


def send_batch(jobs: list[notifyq.ActiveJob]) -> list[dict[str, Any]]:
    """The worker's batch handler: one remote call for the whole batch, one result per job.
    If the call raises, every job of the batch is retried (each by its own attempts)."""
    names = ", ".join(
        str(job.payload["order"]) + (f" (attempt {job.attempt})" if job.attempt > 1 else "")
        for job in jobs
    )
    try:
        confirmations = remote.submit([job.payload for job in jobs])
    except TimeoutError as exc:
        print(f"worker: call {remote.calls}: orders {names} -> failed: {exc}")
        raise
    print(f"worker: call {remote.calls}: orders {names} -> accepted")
    return [
        {"confirmation": number, "attempt": job.attempt}
        for job, number in zip(jobs, confirmations, strict=True)
    ]


def main(url: str) -> None:
    orders = notifyq.Queue("orders", url)
    numbers = range(1, 13)
    jobs = orders.enqueue_many([{"order": n, "article": f"A-{100 + n}"} for n in numbers])
    print(f"shop: enqueued {len(jobs)} orders")

    # The worker, in a thread of this process (usually a process of its own): batches of
    # up to 5, sent once full or 0.5 s after their first order; a failed call is retried
    # after 0.2 to 0.5 s.
    worker = notifyq.Worker(
        orders, send_batch, batch_size=5, batch_wait=0.5, backoff=(0.2, 0.5), lease=1.5
    )
    worker_thread = threading.Thread(target=worker.run)
    worker_thread.start()
    try:
        for n, job in zip(numbers, jobs, strict=True):  # each order's own result
            result = job.wait(timeout=25)
            print(f"shop: order {n}: confirmation {result['confirmation']} "
                  f"(attempt {result['attempt']})")  # fmt: skip
    finally:
        worker.stop()
        worker_thread.join()
        notifyq.connection.close_shared()  # before the server goes away
    cost = remote.calls * PRICE_PER_CALL
    print(f"shop: paid {remote.calls} calls x ${PRICE_PER_CALL:.2f} = ${cost:.2f}")
    print(f"{len(jobs)} orders in {remote.calls} calls")


if __name__ == "__main__":
    with server_url("shop") as url:
        main(url)
