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


def test_bank_counters_serves_small_customers_within_the_first_turns() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFYQ_URL"}  # its own server
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "bank_counters.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
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
