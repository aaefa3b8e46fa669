"""Consumption windows, with no server: ranges, wall-clock time in a zone, DST, refusals."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifyq.errors import ValidationError
from notifyq.windows import MAX_RANGES, Gate, Range, Windows, parse_range, span

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def changes(windows: Windows, start: datetime, count: int) -> list[datetime]:
    """The next ``count`` changes after ``start``, in UTC."""
    found = []
    when: datetime | None = start
    for _ in range(count):
        assert when is not None
        when = windows.next_change(when)
        assert when is not None
        found.append(when.astimezone(UTC))
    return found


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("05:00-24:00", Range(300, 1440)),
        ("01:00-04:00", Range(60, 240)),
        ("22:00-02:00", Range(1320, 120)),  # crosses midnight
        ("22:00-00:00", Range(1320, 1440)),  # 00:00 as an end is midnight, like 24:00
        ("00:00-24:00", Range(0, 1440)),
        ("0:30-1:05", Range(30, 65)),
        (" 05:00 - 06:30 ", Range(300, 390)),
    ],
)
def test_a_range_is_read_as_minutes_after_midnight(spec: str, expected: Range) -> None:
    assert parse_range(spec) == expected


BAD_RANGES: list[tuple[str, object, str]] = [
    ("hour-25", "25:00-26:00", "25:00 is not a time of day"),
    ("minute-60", "12:60-13:00", "12:60 is not a time of day"),
    ("past-24", "05:00-24:01", "24:01 is not a time of day"),
    ("starts-at-24", "24:00-05:00", "cannot start at 24:00"),
    ("no-length", "05:00-05:00", "starts and ends at 05:00; for the whole day use 00:00-24:00"),
    ("no-length-midnight", "00:00-00:00", "starts and ends at 00:00"),
    ("midnight-to-24", "24:00-24:00", "cannot start at 24:00"),
    ("garbage", "morning", "invalid window 'morning': use HH:MM-HH:MM"),
    ("one-time", "05:00", "invalid window '05:00'"),
    ("empty", "", "invalid window ''"),
    ("seconds", "05:00:00-06:00:00", "invalid window"),
    ("not-text", 5, "a window must be a string HH:MM-HH:MM, not 5"),
    ("none", None, "a window must be a string"),
]


@pytest.mark.parametrize(
    ("spec", "words"), [c[1:] for c in BAD_RANGES], ids=[c[0] for c in BAD_RANGES]
)
def test_a_bad_range_is_refused_saying_why(spec: object, words: str) -> None:
    with pytest.raises(ValidationError, match=words.replace("(", r"\(")):
        parse_range(spec)


def test_windows_take_one_string_a_comma_list_or_a_sequence() -> None:
    assert Windows("05:00-24:00").ranges == (Range(300, 1440),)
    assert Windows("01:00-04:00, 22:00-23:00").ranges == (Range(60, 240), Range(1320, 1380))
    assert Windows(["01:00-04:00", "22:00-23:00,12:00-13:00"]).ranges == (
        Range(60, 240),
        Range(1320, 1380),
        Range(720, 780),
    )
    assert str(Windows(["01:00-04:00", "22:00-02:00"], "Europe/Paris")) == (
        "01:00-04:00, 22:00-02:00 Europe/Paris"
    )


def test_windows_are_refused_when_empty_too_many_or_not_a_list() -> None:
    with pytest.raises(ValidationError, match="at least one range"):
        Windows([])
    with pytest.raises(ValidationError, match=f"at most {MAX_RANGES} window ranges"):
        Windows(["01:00-02:00"] * (MAX_RANGES + 1))
    with pytest.raises(ValidationError, match="windows must be a list"):
        Windows(5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="a window must be a string"):
        Windows(["01:00-02:00", None])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="invalid window ''"):
        Windows("01:00-02:00,")


@pytest.mark.parametrize(
    "name", ["Europe/Nowhere", "Mars/Olympus_Mons", "Europe", "../etc/passwd", "/etc/localtime",
             "", "zone.tab", "a" * 65, "Europe/Paris\x00", 5, 1.5],
)  # fmt: skip
def test_an_unknown_time_zone_is_refused(name: object) -> None:
    with pytest.raises(ValidationError, match="time zone"):
        Windows("05:00-24:00", name)  # type: ignore[arg-type]


def test_zones_resolve_from_the_system_database_and_utc_is_the_default() -> None:
    assert Windows("05:00-24:00").zone == ZoneInfo("UTC")
    assert Windows("05:00-24:00", "America/New_York").zone == NEW_YORK


# ------------------------------------------------------------------ open or closed


def test_a_range_holds_its_start_and_not_its_end() -> None:
    shop = Windows("05:00-24:00")
    assert not shop.is_open(utc(2026, 6, 1, 4, 59, 59))
    assert shop.is_open(utc(2026, 6, 1, 5, 0))
    assert shop.is_open(datetime(2026, 6, 1, 23, 59, 59, 999999, tzinfo=UTC))
    assert not shop.is_open(utc(2026, 6, 2, 0, 0))
    assert shop.next_change(utc(2026, 6, 1, 3, 0)) == utc(2026, 6, 1, 5, 0)
    assert shop.next_change(utc(2026, 6, 1, 5, 0)) == utc(2026, 6, 2, 0, 0)
    assert shop.next_change(utc(2026, 6, 1, 23, 59, 59)) == utc(2026, 6, 2, 0, 0)


def test_a_range_across_midnight() -> None:
    night = Windows("22:00-02:00")
    assert [night.is_open(utc(2026, 6, 1, h)) for h in (21, 22, 23, 0, 1, 2, 3)] == [
        False, True, True, True, True, False, False,
    ]  # fmt: skip
    assert changes(night, utc(2026, 6, 1, 12), 3) == [
        utc(2026, 6, 1, 22), utc(2026, 6, 2, 2), utc(2026, 6, 2, 22),
    ]  # fmt: skip
    assert night.next_change(utc(2026, 6, 1, 23, 30)) == utc(2026, 6, 2, 2)


def test_several_ranges_and_a_handover_without_a_gap() -> None:
    windows = Windows(["01:00-04:00", "12:00-13:00", "04:00-05:00"])
    assert changes(windows, utc(2026, 6, 1, 0), 4) == [
        utc(2026, 6, 1, 1), utc(2026, 6, 1, 5), utc(2026, 6, 1, 12), utc(2026, 6, 1, 13),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "specs", [["00:00-24:00"], ["00:00-12:00", "12:00-24:00"], ["22:00-02:00", "02:00-22:00"]]
)
def test_ranges_covering_the_whole_day_are_always_open(specs: list[str]) -> None:
    windows = Windows(specs, "Europe/Paris")
    assert windows.always_open
    for when in (utc(2026, 3, 29, 1, 30), utc(2026, 10, 25, 0, 30), utc(2026, 6, 1, 22)):
        assert windows.is_open(when)
        assert windows.next_change(when) is None


def test_times_are_read_in_the_zone_from_datetimes_or_epoch_seconds() -> None:
    shop = Windows("05:00-24:00", "Europe/Paris")
    at_4_utc = utc(2026, 6, 1, 4)  # 06:00 in Paris (summer time)
    assert shop.is_open(at_4_utc)
    assert shop.is_open(at_4_utc.timestamp())
    assert shop.is_open(at_4_utc.astimezone(NEW_YORK))
    assert not shop.is_open(utc(2026, 6, 1, 2, 30).timestamp())  # 04:30 in Paris
    opening = shop.next_change(utc(2026, 6, 1, 2, 30).timestamp())
    assert opening == datetime(2026, 6, 1, 5, 0, tzinfo=PARIS)
    assert opening is not None and opening.tzinfo == PARIS
    with pytest.raises(ValidationError, match="naive datetime"):
        shop.is_open(datetime(2026, 6, 1, 12))


# ------------------------------------------------------------------ DST, Europe/Paris
# 2026-03-29: 02:00 CET -> 03:00 CEST (01:00 UTC); 2026-10-25: 03:00 CEST -> 02:00 CET (01:00 UTC)


def test_paris_spring_forward_a_range_starting_in_the_skipped_hour_opens_at_the_jump() -> None:
    windows = Windows("02:30-03:30", "Europe/Paris")
    assert changes(windows, utc(2026, 3, 28, 12), 2) == [
        utc(2026, 3, 29, 1),
        utc(2026, 3, 29, 1, 30),
    ]
    assert windows.is_open(utc(2026, 3, 29, 1))  # 03:00 CEST
    assert not windows.is_open(utc(2026, 3, 29, 0, 59, 59))  # 01:59:59 CET


def test_paris_spring_forward_a_range_inside_the_skipped_hour_does_not_open_that_day() -> None:
    windows = Windows("02:00-02:30", "Europe/Paris")
    # the 28th (02:00 CET = 01:00 UTC), then not the 29th, then the 30th (CEST)
    assert changes(windows, utc(2026, 3, 28, 0), 3) == [
        utc(2026, 3, 28, 1), utc(2026, 3, 28, 1, 30), utc(2026, 3, 30, 0),
    ]  # fmt: skip
    assert not any(windows.is_open(utc(2026, 3, 29, 0) + timedelta(minutes=m)) for m in range(180))


def test_paris_spring_forward_a_range_ending_in_the_skipped_hour_closes_at_the_jump() -> None:
    windows = Windows("01:00-02:30", "Europe/Paris")
    assert changes(windows, utc(2026, 3, 28, 23), 2) == [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1)]


def test_paris_spring_forward_the_shop_opens_at_five_summer_time() -> None:
    shop = Windows("05:00-24:00", "Europe/Paris")
    assert changes(shop, utc(2026, 3, 28, 12), 3) == [
        utc(2026, 3, 28, 23), utc(2026, 3, 29, 3), utc(2026, 3, 29, 22),
    ]  # fmt: skip


def test_paris_fall_back_a_range_in_the_repeated_hour_opens_twice() -> None:
    windows = Windows("02:00-02:30", "Europe/Paris")
    assert changes(windows, utc(2026, 10, 24, 12), 5) == [
        utc(2026, 10, 25, 0), utc(2026, 10, 25, 0, 30),  # 02:00-02:30 CEST
        utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 30),  # 02:00-02:30 CET
        utc(2026, 10, 26, 1),
    ]  # fmt: skip


def test_paris_fall_back_a_range_over_the_repeated_hour_lasts_an_hour_longer() -> None:
    erp = Windows("01:00-04:00", "Europe/Paris")
    opens, closes = changes(erp, utc(2026, 10, 24, 12), 2)
    assert (opens, closes) == (utc(2026, 10, 24, 23), utc(2026, 10, 25, 3))
    assert closes - opens == timedelta(hours=4)


def test_paris_fall_back_a_range_ending_in_the_repeated_hour_reopens_on_the_wall_clock() -> None:
    windows = Windows("22:00-02:30", "Europe/Paris")
    assert changes(windows, utc(2026, 10, 24, 12), 4) == [
        utc(2026, 10, 24, 20),  # 22:00 CEST
        utc(2026, 10, 25, 0, 30),  # the first 02:30 (CEST)
        utc(2026, 10, 25, 1),  # the second 02:00 (CET): the wall clock is inside again
        utc(2026, 10, 25, 1, 30),  # the second 02:30
    ]


# ------------------------------------------------------------------ DST, America/New_York
# 2026-03-08: 02:00 EST -> 03:00 EDT (07:00 UTC); 2026-11-01: 02:00 EDT -> 01:00 EST (06:00 UTC)


def test_new_york_spring_forward_a_night_window_is_an_hour_shorter() -> None:
    windows = Windows("01:00-04:00", "America/New_York")
    opens, closes = changes(windows, utc(2026, 3, 7, 18), 2)
    assert (opens, closes) == (utc(2026, 3, 8, 6), utc(2026, 3, 8, 8))
    skipped = Windows("02:15-02:45", "America/New_York")
    assert changes(skipped, utc(2026, 3, 7, 18), 1) == [utc(2026, 3, 9, 6, 15)]


def test_new_york_fall_back_the_repeated_hour_is_open_twice() -> None:
    windows = Windows("01:30-01:45", "America/New_York")
    assert changes(windows, utc(2026, 10, 31, 18), 4) == [
        utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 5, 45),  # EDT
        utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 6, 45),  # EST
    ]  # fmt: skip
    night = Windows("01:00-04:00", "America/New_York")
    opens, closes = changes(night, utc(2026, 10, 31, 18), 2)
    assert closes - opens == timedelta(hours=4)


# ------------------------------------------------------------------ any windows, any instant

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
MINUTES = st.integers(0, 24 * 60)


@st.composite
def range_specs(draw: st.DrawFn) -> str:
    start = draw(st.integers(0, 24 * 60 - 1))
    end = draw(MINUTES.filter(lambda m: m % (24 * 60) != start))
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


@settings(max_examples=150, deadline=None)
@given(
    specs=st.lists(range_specs(), min_size=1, max_size=3),
    zone=st.sampled_from(ZONES),
    when=st.integers(
        utc(2025, 1, 1).timestamp().__int__(), utc(2027, 12, 31).timestamp().__int__()
    ),
)
def test_next_change_is_the_first_instant_the_state_flips(
    specs: list[str], zone: str, when: int
) -> None:
    windows = Windows(specs, zone)
    state = windows.is_open(when)
    change = windows.next_change(when)
    if change is None:
        assert windows.always_open
        return
    at = change.timestamp()
    assert at > when
    assert windows.is_open(at) != state
    # no flip before it: sampled every minute (and just before it)
    samples = [*range(when, int(at), 60), at - 0.001]
    assert all(windows.is_open(t) == state for t in samples)


# ------------------------------------------------------------------ what a worker holds


class FakeClock:
    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now


def test_the_gate_says_how_long_claiming_waits_and_logs_each_change_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(datetime(2026, 6, 1, 1, 48, tzinfo=PARIS))
    gate = Gate.for_worker(["05:00-24:00"], "Europe/Paris", clock, ["shop"])
    with caplog.at_level(logging.INFO, logger="notifyq.worker"):
        assert gate.closed_for() == 3 * 3600 + 12 * 60
        clock.now += 3600
        assert gate.closed_for() == 2 * 3600 + 12 * 60
        clock.now += 2 * 3600 + 12 * 60
        assert gate.closed_for() == 0
        clock.now += 60
        assert gate.closed_for() == 0
        clock.now = datetime(2026, 6, 2, 0, 0, tzinfo=PARIS).timestamp()
        assert gate.closed_for() == 5 * 3600
    assert caplog.messages == [
        "queue shop: outside its window until 05:00 Europe/Paris (in 3h12m)",
        "queue shop: inside its window 05:00-24:00 Europe/Paris, until tomorrow 00:00 "
        "Europe/Paris (in 19h00m)",
        "queue shop: outside its window until 05:00 Europe/Paris (in 5h00m)",
    ]


def test_a_gate_without_windows_never_waits_nor_reads_the_clock() -> None:
    def clock() -> float:
        raise AssertionError("read")

    assert Gate.for_worker(None, None, clock, ["a", "b"]).closed_for() == 0


def test_the_gate_refuses_a_time_zone_without_windows_and_a_clock_it_cannot_call() -> None:
    with pytest.raises(ValidationError, match="timezone is used only with windows"):
        Gate.for_worker(None, "Europe/Paris", None, ["q"])
    with pytest.raises(ValidationError, match="clock must be a callable"):
        Gate.for_worker("05:00-24:00", None, 12.0, ["q"])


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (9.2, "10s"),
        (245, "4m05s"),
        (3 * 3600 + 12 * 60, "3h12m"),
        (2 * 86400 + 3 * 3600, "2d3h"),
    ],
)
def test_span(seconds: float, text: str) -> None:
    assert span(seconds) == text
