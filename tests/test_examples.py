"""The examples run as documented: ``python examples/<name>.py`` exits 0."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    """``python examples/<name>`` on a throwaway server of its own; it must exit 0."""
    env = {k: v for k, v in os.environ.items() if k != "NOTIFYQ_URL"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


def test_lab_report_runs_on_its_own_server() -> None:
    proc = run_example("lab_report.py")
    out = proc.stdout
    lines = out.splitlines()

    ticket = re.search(r"patient A: dropped off sample A-17, ticket (\S+);", out)
    assert ticket, out
    ticket_a = ticket.group(1)
    key = f"nq:{{lab}}:result:{ticket_a}"

    # A polled too early: not ready, by the API and by a plain GET
    too_early = rf"patient A: ticket {re.escape(ticket_a)} not ready yet \((queued|active)\)"
    not_ready = next(i for i, line in enumerate(lines) if re.fullmatch(too_early, line))
    nil = lines.index(f"patient A: GET {key} -> (nil)")
    # ...then came back and found the outcome JSON and the result
    found = next(i for i, x in enumerate(lines) if x.startswith(f"patient A: GET {key} -> {{"))
    assert '"status":"completed"' in lines[found] and '"sample":"A-17"' in lines[found]
    result = lines.index(
        f"patient A: ticket {ticket_a} result: "
        "{'sample': 'A-17', 'haemoglobin_g_dl': 14.1, 'verdict': 'normal'}"
    )
    assert not_ready < nil < found < result

    # B was called with B's report
    assert any(
        line.startswith("phone: calling +1 555 0142: your report is ready:")
        and "'sample': 'B-42'" in line
        for line in lines
    ), out
    assert lines[-1] == "lab: closed"


def test_connectivity_windows_delivers_each_message_inside_its_window() -> None:
    proc = run_example("connectivity_windows.py")
    lines = proc.stdout.splitlines()

    def at(line: str) -> int:
        assert line in lines, proc.stdout
        return lines.index(line)

    # every message waits while its system is away...
    assert at("[Mon 00:45] waiting: shop 2, erp 2") < at("--- Mon 01:00 ---")
    # ...the ERP's are delivered at 01:00, the shop's still wait
    assert at("--- Mon 01:00 ---") < at("[Mon 01:00] erp: delivered 'stock SKU-42: -3'")
    assert at("[Mon 01:00] erp: delivered 'invoice 7 paid'") < at(
        "[Mon 01:00] waiting: shop 2, erp 0"
    )
    # the ERP is away again from 04:00: a new message for it waits until the next night
    assert at("[Mon 04:45] waiting: shop 2, erp 1") < at("[Mon 05:00] waiting: shop 0, erp 1")
    assert at("[Mon 05:00] shop: delivered 'order #1001 confirmed'") > at("--- Mon 05:00 ---")
    # pause holds a message back inside the window; resume lets it go
    assert (
        at("[Mon 12:20] order #1003 is queued: inside the window, but paused")
        < at("[Mon 12:20] operator: resumes queue shop (notifyq resume)")
        < at("[Mon 12:20] shop: delivered 'order #1003 confirmed'")
    )
    assert at("[Tue 00:20] waiting: shop 1, erp 1") < at(
        "[Tue 01:00] erp: delivered 'stock SKU-7: +10'"
    )
    assert at("[Tue 05:00] shop: delivered 'order #1004 confirmed'") < at(
        "[Tue 05:00] waiting: shop 0, erp 0"
    )
    # the workers said when their windows closed and opened
    assert at(
        "           worker log: queue shop: outside its window until 05:00 Europe/Paris (in 4h30m)"
    ) < at("[Mon 00:30] business: enqueued 'order #1001 confirmed' for shop")
    # no delivery outside its window: shop 05:00-24:00, erp 01:00-04:00
    for line in lines:
        if found := re.fullmatch(r"\[\w{3} (\d\d):\d\d\] (shop|erp): delivered .*", line):
            hour, system = int(found.group(1)), found.group(2)
            assert (5 <= hour < 24) if system == "shop" else (1 <= hour < 4), line
    assert lines[-2] == (
        "connector: all 7 messages delivered inside their windows (shop 4, erp 3); "
        "none lost, none early"
    )


def test_bank_counters_serves_small_customers_within_the_first_turns() -> None:
    proc = run_example("bank_counters.py")
    out = proc.stdout
    # one line for everybody: the small customers wait behind big-corp's 50 requests
    fifo = re.search(r"with no groups, ann done at turn (\d+), bob at turn (\d+) of 56", out)
    assert fifo and min(int(fifo[1]), int(fifo[2])) > 50, out
    # groups: they are done within the first few turns
    fair = re.search(r"with groups, ann done at turn (\d+), bob at turn (\d+) of 56", out)
    assert fair and max(int(fair[1]), int(fair[2])) <= 10, out
    assert "bank: fair: the small customers were all served within the first" in out
    served = re.findall(r"turn +\d+: counter-[12] serves (\S+) #(\d+)", out)
    assert len(served) == 2 * 56  # every request of both mornings, once
    assert out.splitlines()[-1] == "bank: closed"


def test_sms_sender_keeps_five_sends_a_second_across_three_workers() -> None:
    proc = run_example("sms_sender.py")
    out = proc.stdout
    lines = out.splitlines()
    assert "shop: raised 30 SMS in " in out
    sent = [re.fullmatch(r" *(\d+\.\d+)s  sent by (sender-\d): SMS to \+1 555 01(\d\d)", line)
            for line in lines]  # fmt: skip
    sent_lines = [m for m in sent if m]
    assert sorted(int(m[3]) for m in sent_lines) == list(range(30)), out
    # the example's own check, redone on what it printed (ms of the server's clock)
    times = sorted(round(float(m[1]) * 1000) for m in sent_lines)
    assert all(b - a >= 1000 for a, b in zip(times, times[5:], strict=False)), out
    assert "sms: busiest one-second window: 5 sends (limit 5)" in lines, out
    assert "sms: 30 of 30 delivered by 3 senders" in lines, out
    assert lines[-1] == "sms: done"


def test_metrics_example_scrapes_a_worker_and_the_gateway() -> None:
    proc = run_example("metrics.py")
    lines = proc.stdout.splitlines()
    for expected in [
        'notifyq_worker_jobs_total{queue="sms",outcome="completed"} 5',
        'notifyq_worker_jobs_total{queue="sms",outcome="dead"} 1',
        'notifyq_job_duration_seconds_count{queue="sms",outcome="completed"} 5',
        'notifyq_queue_jobs{queue="sms",state="delayed"} 1',
        'notifyq_queue_jobs{queue="sms",state="dead"} 1',
        'notifyq_queue_enqueued_total{queue="sms"} 7',
        'notifyq_queue_completed_total{queue="sms"} 5',
        'notifyq_listener_lag_events{queue="sms",group="audit"} 20',
    ]:
        assert expected in lines, proc.stdout
    assert lines[-1] == "metrics: done"


def test_remote_orders_sends_batches_and_retries_the_failed_call() -> None:
    proc = run_example("remote_orders.py")
    out = proc.stdout
    calls = re.findall(r"^worker: call (\d+): orders (.+) -> (failed|accepted)", out, re.M)
    assert calls, out
    batches = {int(n): re.findall(r"(\d+)( \(attempt 2\))?", orders) for n, orders, _ in calls}
    assert all(1 <= len(b) <= 5 for b in batches.values()), out

    # the first call failed; each of its orders went again, as attempt 2, in a later call
    assert calls[0][0] == "1" and calls[0][2] == "failed"
    accepted = {}  # order -> the call that took it
    for n, _, fate in calls[1:]:
        assert fate == "accepted"
        for order, retry in batches[int(n)]:
            assert order not in accepted, out
            accepted[order] = int(n)
            assert bool(retry) == (order in {o for o, _ in batches[1]})
    assert sorted(accepted, key=int) == [str(i) for i in range(1, 13)]

    # each order's own result, read with job.wait(), names the call that took it
    results = re.findall(r"^shop: order (\d+): confirmation R-(\d+?)(\d{3}) \(attempt (\d)\)$",
                         out, re.M)  # fmt: skip
    assert len(results) == 12, out
    for order, call, padded, attempt in results:
        assert int(padded) == int(order) and accepted[order] == int(call)
        assert attempt == ("2" if order in {o for o, _ in batches[1]} else "1")
    assert out.splitlines()[-1] == f"12 orders in {len(calls)} calls"
