"""notifyq for asyncio: ``Queue``, ``Job`` and ``Worker`` with the names of ``notifyq``,
awaitable. Both share one core (``notifyq.ops`` and the Lua scripts); this package only
moves bytes with ``redis.asyncio``."""

from .. import signals
from ..client import DEFAULT_WAIT_TIMEOUT
from ..errors import (
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
from .client import Job, Queue
from .listener import Listener
from .worker import ActiveJob, Worker

__all__ = [
    "DEFAULT_WAIT_TIMEOUT",
    "AccessDenied",
    "ActiveJob",
    "CorruptRecord",
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
