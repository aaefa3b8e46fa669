"""Log output for machines: one JSON object per line, with the job a record is about.

notifyq logs through the standard ``logging`` module (loggers ``notifyq.*``). Records
about a job carry it as fields (``extra=job_extra(...)``): ``job_id``, ``queue``, and when
known ``attempt`` and ``worker``. ``JsonFormatter`` writes each record as one line::

    {"time": "2024-06-01T12:00:40.123Z", "level": "INFO", "logger": "notifyq.worker",
     "message": "job x1 attempt 1 failed: now retrying", "job_id": "x1", "queue": "orders",
     "attempt": 1, "worker": "host:4242:Xq1b2c"}

(on one line), with ``exception`` holding the traceback when there is one. Use it with
``configure(format="json")``, or attach it to a handler of your own::

    handler.setFormatter(notifyq.logs.JsonFormatter())

``notifyq ... --log-format json`` (or ``NOTIFYQ_LOG_FORMAT=json``) does the same for the
command line.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from typing import Any, TextIO

from .errors import ValidationError

#: The log formats of ``configure`` and ``--log-format``.
FORMATS = ("text", "json")
#: The environment variable the command line reads when ``--log-format`` is not given.
ENV = "NOTIFYQ_LOG_FORMAT"
#: The text format of the command line (time, level, message).
TEXT_FORMAT, TEXT_DATE = "%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"
#: Record attributes ``JsonFormatter`` copies into the object when a record has them.
JOB_FIELDS = ("job_id", "queue", "attempt", "worker")


def job_extra(
    queue: str, job_id: str, attempt: int | None = None, worker: str | None = None
) -> dict[str, Any]:
    """The ``extra=`` of a log call about one job: its queue and id, its attempt and the
    worker running it when known. The one place these field names are spelled."""
    extra: dict[str, Any] = {"job_id": job_id, "queue": queue}
    if attempt is not None:
        extra["attempt"] = attempt
    if worker is not None:
        extra["worker"] = worker
    return extra


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON: ``time`` (ISO 8601, UTC, ms), ``level``, ``logger``,
    ``message``, the job fields a record carries, and ``exception`` (the formatted
    traceback) when it has one. Never raises on a value JSON cannot hold: it is shown
    with ``repr``."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        out: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in JOB_FIELDS:
            if name in record.__dict__:
                out[name] = record.__dict__[name]
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=repr)


def check_format(value: object, what: str = "log format") -> str:
    """``value`` if it is one of ``FORMATS``, else ``ValidationError``."""
    if value not in FORMATS:
        raise ValidationError(f"{what} must be one of {', '.join(FORMATS)}, not {value!r}")
    return str(value)


def format_from_env() -> str:
    """``NOTIFYQ_LOG_FORMAT``, checked; ``text`` when it is unset or empty."""
    return check_format(os.environ.get(ENV) or "text", ENV)


def formatter(format: str) -> logging.Formatter:
    """The formatter of a log format: ``JsonFormatter``, or the command line's text one."""
    if check_format(format) == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT, TEXT_DATE)


def configure(
    format: str = "text",
    *,
    level: int | str = logging.INFO,
    stream: TextIO | None = None,
    handler: logging.Handler | None = None,
) -> logging.Handler:
    """Send the log records of the process to ``stream`` (stderr) in ``format``
    (``"text"`` or ``"json"``) from ``level`` on, replacing the root logger's handlers;
    or to ``handler``, given its formatter. Returns the handler."""
    chosen = formatter(format)
    if handler is None:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(chosen)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    return handler
