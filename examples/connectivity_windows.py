"""Connectivity windows: messages wait in their queue while the other side is away.

A connector module at a site in Paris passes messages on to two systems it can reach only
at certain hours: the shop from 05:00 to midnight, the ERP from 01:00 to 04:00. Each
system has its queue and a worker with a consumption window; the business enqueues at any
time, and each message is delivered once its system's window opens. At noon an operator
also pauses the shop's queue for a while (maintenance nobody planned), then resumes it.

The day is simulated: both workers read a clock this script moves by hand
(``Worker(clock=...)``), so a day and a night take a few seconds. Everything else is
real: the queues, the workers and the Redis server.

Run it with ``python examples/connectivity_windows.py``. It uses the server in
``NOTIFYQ_URL`` if that is set (queues ``shop-<random>`` and ``erp-<random>``), else a
throwaway Valkey server that it starts and stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from _server import server_url

import notifyq
from notifyq.windows import Windows

SITE = "Europe/Paris"
SHOP_HOURS, ERP_HOURS = ["05:00-24:00"], ["01:00-04:00"]
DAY = datetime(2026, 6, 1, tzinfo=ZoneInfo(SITE))


class SimulatedClock:
    """The site's wall clock, moved by hand. Each worker reads it through a reader of its
    own, so that ``move_to`` can wait until every worker has looked at the new time: from
    then on, a worker whose window has closed claims nothing."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()
        self._reads: dict[str, int] = {}
        self._read = threading.Condition()

    def reader(self, name: str) -> Callable[[], float]:
        self._reads[name] = 0

        def read() -> float:
            with self._read:
                self._reads[name] += 1
                self._read.notify_all()
                return self.now

        return read

    def move_to(self, when: datetime) -> None:
        with self._read:
            self.now = when.timestamp()
            target = {name: count + 2 for name, count in self._reads.items()}
        print(f"--- {self.text()} ---", flush=True)
        with self._read:
            seen = self._read.wait_for(
                lambda: all(self._reads[n] >= target[n] for n in target), timeout=20
            )
        if not seen:
            raise SystemExit("a worker stopped reading its clock")

    def text(self) -> str:
        return f"{datetime.fromtimestamp(self.now, DAY.tzinfo):%a %H:%M}"


def say(clock: SimulatedClock, line: str) -> None:
    print(f"[{clock.text()}] {line}", flush=True)


@contextlib.contextmanager
def working(worker: notifyq.Worker) -> Iterator[None]:
    thread = threading.Thread(target=worker.run, name=f"worker-{worker.id}")
    thread.start()
    try:
        yield
    finally:
        worker.stop()
        thread.join(timeout=30)


def main(url: str) -> None:
    suffix = f"-{secrets.token_hex(3)}" if os.environ.get("NOTIFYQ_URL") else ""
    shop = notifyq.Queue(f"shop{suffix}", url)
    erp = notifyq.Queue(f"erp{suffix}", url)
    clock = SimulatedClock(DAY + timedelta(minutes=30))
    delivered: list[tuple[str, float, Any]] = []

    def deliver_to(system: str) -> Callable[[Any], str]:
        def deliver(message: Any) -> str:
            delivered.append((system, clock.now, message))
            say(clock, f"{system}: delivered {message!r}")
            return "delivered"

        return deliver

    # The worker logs when its window closes and opens: shown here as they happen.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("           worker log: %(message)s"))
    handler.addFilter(lambda record: "window" in record.getMessage())
    logging.getLogger("notifyq.worker").addHandler(handler)
    logging.getLogger("notifyq.worker").setLevel(logging.INFO)

    # lease 0.6 s: the workers look at the clock every 0.2 s, so the simulation runs fast
    settings: dict[str, Any] = {"timezone": SITE, "lease": 0.6, "concurrency": 1}
    shop_worker = notifyq.Worker(
        shop, deliver_to("shop"), windows=SHOP_HOURS, clock=clock.reader("shop"), **settings
    )
    erp_worker = notifyq.Worker(
        erp, deliver_to("erp"), windows=ERP_HOURS, clock=clock.reader("erp"), **settings
    )
    print(f"shop: window {' '.join(SHOP_HOURS)} {SITE}; erp: window {' '.join(ERP_HOURS)} {SITE}")

    def waiting() -> None:
        counts = {q.name: q.stats()["pending"] for q in (shop, erp)}
        say(clock, f"waiting: shop {counts[shop.name]}, erp {counts[erp.name]}")

    def send(queue: notifyq.Queue, message: str) -> notifyq.Job:
        job = queue.enqueue(message)
        say(clock, f"business: enqueued {message!r} for {queue.name}")
        return job

    with working(shop_worker), working(erp_worker):
        clock.move_to(DAY + timedelta(minutes=30))  # both workers have looked: both closed
        orders = [send(shop, f"order #{n} confirmed") for n in (1001, 1002)]
        stock = [send(erp, "stock SKU-42: -3"), send(erp, "invoice 7 paid")]
        clock.move_to(DAY + timedelta(minutes=45))
        waiting()

        clock.move_to(DAY + timedelta(hours=1))  # the ERP is reachable
        for job in stock:
            job.wait(timeout=20)
        waiting()

        clock.move_to(DAY + timedelta(hours=4, minutes=30))  # the ERP is away again
        late_stock = send(erp, "stock SKU-7: +10")
        clock.move_to(DAY + timedelta(hours=4, minutes=45))
        waiting()

        clock.move_to(DAY + timedelta(hours=5))  # the shop is reachable
        for job in orders:
            job.wait(timeout=20)
        waiting()

        clock.move_to(DAY + timedelta(hours=12))
        shop.pause()
        say(clock, "operator: pauses queue shop (notifyq pause): the shop's API is down, unplanned")
        during_pause = send(shop, "order #1003 confirmed")
        clock.move_to(DAY + timedelta(hours=12, minutes=20))
        say(clock, f"order #1003 is {during_pause.status()}: inside the window, but paused")
        say(clock, "operator: resumes queue shop (notifyq resume)")
        shop.resume()
        during_pause.wait(timeout=20)

        clock.move_to(DAY + timedelta(days=1, minutes=10))  # after midnight: the shop is away
        night_order = send(shop, "order #1004 confirmed")
        clock.move_to(DAY + timedelta(days=1, minutes=20))
        waiting()

        clock.move_to(DAY + timedelta(days=1, hours=1))  # the ERP again
        late_stock.wait(timeout=20)
        clock.move_to(DAY + timedelta(days=1, hours=5))  # the shop again
        night_order.wait(timeout=20)
        waiting()

    notifyq.connection.close_shared()  # before the server goes away
    logging.getLogger("notifyq.worker").removeHandler(handler)

    hours = {"shop": Windows(SHOP_HOURS, SITE), "erp": Windows(ERP_HOURS, SITE)}
    outside = [d for d in delivered if not hours[d[0]].is_open(d[1])]
    counts = {s: sum(1 for d in delivered if d[0] == s) for s in hours}
    if outside or counts != {"shop": 4, "erp": 3}:
        raise SystemExit(f"unexpected deliveries: {delivered}")
    print(
        f"connector: all {len(delivered)} messages delivered inside their windows "
        f"(shop {counts['shop']}, erp {counts['erp']}); none lost, none early"
    )


if __name__ == "__main__":
    started = time.monotonic()
    with server_url("connector") as url:
        main(url)
    print(f"connector: done in {time.monotonic() - started:.1f}s")
