"""Handlers for ``notifyq demo``: one queue, three kinds of job, dispatched on ``payload["kind"]``.

* ``order`` reports its progress (0 → 100%) in a few steps, then returns a receipt. Each
  step takes ``step_ms`` (from the payload, 10 to 5,000 ms; 50 ms when absent).
* ``sms`` fails on its first attempt (a busy gateway) to show a retry, then succeeds.
* ``flaky`` fails on every attempt: retried until its attempts are spent, then dead-lettered.

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

STEP_MS = 50  # an order step, unless the payload says otherwise
STEP_MS_RANGE = (10, 5000)


class GatewayBusy(Exception):
    """The (pretend) SMS gateway asks us to try again later."""


class SupplierDown(Exception):
    """The (pretend) supplier of a flaky job never answers."""


def step_seconds(payload: dict[str, Any]) -> float:
    """The payload's ``step_ms``, clamped to ``STEP_MS_RANGE``, in seconds."""
    value = payload.get("step_ms", STEP_MS)
    if isinstance(value, bool) or not isinstance(value, int | float):
        value = STEP_MS
    low, high = STEP_MS_RANGE
    return min(max(float(value), low), high) / 1000


async def order(payload: dict[str, Any], job: ActiveJob) -> dict[str, Any]:
    step = step_seconds(payload)
    for percent in (0, 25, 50, 75, 100):
        await job.set_progress(percent)  # `notifyq status JOB_ID --json` shows it
        await asyncio.sleep(step)
    return {
        "receipt": f"R-{payload['order_id']}",
        "charged_cents": payload["amount_cents"],
    }


async def sms(payload: dict[str, Any], job: ActiveJob) -> dict[str, Any]:
    if job.attempt == 1:
        raise GatewayBusy("SMS gateway busy; notifyq will retry")
    await asyncio.sleep(0.05)
    return {"delivered_to": payload["to"], "attempt": job.attempt}


async def flaky(payload: dict[str, Any], job: ActiveJob) -> dict[str, Any]:
    await asyncio.sleep(0.05)
    raise SupplierDown(f"the supplier did not answer (attempt {job.attempt})")


HANDLERS: dict[str, Callable[[dict[str, Any], ActiveJob], Awaitable[dict[str, Any]]]] = {
    "order": order,
    "sms": sms,
    "flaky": flaky,
}


async def handle(payload: dict[str, Any], job: ActiveJob) -> dict[str, Any]:
    """The worker's handler: run the handler for the payload's kind."""
    kind = payload.get("kind")
    if kind not in HANDLERS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(HANDLERS)}")
    return await HANDLERS[kind](payload, job)
