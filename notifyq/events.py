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

    @property
    def result(self) -> Any:
        return self.data.get("result")

    @property
    def error(self) -> dict[str, Any] | None:
        return self.data.get("error")

    @property
    def progress(self) -> Any:
        return self.data.get("progress")


def parse(queue: str, event_id: str, raw: bytes | str) -> Event:
    """An event from its stream entry; ``CorruptRecord`` if it is not one of ours."""
    data = codec.decode(raw, what=f"event {event_id} of queue {queue!r}")
    if not isinstance(data, dict) or data.get("type") not in TYPES:
        raise CorruptRecord(f"event {event_id} of queue {queue!r} is not a notifyq event")
    data["event_id"] = event_id
    return Event(
        type=data["type"],
        queue=queue,
        job_id=str(data.get("id", "")),
        attempt=int(data.get("attempt", 0)),
        ts=int(data.get("ts", 0)),
        event_id=event_id,
        data=data,
    )


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
        raise ValidationError(f"invalid listener name {name!r}: 1-128 of A-Z a-z 0-9 . _ : -")
    return name


def _entries(
    reply: Any, by_stream: dict[str, str], deleted: list[tuple[str, str]] | None = None
) -> list[Event]:
    """Events from an XREAD/XREADGROUP reply, skipping (and logging) foreign entries.
    Entries trimmed away while pending in a group come without fields: their (stream, id)
    go to ``deleted``, to be acknowledged."""
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
            raw = fields.get(b"e", fields.get("e"))
            try:
                events.append(parse(queue, eid, raw))
            except CorruptRecord as exc:
                log.error("skipped: %s", exc)
    return events


# ---------------------------------------------------------------- anonymous listeners


def tail_ids(keys: Sequence[QueueKeys]) -> Flow[dict[str, str]]:
    """The id of the newest event of each queue ('0-0' if none): where live reading starts."""
    replies = yield Pipeline([Command("XREVRANGE", k.events, "+", "-", "COUNT", 1) for k in keys])
    return {
        k.events: (text(r[0][0]) or "0-0") if r else "0-0"
        for k, r in zip(keys, replies, strict=True)
    }


def read(
    positions: dict[str, str], queues: dict[str, str], count: int, block_ms: int
) -> Flow[list[Event]]:
    """Events after each stream's position, waiting up to ``block_ms`` for the first."""
    streams = list(positions)
    reply = yield Command(
        "XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS", *streams, *positions.values()
    )
    return _entries(reply, queues)


def trimmed(positions: dict[str, str], queues: dict[str, str]) -> Flow[list[Event]]:
    """Gap events for streams trimmed past a position (events after it may be lost)."""
    streams = [s for s, pos in positions.items() if pos != "0-0"]
    if not streams:
        return []
    firsts = yield Pipeline([Command("XRANGE", s, "-", "+", "COUNT", 1) for s in streams])
    gaps = []
    for stream, first in zip(streams, firsts, strict=True):
        if first and _id(text(first[0][0]) or "0-0") > _id(positions[stream]):
            gaps.append(gap_event(queues[stream], None, positions[stream]))
    return gaps


def _id(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


# ---------------------------------------------------------------- named listeners


def join_group(keys: Sequence[QueueKeys], group: str) -> Flow[list[Event]]:
    """Create the listener's group on each stream (new groups start at the newest event)
    and return gap events where the stream was trimmed past the group's position."""
    yield Pipeline([ScriptCall(scripts.JOIN_GROUP, [k.events], [group]) for k in keys])
    infos = yield Pipeline(
        [Command("XINFO", "STREAM", k.events) for k in keys]
        + [Command("XINFO", "GROUPS", k.events) for k in keys]
    )
    gaps = []
    for k, stream, groups in zip(keys, infos[: len(keys)], infos[len(keys) :], strict=True):
        mine = next((g for g in map(_info, groups) if text(g.get("name")) == group), None)
        missing = _missing(_info(stream), mine)
        if missing and mine is not None:
            gaps.append(gap_event(k.queue, missing, text(mine.get("last-delivered-id")) or ""))
    return gaps


def _info(reply: Any) -> dict[str, Any]:
    if isinstance(reply, dict):
        return {str(text(k)): v for k, v in reply.items()}
    return {str(text(reply[i])): reply[i + 1] for i in range(0, len(reply), 2)}


def _missing(stream: dict[str, Any], mine: dict[str, Any] | None) -> int | None:
    """Events trimmed away before the group read them (None if the server cannot say)."""
    if mine is None:
        return None
    first = stream.get("first-entry")
    added, read_ = stream.get("entries-added"), mine.get("entries-read")
    if not first or added is None or read_ is None:
        return None
    delivered = text(mine.get("last-delivered-id")) or "0-0"
    if _id(text(first[0]) or "0-0") <= _id(delivered):
        return 0
    return max(0, int(added) - int(read_) - int(stream.get("length", 0)))


def read_group(
    queues: dict[str, str], group: str, consumer: str, count: int, block_ms: int, pending: bool
) -> Flow[list[Event]]:
    """The group's next events for this consumer; with ``pending``, the ones it was given
    before but never acknowledged (after a reconnect or a restart with the same name)."""
    streams = list(queues)
    ids = ["0" if pending else ">"] * len(streams)
    args: list[Any] = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count]
    if not pending:
        args += ["BLOCK", block_ms]
    reply = yield Command(*args, "STREAMS", *streams, *ids)
    deleted: list[tuple[str, str]] = []
    events = _entries(reply, queues, deleted)
    if deleted:  # trimmed while pending: nothing left to deliver, clear them
        yield Pipeline([Command("XACK", s, group, i) for s, i in deleted])
    return events


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
        [Command("XAUTOCLAIM", s, group, consumer, idle_ms, "0-0", "COUNT", count) for s in streams]
    )
    events: list[Event] = []
    for stream, reply in zip(streams, replies, strict=True):
        events += _entries([(stream, reply[1])], queues)
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
