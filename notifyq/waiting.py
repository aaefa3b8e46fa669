"""Many waits on one pub/sub connection: the bookkeeping, with no I/O.

``wait()`` must never miss a completion, so it goes: subscribe to the job's done channel,
wait for the server to confirm, check the result key, then wait for the message. With
thousands of waits in one process, all share one connection: this class tracks which
channels are wanted, which SUBSCRIBEs are still unconfirmed, and which waits to check
when a channel goes live. The blocking hub (a thread) and the asyncio hub (a task) drive
it; both re-check every wait after a reconnect, since a message may have been missed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

from .keys import QueueKeys
from .ops import Command, Flow, Pipeline

W = TypeVar("W")

#: Check result meaning "no such job": the record is gone (expired or never existed).
MISSING = object()


class Subscriptions(Generic[W]):
    def __init__(self) -> None:
        self._waits: dict[str, list[W]] = {}
        self._sent: set[str] = set()  # SUBSCRIBE sent, no UNSUBSCRIBE since
        self._acks_due: dict[str, int] = {}  # SUBSCRIBE confirmations still to come
        self._dirty: set[str] = set()  # channels whose wanted/sent state may differ
        # (SUBSCRIBE number, channel) in the order the server confirms them, so that an
        # error reply (the server refuses a whole command) is known to be for the oldest
        self._unconfirmed: deque[tuple[int, str]] = deque()
        self._subscribes = 0

    def add(self, channel: str, wait: W) -> bool:
        """Register a wait. True if the channel is live, so the caller should check now;
        otherwise it is checked when the confirmation arrives (``confirmed``)."""
        waits = self._waits.setdefault(channel, [])
        waits.append(wait)
        if len(waits) == 1:
            self._dirty.add(channel)
        return channel in self._sent and channel not in self._acks_due

    def remove(self, channel: str, wait: W) -> None:
        waits = self._waits.get(channel)
        if waits is None:
            return
        try:
            waits.remove(wait)
        except ValueError:
            return
        if not waits:
            del self._waits[channel]
            self._dirty.add(channel)

    def plan(self) -> tuple[list[str], list[str]]:
        """What to send now: (channels to SUBSCRIBE, channels to UNSUBSCRIBE).

        The caller must send them in this call's order, before calling ``plan`` again.
        """
        subscribe: list[str] = []
        unsubscribe: list[str] = []
        for channel in self._dirty:
            wanted, sent = channel in self._waits, channel in self._sent
            if wanted and not sent:
                subscribe.append(channel)
                self._sent.add(channel)
                self._acks_due[channel] = self._acks_due.get(channel, 0) + 1
            elif sent and not wanted:
                unsubscribe.append(channel)
                self._sent.discard(channel)
        self._dirty.clear()
        if subscribe:
            self._subscribes += 1
            self._unconfirmed.extend((self._subscribes, c) for c in subscribe)
        return subscribe, unsubscribe

    def confirmed(self, channel: str) -> list[W]:
        """A SUBSCRIBE confirmation arrived. Returns the waits to check: those registered
        when the channel went live (none while another SUBSCRIBE is still unconfirmed)."""
        # the server confirms in order: the first entry of the channel (at the front)
        at = next((i for i, (_, c) in enumerate(self._unconfirmed) if c == channel), None)
        if at is not None:
            del self._unconfirmed[at]
        due = self._acks_due.get(channel, 0) - 1
        if due > 0:
            self._acks_due[channel] = due
            return []
        self._acks_due.pop(channel, None)
        if channel not in self._sent:
            return []
        return list(self._waits.get(channel, ()))

    def refused(self) -> tuple[list[str], list[W]]:
        """The server refused the oldest unconfirmed SUBSCRIBE (its ACL rules): its channels,
        now not subscribed, and the waits registered on them, to fail. A channel still
        wanted afterwards is subscribed again by the next ``plan`` (and refused again)."""
        if not self._unconfirmed:
            return [], []
        number = self._unconfirmed[0][0]
        channels: list[str] = []
        while self._unconfirmed and self._unconfirmed[0][0] == number:
            channels.append(self._unconfirmed.popleft()[1])
        for channel in channels:
            due = self._acks_due.pop(channel, 1) - 1
            if due > 0:  # a later SUBSCRIBE of it is still on its way
                self._acks_due[channel] = due
            else:
                self._sent.discard(channel)
            self._dirty.add(channel)
        return channels, [w for c in channels for w in self._waits.get(c, ())]

    def message(self, channel: str) -> list[W]:
        """A message arrived on ``channel``: the waits it resolves."""
        return list(self._waits.get(channel, ()))

    def reset(self) -> None:
        """The connection was lost: nothing is subscribed; every wanted channel is redone."""
        self._sent.clear()
        self._acks_due.clear()
        self._unconfirmed.clear()
        self._dirty = set(self._waits)

    @property
    def channels(self) -> Iterable[str]:
        return self._waits.keys()

    def __len__(self) -> int:
        return sum(len(w) for w in self._waits.values())


def check(targets: list[tuple[QueueKeys, str]]) -> Flow[list[object]]:
    """Read the outcome of each (queue keys, job id): raw result, ``MISSING`` or None."""
    calls: list[Command] = []
    for keys, job_id in targets:
        calls += [Command("GET", keys.result(job_id)), Command("EXISTS", keys.job(job_id))]
    replies = yield Pipeline(calls)
    out: list[object] = []
    for i in range(0, len(replies), 2):
        raw, exists = replies[i], replies[i + 1]
        out.append(raw if raw is not None else (None if exists else MISSING))
    return out
