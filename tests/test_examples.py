"""The examples run as documented: ``python examples/<name>.py`` exits 0."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def test_lab_report_runs_on_its_own_server() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFYQ_URL"}  # its own server
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "lab_report.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
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


def test_remote_orders_sends_batches_and_retries_the_failed_call() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFYQ_URL"}  # its own server
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "remote_orders.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
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
