"""notifyq: "notify me when the result is ready" on Redis.

Producers enqueue and return at once; workers run a handler and store the result under a
key anyone can ``GET``; callers poll it, block on ``Job.wait()``, or are pushed an event.
This module is the blocking API; ``notifyq.asyncio`` has the same names, awaitable.
"""

from . import signals
from .client import DEFAULT_WAIT_TIMEOUT, Job, Queue
from .errors import (
    AccessDenied,
    CorruptRecord,
    InvalidToken,
    JobCancelled,
    JobFailed,
    JobNotFound,
    NotifyQError,
    NotReplicated,
    PayloadTooLarge,
    RedisUnavailable,
    ResultNotReady,
    ResultTimeout,
    SerializationError,
    ServerFull,
    ValidationError,
)
from .events import Event
from .listener import Listener
from .worker import ActiveJob, Worker

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_WAIT_TIMEOUT",
    "AccessDenied",
    "ActiveJob",
    "CorruptRecord",
    "Event",
    "InvalidToken",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "Listener",
    "NotReplicated",
    "NotifyQError",
    "PayloadTooLarge",
    "Queue",
    "RedisUnavailable",
    "ResultNotReady",
    "ResultTimeout",
    "SerializationError",
    "ServerFull",
    "ValidationError",
    "Worker",
    "signals",
]
