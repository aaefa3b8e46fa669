"""The gateway's WebSocket protocol, with no I/O: what a browser may send, what it is sent.

One JSON object per text frame. A client sends::

    {"op": "subscribe", "token": T, "queue": Q, "job": J, "since": E}   job and since optional
    {"op": "unsubscribe", "queue": Q, "job": J}                          job optional
    {"op": "ping"}

and is sent, each with a ``type``: ``subscribed``, ``state`` (a job's current state, first on
every job subscription), ``event`` (one event, as in ``docs/events.md``), ``gap`` (events
after ``after`` can no longer be replayed), ``unsubscribed``, ``error`` (with a ``code``),
``heartbeat`` and ``pong``. The whole contract, with examples: ``docs/websocket-protocol.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import codec
from .errors import CorruptRecord, ValidationError
from .events import EVENT_ID
from .keys import check_job_id, check_queue_name

#: Error codes (``{"type": "error", "code": ...}``).
BAD_JSON = "bad_json"  # the frame is not a JSON object
BAD_MESSAGE = "bad_message"  # a field is missing, unknown or of the wrong type
UNKNOWN_OP = "unknown_op"
INVALID_TOKEN = "invalid_token"  # noqa: S105  malformed, forged or expired
FORBIDDEN = "forbidden"  # a valid token that does not grant this queue or job
TOKEN_EXPIRED = "token_expired"  # noqa: S105  a subscription ended because its token expired
NOT_FOUND = "not_found"  # no such job (never existed, or its record expired)
ALREADY_SUBSCRIBED = "already_subscribed"
NOT_SUBSCRIBED = "not_subscribed"
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
UNAVAILABLE = "unavailable"  # Redis cannot be reached; try again
INTERNAL = "internal_error"  # the gateway could not read what it needed

#: WebSocket close codes the gateway uses besides the standard ones (1001 going away when
#: it shuts down, 1008 policy violation, 1009 frame too big, 1011 internal error).
CLOSE_SLOW_CONSUMER = 4001  # the client did not read fast enough: its send buffer filled
CLOSE_TOO_MANY_MESSAGES = 1008  # the client sent frames faster than allowed, or too many bad

_FIELDS = {
    "subscribe": ({"op", "token", "queue"}, {"job", "since"}),
    "unsubscribe": ({"op", "queue"}, {"job"}),
    "ping": ({"op"}, set()),
}


class ProtocolError(Exception):
    """A client frame the gateway refuses; sent back as an ``error`` message."""

    def __init__(self, code: str, message: str, **about: str | None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.about = {k: v for k, v in about.items() if v is not None}

    def reply(self) -> str:
        return error(self.code, self.message, **self.about)


@dataclass(frozen=True, slots=True)
class Subscribe:
    token: str
    queue: str
    job: str | None = None
    since: str | None = None  # the last event id the client saw: resume after it


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    queue: str
    job: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    pass


Request = Subscribe | Unsubscribe | Ping


def parse(frame: str | bytes) -> Request:
    """The request in one client frame; ``ProtocolError`` (never another error) if bad."""
    if not isinstance(frame, str):
        raise ProtocolError(BAD_MESSAGE, "send text frames holding JSON, not binary frames")
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        raise ProtocolError(BAD_JSON, "the frame is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError(BAD_JSON, "the frame must be a JSON object")
    op = message.get("op")
    if not isinstance(op, str) or op not in _FIELDS:
        shown = op if isinstance(op, str) and len(op) <= 32 else type(op).__name__
        raise ProtocolError(UNKNOWN_OP, f"unknown op {shown!r}: one of {', '.join(_FIELDS)}")
    required, optional = _FIELDS[op]
    missing = required - message.keys()
    unknown = message.keys() - required - optional
    if missing or unknown:
        what = f"missing {sorted(missing)}" if missing else f"unknown fields {sorted(unknown)}"
        raise ProtocolError(BAD_MESSAGE, f"{op}: {what}")
    queue, job = _target(message)
    if op == "unsubscribe":
        return Unsubscribe(queue, job)
    if op == "ping":
        return Ping()
    token, since = message["token"], message.get("since")
    if not isinstance(token, str):
        raise ProtocolError(BAD_MESSAGE, "subscribe: token must be a string", queue=queue, job=job)
    if since is not None and (not isinstance(since, str) or not EVENT_ID.fullmatch(since)):
        raise ProtocolError(
            BAD_MESSAGE, "subscribe: since must be an event id like '1700000000000-0'",
            queue=queue, job=job,
        )  # fmt: skip
    return Subscribe(token, queue, job, since)


def _target(message: dict[str, Any]) -> tuple[str, str | None]:
    if message["op"] == "ping":
        return "", None
    try:
        queue = check_queue_name(message["queue"])
        job = message.get("job")
        return queue, None if job is None else check_job_id(job)
    except ValidationError as exc:
        raise ProtocolError(BAD_MESSAGE, f"{message['op']}: {exc}") from None


def event_key(event_id: str) -> tuple[int, int]:
    """An event id as a sortable pair; ``(0, 0)`` for ``"0-0"`` (before every event)."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def event_id(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"


# ---------------------------------------------------------------- messages to clients


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def error(code: str, message: str, **about: str) -> str:
    return _dump({"type": "error", "code": code, "message": message, **about})


def subscribed(queue: str, job: str | None) -> str:
    return _dump({"type": "subscribed", "queue": queue, "job": job})


def unsubscribed(queue: str, job: str | None, reason: str | None = None) -> str:
    return _dump({"type": "unsubscribed", "queue": queue, "job": job, "reason": reason})


def gap(queue: str, job: str | None, after: str) -> str:
    """Events after ``after`` are gone from the stream: re-read state (a job subscription is
    sent it next)."""
    return _dump({"type": "gap", "queue": queue, "job": job, "after": after})


def heartbeat(ts_ms: int) -> str:
    return _dump({"type": "heartbeat", "ts": ts_ms})


PONG = _dump({"type": "pong"})


def event_from_channel(raw: str) -> str:
    """The message for an event as published (already JSON, with its ``event_id``)."""
    return '{"type":"event","event":' + raw + "}"


def event_message(data: dict[str, Any]) -> str:
    return _dump({"type": "event", "event": data})


def job_state(
    queue: str, job_id: str, record: dict[str, str], result: str | None, position: str
) -> dict[str, Any]:
    """A job's state as the gateway shows it: from its record and result key, as of the
    event ``position`` (events after it follow)."""
    state: dict[str, Any] = {"queue": queue, "job": job_id, "state": record.get("state")}
    # absent until the first claim; a field that is not a number (something else wrote
    # it) is left out, not a failure that would refuse the subscription
    state["attempt"] = codec.integer(record.get("attempt")) or 0
    for name in ("max_attempts", "enqueued_at", "started_at", "finished_at"):
        value = codec.integer(record.get(name))
        if value is not None:
            state[name] = value
    for name in ("progress", "error"):
        if record.get(name):
            state[name] = _json_or_none(record[name], name)
    if result is not None:
        outcome = _json_or_none(result, "result")
        if isinstance(outcome, dict):
            for name in ("result", "error"):
                if name in outcome:
                    state[name] = outcome[name]
    state["event_id"] = position
    return state


def queue_state(queue: str, position: str) -> str:
    """A queue subscription is live: events after ``position`` follow (resume from it)."""
    return _dump({"type": "state", "queue": queue, "job": None, "event_id": position})


def state_message(state: dict[str, Any]) -> str:
    return _dump({"type": "state", **state})


def _json_or_none(raw: str, what: str) -> Any:
    try:
        return codec.decode(raw, what=what)
    except CorruptRecord:
        return None
