"""Events and the stream reads behind listeners, with no I/O.

Every state transition appends one event to the queue's bounded stream ``nq:{q}:events``
(and publishes it on the channel of the same name). A listener reads the stream, not the
channel: one ordered log gives live delivery (XREAD BLOCK wakes on XADD), catch-up from a
checkpoint after any disconnect, and no seam between the two. Named listeners read through
a consumer group named after the listener, so the group's last-delivered id is the
checkpoint kept in Redis and several processes with one name share the events.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import codec, scripts
from .codec import text
from .errors import CorruptRecord, ValidationError
from .keys import JOB_ID, QueueKeys
from .ops import Command, Flow, Pipeline, ScriptCall

log = logging.getLogger("notifyq.listener")

TYPES = ("enqueued", "started", "progress", "completed", "failed", "retrying", "dead",
         "cancelled")  # fmt: skip
#: A stream entry id, which is an event's ``event_id``.
EVENT_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class Event:
    """One event: what happened to which job, when; ``data`` is the whole JSON object."""

    type: str
    queue: str
    job_id: str
    attempt: int
    ts: int  # server time, ms since the epoch
    event_id: str  # the stream entry id: ordered, unique per queue
    data: dict[str, Any] = field(repr=False)
    seq: int = 0  # 1, 2, 3... per queue, with no holes: a skipped number is a lost event

    @property
    def result(self) -> Any:
        return self.data.get("result")

    @property
    def error(self) -> dict[str, Any] | None:
        return self.data.get("error")

    @property
    def progress(self) -> Any:
        return self.data.get("progress")


def parse(queue: str, event_id: str, raw: bytes | str | None) -> Event:
    """An event from its stream entry (the value of its ``e`` field); ``CorruptRecord`` if
    it is not one notifyq wrote."""
    what = f"event {event_id} of queue {queue!r}"
    if raw is None:
        raise CorruptRecord(f"{what} has no 'e' field")
    return _event(queue, event_id, codec.decode(raw, what=what), what)


def parse_published(channel: str, raw: bytes | str) -> Event:
    """An event as published on a queue's events channel (with its ``event_id``);
    ``CorruptRecord`` if it is not one notifyq published."""
    what = f"a message on {channel}"
    data = codec.decode(raw, what=what)
    event_id = data.get("event_id") if isinstance(data, dict) else None
    if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
        raise CorruptRecord(f"{what} has no valid event_id")
    queue = data.get("queue")
    if not isinstance(queue, str):
        raise CorruptRecord(f"{what} has no queue name")
    return _event(queue, event_id, data, what)


def _event(queue: str, event_id: str, data: Any, what: str) -> Event:
    if not isinstance(data, dict) or data.get("type") not in TYPES:
        raise CorruptRecord(f"{what} is not a notifyq event")
    job_id, numbers = data.get("id", ""), [data.get(k, 0) for k in ("attempt", "ts", "seq")]
    if not isinstance(job_id, str) or not all(_integer(n) for n in numbers):
        raise CorruptRecord(f"{what} has a field of the wrong type")
    data["event_id"] = event_id
    attempt, ts, seq = numbers
    return Event(data["type"], queue, job_id, attempt, ts, event_id, data, seq)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def gap_event(queue: str, missing: int | None, after: str) -> Event:
    """Events after ``after`` may be lost: ``missing`` of them (None: unknown)."""
    data = {"v": 1, "type": "gap", "queue": queue, "missing": missing, "after": after}
    return Event("gap", queue, "", 0, 0, "", data)


def stream_of(event: Event) -> str:
    return QueueKeys(event.queue).events


def resolve(url: str | None) -> str:
    from .connection import resolve_url

    return resolve_url(url)


def new_consumer_id() -> str:
    """This process's consumer name within a listener's group: host:pid:random."""
    from .execution import worker_id

    return worker_id()


def check_listener_name(name: str) -> str:
    if not isinstance(name, str) or not JOB_ID.fullmatch(name):
        raise ValidationError(
            f"invalid listener name {name!r}: 1-128 of A-Z a-z 0-9 . _ : - (not starting with -)"
        )
    return name


def _entries(
    reply: Any,
    by_stream: dict[str, str],
    deleted: list[tuple[str, str]] | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> list[Event]:
    """Events from an XREAD/XREADGROUP reply. Entries trimmed away while pending in a group
    come without fields: their (stream, id) go to ``deleted``. Entries that are not notifyq
    events (something else wrote them) are logged, and go to ``skipped``: both are to be
    acknowledged, or read past, so that they are not read again."""
    events: list[Event] = []
    for stream, entries in reply or []:
        name = text(stream) or ""
        queue = by_stream[name]
        for entry_id, fields in entries:
            eid = text(entry_id) or ""
            if not fields:
                if deleted is not None:
                    deleted.append((name, eid))
                continue
            try:
                events.append(parse(queue, eid, fields.get(b"e", fields.get("e"))))
            except CorruptRecord as exc:
                log.error("skipped: %s", exc)
                if skipped is not None:
                    skipped.append((name, eid))
    return events


# ---------------------------------------------------------------- anonymous listeners


@dataclass(slots=True)
class Position:
    """Where an anonymous listener is in one stream: the last event id and its seq."""

    event_id: str = "0-0"
    seq: int = 0


def tail(keys: Sequence[QueueKeys]) -> Flow[dict[str, Position]]:
    """The newest event of each queue: where live reading starts."""
    replies = yield Pipeline(
        [Command("XREVRANGE", k.events, "+", "-", "COUNT", 1) for k in keys]
        + [Command("HGET", k.config, "seq") for k in keys]
    )
    out = {}
    for k, newest, seq in zip(keys, replies[: len(keys)], replies[len(keys) :], strict=True):
        event_id = (text(newest[0][0]) if newest else None) or "0-0"
        out[k.events] = Position(event_id, int(seq or 0))
    return out


def advance(positions: dict[str, Position], batch: list[Event]) -> list[Event]:
    """Move the positions past ``batch``; gap events for any seq skipped before it."""
    gaps = []
    for event in batch:
        pos = positions[stream_of(event)]
        if event.seq > pos.seq + 1:  # seq 0: the queue had no event yet, 1 comes next
            gaps.append(gap_event(event.queue, event.seq - pos.seq - 1, pos.event_id))
        if _id(event.event_id) > _id(pos.event_id):  # a skipped entry may be further on
            pos.event_id = event.event_id
        pos.seq = max(pos.seq, event.seq)
    return gaps


def read(
    positions: dict[str, Position], queues: dict[str, str], count: int, block_ms: int
) -> Flow[list[Event]]:
    """Events after each stream's position, waiting up to ``block_ms`` for the first. The
    positions move past entries that are not events, so that they are read once."""
    ids = [p.event_id for p in positions.values()]
    reply = yield Command("XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS", *positions, *ids)
    skipped: list[tuple[str, str]] = []
    events = _entries(reply, queues, skipped=skipped)
    for stream, entry_id in skipped:
        if _id(entry_id) > _id(positions[stream].event_id):
            positions[stream].event_id = entry_id
    return events


def _id(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


# ---------------------------------------------------------------- named listeners


def join_group(keys: Sequence[QueueKeys], group: str, start: str = "$") -> Flow[None]:
    """Create the listener's group on each stream where it is missing, at ``start``: the
    newest event ("$") for a new listener, the oldest ("0") for one whose group was lost
    (whatever the stream now holds came after the loss). Whether the stream was trimmed
    past an existing group is checked with every read."""
    yield Pipeline([ScriptCall(scripts.JOIN_GROUP, [k.events], [group, start]) for k in keys])


def _group_infos(keys: Sequence[QueueKeys]) -> list[Command]:
    return [Command("XINFO", "STREAM", k.events) for k in keys] + [
        Command("XINFO", "GROUPS", k.events) for k in keys
    ]


def _gaps_from(keys: Sequence[QueueKeys], group: str, infos: list[Any]) -> list[Event]:
    gaps = []
    for k, stream, groups in zip(keys, infos[: len(keys)], infos[len(keys) :], strict=True):
        if isinstance(stream, Exception) or isinstance(groups, Exception):
            continue  # no stream yet: nothing to miss
        mine = next((g for g in map(_info, groups) if text(g.get("name")) == group), None)
        if mine is None:
            continue
        trimmed, missing = _missing(_info(stream), mine)
        if trimmed:
            gaps.append(gap_event(k.queue, missing, text(mine.get("last-delivered-id")) or ""))
    return gaps


def _info(reply: Any) -> dict[str, Any]:
    if isinstance(reply, dict):
        return {str(text(k)): v for k, v in reply.items()}
    return {str(text(reply[i])): reply[i + 1] for i in range(0, len(reply), 2)}


def _missing(stream: dict[str, Any], mine: dict[str, Any]) -> tuple[bool, int | None]:
    """Was the stream trimmed past the group's position, and how many events did the group
    never read (None if the server cannot say)?"""
    first = stream.get("first-entry")
    delivered = text(mine.get("last-delivered-id")) or "0-0"
    if not first or _id(text(first[0]) or "0-0") <= _id(delivered):
        return False, 0  # the group's position is still in the stream
    added, read_ = stream.get("entries-added"), mine.get("entries-read")
    if added is None:
        return True, None
    removed = int(added) - int(stream.get("length", 0))  # trimmed away, ever
    if delivered == "0-0":
        return removed > 0, removed  # it has read nothing: it missed all that went
    if read_ is None:
        return True, None
    missing = removed - int(read_)
    return missing > 0, max(0, missing)


class GroupLost(Exception):
    """The listener's group is gone (the stream was deleted, or the server lost its data)."""


def read_group(
    keys: Sequence[QueueKeys], group: str, consumer: str, count: int, block_ms: int, pending: bool
) -> Flow[list[Event]]:
    """The group's next events for this consumer, after gap events if the stream was
    trimmed past the group's position (checked in the same round trip, before reading).
    With ``pending``: the events it was given before but never acknowledged."""
    queues = {k.events: k.queue for k in keys}
    streams = list(queues)
    args: list[Any] = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count]
    if not pending:
        args += ["BLOCK", block_ms]
    ids = ["0" if pending else ">"] * len(streams)
    checks = [] if pending else _group_infos(keys)  # a gap matters before reading new ones
    replies = yield Pipeline(
        [*checks, Command(*args, "STREAMS", *streams, *ids)],
        errors_as_replies=True,
        repeatable=False,  # the entries of a lost reply wait in this consumer's pending list
    )
    reply = _group_reply(replies[-1])
    deleted: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    events = _entries(reply, queues, deleted, skipped)
    gaps = _gaps_from(keys, group, replies[:-1]) if checks else []
    if deleted:  # trimmed while pending: lost before they were handled
        gaps += _deleted_gaps(queues, deleted)
    if deleted or skipped:  # never to be delivered: acknowledged, so not read again
        yield Pipeline([Command("XACK", s, group, i) for s, i in deleted + skipped])
    return gaps + events


def _group_reply(reply: Any) -> Any:
    """A group read's reply; ``GroupLost`` when its group or stream is gone."""
    if isinstance(reply, Exception):
        if any(code in str(reply) for code in ("NOGROUP", "UNBLOCKED")):
            raise GroupLost(str(reply))
        raise reply
    return reply


def _deleted_gaps(queues: dict[str, str], deleted: Iterable[tuple[str, str]]) -> list[Event]:
    counts: dict[str, list[str]] = {}
    for stream, entry_id in deleted:
        counts.setdefault(stream, []).append(entry_id)
    return [gap_event(queues[s], len(ids), ids[0]) for s, ids in counts.items()]


def ack(group: str, events: Iterable[Event]) -> Flow[None]:
    by_stream: dict[str, list[str]] = {}
    for e in events:
        by_stream.setdefault(QueueKeys(e.queue).events, []).append(e.event_id)
    if by_stream:
        yield Pipeline([Command("XACK", s, group, *ids) for s, ids in by_stream.items()])


def reclaim(
    queues: dict[str, str], group: str, consumer: str, idle_ms: int, count: int = 100
) -> Flow[list[Event]]:
    """Take over events another consumer of the group was given and never acknowledged
    (it died) once they have been idle ``idle_ms``."""
    streams = list(queues)
    replies = yield Pipeline(
        [
            Command("XAUTOCLAIM", s, group, consumer, idle_ms, "0-0", "COUNT", count)
            for s in streams
        ],
        errors_as_replies=True,
        repeatable=False,  # entries claimed in a lost reply are this consumer's, not idle
    )
    events: list[Event] = []
    skipped: list[tuple[str, str]] = []
    for stream, reply in zip(streams, replies, strict=True):
        reply = _group_reply(reply)
        events += _entries([(stream, reply[1])], queues, skipped=skipped)
        if len(reply) > 2 and reply[2]:  # trimmed before anyone handled them
            events = _deleted_gaps(queues, [(stream, text(i) or "") for i in reply[2]]) + events
    if skipped:
        yield Pipeline([Command("XACK", s, group, i) for s, i in skipped])
    return events


def leave_group(queues: dict[str, str], group: str, consumer: str) -> Flow[None]:
    """Remove this consumer from the group where it holds no unacknowledged event (those
    stay with it, for another member to reclaim)."""
    streams = list(queues)
    consumers = yield Pipeline(
        [Command("XINFO", "CONSUMERS", s, group) for s in streams], errors_as_replies=True
    )
    done = [
        s
        for s, members in zip(streams, consumers, strict=True)
        if not isinstance(members, Exception)
        and any(text(m["name"]) == consumer and not m["pending"] for m in map(_info, members))
    ]
    if done:
        yield Pipeline(
            [Command("XGROUP", "DELCONSUMER", s, group, consumer) for s in done],
            errors_as_replies=True,
        )


def set_events_maxlen(keys: QueueKeys, maxlen: int) -> Flow[None]:
    if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
        raise ValidationError(f"events_maxlen must be an integer >= 1, not {maxlen!r}")
    yield Command("HSET", keys.config, "events_maxlen", maxlen)
