"""Every error notifyq raises.

Each error also inherits the builtin it is, so ``except ValueError`` keeps working::

    NotifyQError
    ├── ValidationError (ValueError)          bad argument: queue name, job id, option
    │   ├── SerializationError (TypeError)    payload or result is not JSON
    │   └── PayloadTooLarge                   encoded payload or result over the limit
    ├── JobNotFound (LookupError)             no such job (never existed, expired or purged)
    ├── ResultNotReady (LookupError)          Job.result() on a job still queued/running
    ├── JobFailed                             the job failed for good (dead-lettered)
    │   └── JobCancelled                      the job was cancelled
    ├── ResultTimeout (TimeoutError)          Job.wait() ran out of time
    ├── CorruptRecord (ValueError)            Redis holds something notifyq did not write
    ├── NotReplicated (TimeoutError)          fewer replicas acknowledged an enqueue than asked
    ├── InvalidToken (PermissionError)        a token malformed, forged, expired or for else
    ├── AccessDenied (PermissionError)        the server's ACL rules refuse a command
    └── RedisUnavailable (ConnectionError)    the Redis server cannot be reached
        └── ServerFull                        it is out of memory and refuses writes

redis-py errors are wrapped with ``raise ... from exc`` so the cause stays visible.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import OutOfMemoryError


class NotifyQError(Exception):
    """Root of every notifyq error."""


class ValidationError(NotifyQError, ValueError):
    """An argument is invalid (queue name, job id, option value)."""


class SerializationError(ValidationError, TypeError):
    """A payload or result cannot be encoded as JSON."""


class PayloadTooLarge(ValidationError):
    """An encoded payload or result is larger than the configured limit."""


class JobNotFound(NotifyQError, LookupError):
    """No job with this id exists in the queue (never did, or expired, or was purged)."""

    def __init__(self, queue: str, job_id: str, where: str = "") -> None:
        super().__init__(f"job {job_id!r} not found in {where or 'queue'} {queue!r}")
        self.queue = queue
        self.job_id = job_id


class ResultNotReady(NotifyQError, LookupError):
    """``Job.result()`` was called on a job that has not finished yet."""

    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(f"job {job_id!r} is {state}; its result is not ready")
        self.job_id = job_id
        self.state = state


class JobFailed(NotifyQError):
    """The job failed for good: its attempts are spent and it is dead-lettered.

    ``error`` is the recorded failure: ``{"type", "message", "traceback"}``.
    """

    def __init__(self, job_id: str, error: dict[str, Any] | None) -> None:
        self.job_id = job_id
        self.error = error or {}
        kind = self.error.get("type", "Error")
        message = self.error.get("message", "")
        super().__init__(f"job {job_id!r} failed: {kind}: {message}")


class JobCancelled(JobFailed):
    """The job was cancelled before it completed."""

    def __init__(self, job_id: str, error: dict[str, Any] | None = None) -> None:
        super().__init__(job_id, error or {"type": "Cancelled", "message": "job was cancelled"})


class ResultTimeout(NotifyQError, TimeoutError):
    """``Job.wait()`` gave up before the job finished. The job itself goes on."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id!r} did not finish within {timeout:g}s")
        self.job_id = job_id
        self.timeout = timeout


class CorruptRecord(NotifyQError, ValueError):
    """A Redis key holds a value notifyq did not write (wrong type or bad JSON)."""


def corrupt_reply(message: str) -> CorruptRecord | None:
    """The ``CorruptRecord`` an error reply from Redis stands for, if it is one: a command on
    a key of the wrong type (``WRONGTYPE``), or a script that found a queue key holding what
    notifyq did not write (``WRONGTYPE``/``CORRUPT``, naming the key)."""
    code, _, rest = message.partition(" ")
    if code == "WRONGTYPE" and not rest.startswith("Operation against"):
        return CorruptRecord(rest)  # a script's own check: the message names the key
    if code == "WRONGTYPE":
        return CorruptRecord(f"a notifyq key holds a value of the wrong type: {message}")
    if code == "CORRUPT":
        return CorruptRecord(rest)
    return None


class InvalidToken(NotifyQError, PermissionError):
    """A token that is malformed, forged, expired, or for something else."""


class AccessDenied(NotifyQError, PermissionError):
    """The Redis server refused a command to the connection's user (its ACL rules).

    ``refused`` says what, as precisely as notifyq knows it: the commands (with the key or
    channel) a role check found missing, or the command or script line the server refused.
    Not an outage: retrying does not help until the user's rules change (docs/security.md).
    """

    def __init__(self, url: str, refused: str, reason: str = "") -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"Redis at {url} refused {refused}{detail} "
            "(the ACL rules each role needs: docs/security.md)"
        )
        self.url = url
        self.refused = refused
        self.reason = reason


class RedisUnavailable(NotifyQError, ConnectionError):
    """The Redis server at ``url`` cannot be reached."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"Redis unavailable at {url}: {reason}")
        self.url = url
        self.reason = reason


class ServerFull(RedisUnavailable):
    """The Redis server reached ``maxmemory`` (under ``noeviction``) and refuses writes:
    enqueues, claims and results alike, until memory is freed. The refused call wrote
    nothing: a script is refused at its first write, before any change. Workers treat it as
    an outage (they retry); ``notifyq check`` and docs/production.md cover the settings."""

    def __init__(self, url: str, reason: str) -> None:
        where = f" at {url}" if url else ""
        ConnectionError.__init__(
            self,
            f"Redis server{where} is full (maxmemory reached): it refuses writes until "
            f"memory is freed ({reason})",
        )
        self.url = url
        self.reason = reason


def reply_error(reply: Exception, url: str = "") -> Exception:
    """The notifyq error an error reply stands for (``CorruptRecord``, ``ServerFull``), or
    the reply itself: for pipelines that hand errors to the flow instead of raising."""
    if isinstance(reply, OutOfMemoryError):
        return ServerFull(url, str(reply).split(". script:")[0])
    return corrupt_reply(str(reply)) or reply


class NotReplicated(NotifyQError, TimeoutError):
    """Fewer replicas than ``Queue(replicas=N)`` acknowledged an enqueue in time.

    The jobs are on the master, but a failover now could lose them: enqueue them again with
    the same idempotency keys (or job ids) to be sure, which cannot make a second job.
    """

    def __init__(self, job_ids: list[str], acked: int, wanted: int) -> None:
        self.job_ids, self.acked, self.wanted = job_ids, acked, wanted
        super().__init__(
            f"{len(job_ids)} job(s) enqueued but held by {acked} of the {wanted} replicas "
            "asked for; enqueue again with the same idempotency key to be sure"
        )
