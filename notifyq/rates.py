"""Per-queue rate limits: at most ``jobs`` starts in any window of ``per`` seconds.

The limit lives in Redis (``config`` field ``rate_limit``, written ``"<jobs>/<per ms>"``),
so every worker anywhere obeys it and it can change while they run. ``claim.lua`` enforces
it with a sliding log of recent starts (the ZSET ``starts``), and answers how long until
the next start is allowed when the window is full; a worker then leaves that queue alone
for that long (at most one tick), serving its other queues meanwhile (``Holds``).
docs/rate-limits.md has the semantics and why a sliding log.

The flows here are I/O-free, as those of ``ops.py``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NamedTuple

from . import ops
from .codec import loose_text, text
from .errors import CorruptRecord, ValidationError
from .keys import QueueKeys

#: Most jobs a limit may allow per window: the log holds one entry per start in the window,
#: so this bounds its memory (``_prelude.lua`` has the same numbers).
MAX_JOBS = 100_000
#: Longest window, seconds (a day); the shortest is a millisecond, the clock's resolution.
MAX_PER = 86_400.0

_VALUE = re.compile(r"([0-9]{1,6})/([0-9]{1,8})")


class RateLimit(NamedTuple):
    """A queue's limit: at most ``jobs`` starts in any window of ``per`` seconds."""

    jobs: int
    per: float

    def as_dict(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "per": self.per}


def check(jobs: object, per: object) -> tuple[int, int]:
    """``set_rate_limit``'s arguments as (jobs, per in ms); ``ValidationError`` otherwise."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= MAX_JOBS:
        raise ValidationError(
            f"rate limit jobs must be an integer from 1 to {MAX_JOBS}, not {jobs!r}"
        )
    if not isinstance(per, timedelta) and (
        isinstance(per, bool) or not isinstance(per, int | float) or not math.isfinite(per)
    ):
        raise ValidationError(f"rate limit per must be a number of seconds, not {per!r}")
    value = ops.seconds(per, "rate limit per")
    if not 0.001 <= value <= MAX_PER:
        raise ValidationError(
            f"rate limit per must be from 0.001 to {MAX_PER:g} seconds, not {value!r}"
        )
    return jobs, round(value * 1000)


def parse(keys: QueueKeys, raw: Any) -> RateLimit | None:
    """The limit a ``config`` field ``rate_limit`` holds; ``CorruptRecord`` if notifyq did not
    write it (the claim script refuses such a value too, rather than start jobs unlimited)."""
    if raw is None:
        return None
    found = _VALUE.fullmatch(text(raw) or "") if isinstance(raw, bytes | str) else None
    if found:
        jobs, per_ms = int(found[1]), int(found[2])
        if 1 <= jobs <= MAX_JOBS and 1 <= per_ms <= MAX_PER * 1000:
            return RateLimit(jobs, per_ms / 1000)
    raise CorruptRecord(
        f"{keys.config} field rate_limit holds {loose_text(raw)!r}, not <jobs>/<ms>"
    )


def set_limit(keys: QueueKeys, jobs: object, per: object) -> ops.Flow[None]:
    """Set (or change) the limit; it holds from the next claim of any worker. The log of
    recent starts is kept, so a tighter limit counts the starts already made."""
    jobs, per_ms = check(jobs, per)
    yield ops.Command("HSET", keys.config, "rate_limit", f"{jobs}/{per_ms}")


def clear_limit(keys: QueueKeys) -> ops.Flow[None]:
    """Lift the limit and drop the log of starts."""
    yield ops.Pipeline(
        [ops.Command("HDEL", keys.config, "rate_limit"), ops.Command("DEL", keys.starts)]
    )


def get_limit(keys: QueueKeys) -> ops.Flow[RateLimit | None]:
    raw = yield ops.Command("HGET", keys.config, "rate_limit")
    return parse(keys, raw)


def wait_of(reply: Sequence[Any]) -> float:
    """Seconds a ``claim.lua`` reply says to wait before the queue may start a job (0: none)."""
    return int(reply[2]) / 1000 if len(reply) > 2 else 0.0


class Holds:
    """The queues a worker leaves alone for a while because their rate limit is reached.

    A held queue is neither claimed from nor waited on (BLPOP): its enqueues would wake
    the worker only to be refused again. A hold lasts what ``claim.lua`` said, at most
    ``longest`` (the worker's tick), so a limit lifted or loosened takes effect within a
    tick and ``stop()`` stays prompt.
    """

    def __init__(self, longest: float) -> None:
        self.longest = longest
        self._until: dict[str, float] = {}  # queue -> time.monotonic() it is free again

    def hold(self, queue: str, wait: float) -> None:
        if wait > 0:
            self._until[queue] = time.monotonic() + min(wait, self.longest)
        else:
            self._until.pop(queue, None)

    def free(self, keys: Sequence[QueueKeys]) -> list[QueueKeys]:
        """The queues of ``keys`` not held now, in order."""
        now = time.monotonic()
        return [k for k in keys if self._until.get(k.queue, 0.0) <= now]

    def rest(self) -> float:
        """Seconds until the first held queue is free again (0 when none is held)."""
        now = time.monotonic()
        return max(0.0, min((t - now for t in self._until.values()), default=0.0))

    def block(self, keys: Sequence[QueueKeys], block: float) -> tuple[float, float]:
        """How a claim loop that would block ``block`` seconds on the wake lists waits:
        (seconds to sleep first, because every queue is held; seconds to block on the wake
        lists of the free queues). Both end when a held queue is free again."""
        if not block or not self._until:
            return 0.0, block
        rest = self.rest()
        if not rest:
            return 0.0, block
        if not self.free(keys):
            return min(block, rest), 0.0
        return 0.0, max(0.001, min(block, rest))  # BLPOP 0 would block for ever
