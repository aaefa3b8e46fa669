"""Lab-report pickup: two ways to learn that a result is ready.

A lab analyses samples. Patients drop a sample off and leave:

* patient A keeps the ticket (the job id) and comes back later to ask: it polls the
  result key, first too early, then when the report is ready;
* patient B leaves a phone number: a named listener calls B the moment B's report
  is ready.

Run it with ``python examples/lab_report.py``. It uses the server in ``NOTIFYQ_URL`` if
that is set (queue ``lab``), else a throwaway Valkey server that it starts and stops.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import redis
from _server import server_url

import notifyq


def analyse(sample: dict[str, Any], job: notifyq.ActiveJob) -> dict[str, Any]:
    """The lab worker's handler: takes 0.5 to 1 s and reports its progress on the way."""
    step = random.uniform(0.5, 1.0) / 4
    for percent in (25, 50, 75, 100):
        time.sleep(step)  # pipetting, centrifuging, reading...
        job.set_progress(percent)
    return {"sample": sample["sample"], "haemoglobin_g_dl": 14.1, "verdict": "normal"}


def main(url: str) -> None:
    lab = notifyq.Queue("lab", url)

    # The lab worker, in a thread of this process (usually a process of its own).
    worker = notifyq.Worker(lab, analyse, concurrency=2)
    worker_thread = threading.Thread(target=worker.run)
    worker_thread.start()

    # The front desk's phone: numbers left by patients, by ticket. The receiver runs
    # for every "completed" event of queue "lab" that the listener reads.
    phone_book: dict[str, str] = {}
    b_was_called = threading.Event()

    @lab.on("completed")
    def call_patient(sender: str, event: notifyq.Event) -> None:
        number = phone_book.get(event.job_id)
        if number is not None:
            print(f"phone: calling {number}: your report is ready: {event.result}")
            b_was_called.set()

    # A named listener keeps its place in Redis: had this process stopped before B's
    # report was ready, a listener started later with the same name would still get the
    # "completed" event (a real phone book would be kept somewhere durable too).
    phone = notifyq.Listener(lab, name="front-desk-phone").start()

    try:
        ticket_a = lab.enqueue({"sample": "A-17", "patient": "A"}).id
        print(f"patient A: dropped off sample A-17, ticket {ticket_a}; leaves")
        ticket_b = lab.enqueue({"sample": "B-42", "patient": "B"}).id
        phone_book[ticket_b] = "+1 555 0142"  # long before the analysis can end
        print(f"patient B: dropped off sample B-42, left phone number {phone_book[ticket_b]}")

        # Patient A comes back too early. All A needs is the ticket: a new handle on
        # the job, from any process, is lab.job(ticket).
        job_a = lab.job(ticket_a)
        try:
            job_a.result()
        except notifyq.ResultNotReady as exc:
            print(f"patient A: ticket {ticket_a} not ready yet ({exc.state})")

        # Without notifyq (any language, redis-cli): GET the result key. Nil: not ready.
        plain = redis.Redis.from_url(url, decode_responses=True)
        key = f"nq:{{lab}}:result:{ticket_a}"
        print(f"patient A: GET {key} -> {plain.get(key) or '(nil)'}")

        # Patient A comes back every 0.3 s until the report is there.
        while (report := plain.get(key)) is None:
            time.sleep(0.3)
        print(f"patient A: GET {key} -> {report}")
        print(f"patient A: ticket {ticket_a} result: {job_a.result()}")
        plain.close()

        if not b_was_called.wait(timeout=30):
            raise SystemExit("patient B was never called")
    finally:
        phone.stop()
        worker.stop()
        worker_thread.join()
        notifyq.connection.close_shared()  # before the server goes away


if __name__ == "__main__":
    with server_url("lab") as url:
        main(url)
    print("lab: closed")
