"""Consumption windows: the hours of the day a worker may claim jobs, read on a wall clock.

A window is one or more ranges ``HH:MM-HH:MM`` of local time in an IANA time zone::

    shop = Windows(["05:00-24:00"], "Europe/Paris")
    erp = Windows("01:00-04:00", "Europe/Paris")
    night = Windows(["22:00-02:00", "12:00-13:00"], "America/New_York")

Rules, and why:

* A range holds its start and not its end: ``05:00-24:00`` is open from 05:00:00 to
  23:59:59.999, so ``01:00-04:00`` and ``04:00-05:00`` hand over without a gap or overlap.
* ``24:00`` may end a range (midnight at the end of the day); ``00:00`` as an end means the
  same. A range whose end is earlier than its start crosses midnight (``22:00-02:00``).
* ``00:00-24:00`` is the whole day. A range that starts and ends at the same time is
  refused: "no time" and "all day" are both plausible readings, so neither is guessed.
* Ranges may overlap; the windows are open when any range holds the local time.
* **Wall-clock semantics.** The windows are open whenever the clock on the wall of the site
  (local time in the zone, DST included) reads a time inside a range. So across DST
  changes:

  - a skipped hour (spring forward, e.g. 02:00-03:00 in Europe/Paris on the last Sunday of
    March) never appears on the wall: a range that starts inside it opens when the clock
    jumps (03:00), one that ends inside it closes then, and a range wholly inside it does
    not open that day;
  - a repeated hour (fall back, 02:00-03:00 in Europe/Paris on the last Sunday of
    October) appears twice: a range covering it is open both times (``01:00-04:00`` lasts
    four hours that night), and a range ending inside it (``22:00-02:30``) closes at the
    first 02:30 and opens again from the second 02:00 to the second 02:30.

The time zone is an IANA name (``Europe/Paris``, ``America/New_York``, ``UTC``) looked up by
the standard library's ``zoneinfo`` in the system's time zone database (Debian's ``tzdata``
package, ``/usr/share/zoneinfo``); on a system without one, ``pip install tzdata`` provides
it. The default is ``UTC``: the same on every machine, whatever its local settings.

``Windows`` is pure (no I/O, no clock of its own): it answers for the instant it is given.
``Gate`` is what a worker holds: it reads an injectable clock, says how long claiming must
wait, and logs each opening and closing once.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ValidationError

DEFAULT_TIMEZONE = "UTC"
DAY = 24 * 60  # minutes
#: Most ranges one set of windows may hold (each costs a little in every ``next_change``).
MAX_RANGES = 48
#: How far ahead ``next_change`` looks. Real windows change at least every day; a week and
#: a day also covers a range that a DST change keeps shut on one day.
HORIZON_DAYS = 8

_TIME = r"(\d{1,2}):(\d{2})"
_RANGE = re.compile(rf"{_TIME}\s*-\s*{_TIME}")
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*")
_ADVICE = "use HH:MM-HH:MM, e.g. 05:00-24:00, or 22:00-02:00 across midnight"

log = logging.getLogger("notifyq.worker")

Clock = Callable[[], float]  # seconds since the epoch, like time.time


@dataclass(frozen=True, slots=True, order=True)
class Range:
    """One range of local time, in minutes after midnight: ``start`` 0-1439, ``end`` 1-1440.
    An ``end`` not after ``start`` means the range crosses midnight."""

    start: int
    end: int

    def holds(self, minute: float) -> bool:
        """True if the local time ``minute`` (minutes after midnight, fractions included)
        is inside this range."""
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


def parse_range(spec: object) -> Range:
    """``"HH:MM-HH:MM"`` as a ``Range``; ``ValidationError`` saying what is wrong."""
    if not isinstance(spec, str):
        raise ValidationError(f"a window must be a string HH:MM-HH:MM, not {spec!r}")
    match = _RANGE.fullmatch(spec.strip())
    if match is None:
        raise ValidationError(f"invalid window {spec!r}: {_ADVICE}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    for hours, minutes in ((h1, m1), (h2, m2)):
        if minutes > 59 or hours > 24 or (hours == 24 and minutes > 0):
            raise ValidationError(
                f"invalid window {spec!r}: {hours:02d}:{minutes:02d} is not a time of day "
                "(00:00 to 23:59; 24:00 may end a range)"
            )
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == DAY:
        raise ValidationError(f"invalid window {spec!r}: a range cannot start at 24:00")
    if start == end:
        raise ValidationError(
            f"invalid window {spec!r}: it starts and ends at {_hhmm(start)}; "
            "for the whole day use 00:00-24:00"
        )
    return Range(start, end or DAY)


def zone(name: object) -> ZoneInfo:
    """The time zone named ``name`` (IANA, e.g. ``Europe/Paris``); ``ValidationError`` if
    it is not a zone name or the system's time zone database does not have it."""
    if not isinstance(name, str) or len(name) > 64 or not _ZONE_NAME.fullmatch(name):
        raise ValidationError(
            f"timezone must be an IANA time zone name like 'Europe/Paris', not {name!r}"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValidationError(
            f"unknown time zone {name!r}: not in the system's time zone database "
            "(IANA names such as 'Europe/Paris'; without /usr/share/zoneinfo, "
            "pip install tzdata)"
        ) from exc


class Windows:
    """The ranges of local time (in ``timezone``, default UTC) when a worker may claim.

    ``specs``: one ``"HH:MM-HH:MM"`` string, several separated by commas, or a sequence
    of them. ``ValidationError`` for a bad range, none at all, more than ``MAX_RANGES``, or
    an unknown time zone.
    """

    def __init__(self, specs: str | Sequence[str], timezone: str | None = None) -> None:
        items: Iterable[object]
        if isinstance(specs, str):
            items = specs.split(",")
        elif isinstance(specs, Sequence):
            items = [part for s in specs for part in (s.split(",") if isinstance(s, str) else [s])]
        else:
            raise ValidationError(f"windows must be a list of HH:MM-HH:MM ranges, not {specs!r}")
        self.ranges = tuple(parse_range(s) for s in items)
        if not self.ranges:
            raise ValidationError(
                "windows needs at least one range HH:MM-HH:MM (no windows: None, always open)"
            )
        if len(self.ranges) > MAX_RANGES:
            raise ValidationError(f"at most {MAX_RANGES} window ranges, not {len(self.ranges)}")
        self.timezone = DEFAULT_TIMEZONE if timezone is None else timezone
        self.zone = zone(self.timezone)
        #: Open whatever the time: the ranges cover the whole day between them.
        self.always_open = all(any(r.holds(m) for r in self.ranges) for m in range(DAY))
        self._boundaries = sorted({r.start for r in self.ranges} | {r.end for r in self.ranges})

    def is_open(self, when: datetime | float) -> bool:
        """True if the wall clock in the zone reads a time inside a range at ``when`` (an
        aware datetime, or seconds since the epoch)."""
        local = self._local(when)
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        return any(r.holds(minute) for r in self.ranges)

    def next_change(self, when: datetime | float) -> datetime | None:
        """The first instant after ``when`` at which the windows open (if closed at
        ``when``) or close (if open), as an aware datetime in the zone; None if they never
        change (the ranges cover the whole day).

        The windows can only change where the local time crosses a range boundary or where
        the zone's offset changes (DST), so those instants are the only candidates: each
        is checked in order, and the first whose state differs is the answer.
        """
        if self.always_open:
            return None
        now = self._timestamp(when)
        state = self.is_open(now)
        for candidate in self._candidates(now):
            if self.is_open(candidate) != state:
                return datetime.fromtimestamp(candidate, self.zone)
        return None  # no zone keeps a range of at least a minute shut for a week

    def _candidates(self, now: float) -> list[float]:
        """Instants after ``now``, within ``HORIZON_DAYS``, where the state may change:
        every boundary's wall time on each day (both readings of a repeated time), and
        every change of the zone's UTC offset."""
        today = datetime.fromtimestamp(now, self.zone).date()
        found: set[float] = set()
        for days in range(-1, HORIZON_DAYS + 1):
            midnight = datetime.combine(today + timedelta(days=days), clock_time(), self.zone)
            for minute in self._boundaries:
                wall = midnight + timedelta(minutes=minute)  # wall-clock arithmetic
                found.update(wall.replace(fold=f).timestamp() for f in (0, 1))
        found.update(self._offset_changes(now, now + HORIZON_DAYS * 86400))
        return sorted(t for t in found if t > now)

    def _offset_changes(self, start: float, stop: float) -> list[float]:
        """The instants in [start, stop] at which the zone's UTC offset changes: offsets
        sampled every 6 hours (zones change at most twice a year), each change narrowed
        down to the second by bisection."""
        changes = []
        t = math.floor(start)
        offset = self._offset(t)
        while t < stop:
            later = t + 6 * 3600
            later_offset = self._offset(later)
            if later_offset != offset:
                lo, hi = t, later
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    lo, hi = (mid, hi) if self._offset(mid) == offset else (lo, mid)
                changes.append(float(hi))
            t, offset = later, later_offset
        return changes

    def _offset(self, t: int) -> timedelta | None:
        return datetime.fromtimestamp(t, self.zone).utcoffset()

    def _local(self, when: datetime | float) -> datetime:
        if isinstance(when, datetime):
            if when.utcoffset() is None:
                raise ValidationError(f"a naive datetime is ambiguous: give a time zone ({when})")
            return when.astimezone(self.zone)
        return datetime.fromtimestamp(when, self.zone)

    def _timestamp(self, when: datetime | float) -> float:
        return self._local(when).timestamp() if isinstance(when, datetime) else float(when)

    def __str__(self) -> str:
        return f"{', '.join(str(r) for r in self.ranges)} {self.timezone}"

    def __repr__(self) -> str:
        return f"Windows({[str(r) for r in self.ranges]!r}, {self.timezone!r})"


class Gate:
    """A worker's windows and clock: how long its claim loop must wait before it may claim.

    ``clock`` (seconds since the epoch, default ``time.time``) is read at every call, so a
    clock changed by hand, or a machine woken from sleep, is seen at the next look; tests
    and simulations pass a clock of their own. ``what`` names the queues in the logs.
    """

    def __init__(self, windows: Windows | None, clock: Clock, what: str) -> None:
        self.windows, self.clock, self.what = windows, clock, what
        self._open: bool | None = None  # as last logged

    @classmethod
    def for_worker(
        cls, windows: object, timezone: object, clock: object, queues: Sequence[str]
    ) -> Gate:
        """Check a worker's ``windows``, ``timezone`` and ``clock`` settings."""
        if windows is None and timezone is not None:
            raise ValidationError("timezone is used only with windows: give windows too")
        if clock is not None and not callable(clock):
            raise ValidationError(f"clock must be a callable giving epoch seconds, not {clock!r}")
        parsed = None if windows is None else Windows(windows, timezone)  # type: ignore[arg-type]
        what = f"queue{'s' if len(queues) > 1 else ''} {', '.join(queues)}"
        return cls(parsed, clock or time.time, what)

    def closed_for(self) -> float:
        """0 if claiming may go on now; else the seconds until the windows open."""
        if self.windows is None:
            return 0.0
        now = self.clock()
        if self.windows.is_open(now):
            if self._open is not True:
                self._open = True
                change = self.windows.next_change(now)
                until = "always open" if change is None else f"until {_when(now, change)}"
                log.info("%s: inside its window %s, %s", self.what, self.windows, until)
            return 0.0
        change = self.windows.next_change(now)
        assert change is not None  # closed now, so it opens within the horizon
        if self._open is not False:
            self._open = False
            log.info("%s: outside its window until %s", self.what, _when(now, change))
        return max(change.timestamp() - now, 0.001)


def _when(now: float, change: datetime) -> str:
    """``05:00 Europe/Paris (in 3h12m)``; the date too when it is not today."""
    today = datetime.fromtimestamp(now, change.tzinfo).date()
    day = "" if change.date() == today else _day(change.date(), today)
    return f"{day}{change:%H:%M} {change.tzinfo} (in {span(change.timestamp() - now)})"


def _day(day: date, today: date) -> str:
    return "tomorrow " if day == today + timedelta(days=1) else f"{day.isoformat()} "


def span(seconds: float) -> str:
    """A duration as ``2d3h``, ``3h12m``, ``4m05s`` or ``9s`` (rounded up)."""
    total = max(0, math.ceil(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
