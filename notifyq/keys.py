"""Every Redis key and channel name notifyq uses, in one place.

All keys of one queue share the hash tag ``{queue}`` so that a queue lives in one Redis
Cluster slot and every Lua script touches a single slot. The schema is a public contract
(``docs/key-schema.md``): other languages read result keys with a plain ``GET``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ValidationError

PREFIX = "nq"

#: Queue names: letters, digits, ``.``, ``_``, ``-``; 1 to 64 characters.
QUEUE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Job ids (generated or given): letters, digits, ``.``, ``_``, ``-``, ``:``; 1 to 128; not
#: starting with ``-`` (it would read as an option on a command line).
JOB_ID = re.compile(r"[A-Za-z0-9._:][A-Za-z0-9._:-]{0,127}")

#: Group names (``enqueue(group=)``): as queue names, 1 to 64 of A-Z a-z 0-9 . _ -; so they
#: need no escaping in a key, and ``:ungrouped`` (the rotation's member for the jobs without
#: a group) is none of them.
GROUP_NAME = QUEUE_NAME
#: The member of the ``groups`` rotation that stands for the ungrouped normal list.
UNGROUPED = ":ungrouped"

PRIORITIES = ("high", "normal", "low")


def check_queue_name(name: object) -> str:
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise ValidationError(
            f"invalid queue name {name!r}: use 1-64 characters from A-Z a-z 0-9 . _ -"
        )
    return name


def check_group(group: object) -> str:
    if not isinstance(group, str) or not GROUP_NAME.fullmatch(group):
        raise ValidationError(
            f"invalid group {group!r}: use 1-64 characters from A-Z a-z 0-9 . _ -"
        )
    return group


def check_job_id(job_id: object) -> str:
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise ValidationError(
            f"invalid job id {job_id!r}: use 1-128 characters from A-Z a-z 0-9 . _ : - "
            "(not starting with -)"
        )
    return job_id


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Key names of one queue. ``QueueKeys("orders").result("j1")`` → ``nq:{orders}:result:j1``."""

    queue: str

    @property
    def base(self) -> str:
        return f"{PREFIX}:{{{self.queue}}}:"

    # -- per-queue structures
    def pending(self, priority: str = "normal") -> str:
        """LIST of job ids waiting to run, one list per priority; LPUSH in, RPOP out."""
        return f"{self.base}pending:{priority}"

    def pending_all(self) -> list[str]:
        return [self.pending(p) for p in PRIORITIES]

    def group_pending(self, group: str) -> str:
        """LIST of the waiting job ids of one group (normal priority); LPUSH in, RPOP out."""
        return f"{self.base}pending:g:{group}"

    @property
    def groups(self) -> str:
        """LIST: the rotation of the groups that have waiting jobs, plus ``UNGROUPED`` while
        it holds any group. A claim takes the member at the right end (LMOVE RIGHT LEFT)."""
        return f"{self.base}groups"

    @property
    def active(self) -> str:
        """ZSET of running job ids scored by lease deadline (ms)."""
        return f"{self.base}active"

    @property
    def delayed(self) -> str:
        """ZSET of job ids scored by the time (ms) they become due (delays and retries)."""
        return f"{self.base}delayed"

    @property
    def dead(self) -> str:
        """LIST of dead-lettered job ids, newest first."""
        return f"{self.base}dead"

    @property
    def quarantine(self) -> str:
        """LIST of ids whose job record was missing or not a notifyq hash."""
        return f"{self.base}quarantine"

    @property
    def wake(self) -> str:
        """LIST holding at most one token; idle workers block on it (BLPOP)."""
        return f"{self.base}wake"

    @property
    def paused(self) -> str:
        """STRING present while the queue is paused."""
        return f"{self.base}paused"

    @property
    def stats(self) -> str:
        """HASH of lifetime counters (enqueued, completed, failed, ...)."""
        return f"{self.base}stats"

    @property
    def events(self) -> str:
        """STREAM of the queue's events (bounded, for catch-up), and the pub/sub channel of
        the same name on which each event is also published."""
        return f"{self.base}events"

    @property
    def config(self) -> str:
        """HASH of queue settings and counters used by the scripts: ``events_maxlen``, and
        ``seq``, the number of the queue's last event."""
        return f"{self.base}config"

    @property
    def starts(self) -> str:
        """ZSET of the job starts in the last window of the queue's rate limit, scored by
        their time (ms); only while a limit is set (``notifyq.rates``)."""
        return f"{self.base}starts"

    @property
    def workers(self) -> str:
        """ZSET of the ids of the workers serving the queue, scored by their last beat (ms)."""
        return f"{self.base}workers"

    def worker(self, worker_id: str) -> str:
        """HASH: what one worker runs and how it fares (``notifyq.registry``); it expires
        unless the worker beats, so a killed worker's entry goes away by itself."""
        return f"{self.base}worker:{worker_id}"

    @property
    def job_prefix(self) -> str:
        """Prefix of job hashes; scripts that discover ids build keys from it (same slot)."""
        return f"{self.base}job:"

    # -- per-job keys
    def job(self, job_id: str) -> str:
        """HASH: the job record (payload, state, attempts, lease, ...)."""
        return f"{self.base}job:{job_id}"

    def result(self, job_id: str) -> str:
        """STRING: the job's outcome as JSON, written once when it ends. It expires after the
        job's ``result_ttl``, except a dead job's, which stays until requeued or purged."""
        return f"{self.base}result:{job_id}"

    def idempotency(self, key: str) -> str:
        """STRING: maps an idempotency key to the job id it created."""
        return f"{self.base}idem:{key}"

    def done_channel(self, job_id: str) -> str:
        """Pub/sub channel on which the job's outcome is published once."""
        return f"{self.base}done:{job_id}"
