"""Handlers for ``notifyq demo``: one queue, two kinds of job, dispatched on ``payload["kind"]``.

* ``order`` reports its progress (0 → 100%) in a few steps, then returns a receipt.
* ``sms`` fails on its first attempt (a busy gateway) to show a retry, then succeeds.

``notifyq demo`` loads this file by its path. To run the same handlers with a real worker::

    cd examples
    notifyq worker demo_handlers:handle -q demo
    notifyq enqueue demo '{"kind": "order", "order_id": 7, "amount_cents": 990}' --wait
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from notifyq.asyncio import ActiveJob


class GatewayBusy(Exception):
    """The (pretend) SMS gateway asks us to try again later."""


async def order(payload: dict[str, Any], job: ActiveJob) -> dict[str, Any]:
    for percent in (0, 25, 50, 75, 100):
        await job.set_progress(percent)  # `notifyq status JOB_ID --json` shows it
        await asyncio.sleep(0.05)
    return {
        "receipt": f"R-{payload['order_id']}",
        "charged_cents": payload["amount_cents"],
    }


async def sms(payload: dict[str, Any], job: ActiveJob) -> dict[str, Any]:
    if job.attempt == 1:
        raise GatewayBusy("SMS gateway busy; notifyq will retry")
    await asyncio.sleep(0.05)
    return {"delivered_to": payload["to"], "attempt": job.attempt}


HANDLERS: dict[str, Callable[[dict[str, Any], ActiveJob], Awaitable[dict[str, Any]]]] = {
    "order": order,
    "sms": sms,
}


async def handle(payload: dict[str, Any], job: ActiveJob) -> dict[str, Any]:
    """The worker's handler: run the handler for the payload's kind."""
    kind = payload.get("kind")
    if kind not in HANDLERS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(HANDLERS)}")
    return await HANDLERS[kind](payload, job)
