"""``python -m tests.chaos``: break a running notifyq system for real, then prove its
guarantees (docs/chaos.md). Exit status 0 if every check held, 1 if one failed."""

from __future__ import annotations

import argparse
import random
import signal
import sys
from typing import Any

from .run import Options, run

FULL = {"jobs": 20_000, "seconds": 180.0, "ws_clients": 200, "ws_processes": 2}
SHORT = {"jobs": 2_000, "seconds": 25.0, "ws_clients": 40, "ws_processes": 1}


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument(
        "--fsync",
        choices=("always", "everysec"),
        default="everysec",
        help="the server's appendfsync (default: everysec)",
    )
    parser.add_argument("--jobs", type=int, help="jobs to enqueue (default: 20,000; short 2,000)")
    parser.add_argument(
        "--seconds",
        type=float,
        help="how long the producers take, faults included (default: 180; short 25)",
    )
    parser.add_argument(
        "--short",
        action="store_true",
        help="the short variant CI runs: fewer jobs and clients, same faults",
    )
    parser.add_argument("--seed", type=int, help="seed of the fault schedule (default: random)")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the run's files (logs, AOF) and print where they are",
    )
    args = parser.parse_args(argv)
    sizes = SHORT if args.short else FULL
    return Options(
        fsync=args.fsync,
        jobs=args.jobs or int(sizes["jobs"]),
        seconds=args.seconds or float(sizes["seconds"]),
        seed=args.seed if args.seed is not None else random.randrange(1 << 31),
        ws_clients=int(sizes["ws_clients"]),
        ws_processes=int(sizes["ws_processes"]),
        keep=args.keep,
    )


def interrupt(signum: int, frame: Any) -> None:
    """Stop the run: its ``finally`` stops every process it started. Set for SIGINT too,
    which a shell leaves ignored in a command it starts in the background."""
    raise KeyboardInterrupt


def main() -> int:
    options = parse(sys.argv[1:])
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, interrupt)
    try:
        return run(options)
    except KeyboardInterrupt:
        print("interrupted: every process of the run was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
