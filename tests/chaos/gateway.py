"""The gateway process: ``python -m tests.chaos.gateway RUN_DIR``.

``notifyq.gateway.Gateway`` on the run's port, as ``notifyq gateway`` runs it, plus the
check that exits when the run that started it is gone. Stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from notifyq.gateway import Gateway

from .plan import Plan, exit_with_parent, ready, run_dir_from_argv


async def serve(plan: Plan) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Gateway(plan.url, secret=plan.secret.encode(), port=plan.gateway_port):
        ready()
        await stop.wait()


def main() -> None:
    plan = Plan.load(run_dir_from_argv())
    exit_with_parent()
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    asyncio.run(serve(plan))


if __name__ == "__main__":
    main()
