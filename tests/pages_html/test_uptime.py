"""Uptime per service and day, checked against hand-computed values."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine import uptime
from engine.db import Store
from engine.models import ServiceStatus as S
from engine.uptime import Weights, daily_uptime, overall, timeline
from tests import factories as factory

D1 = date(2026, 11, 1)
T0 = datetime(2026, 11, 1, tzinfo=UTC)
LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)


def at(hours: float, day: int = 1) -> datetime:
    return datetime(2026, 11, day, tzinfo=UTC) + timedelta(hours=hours)


def one_day(changes, *, initial=S.OPERATIONAL, created_at=LONG_AGO, now=None, weights=None):
    now = now or at(0, day=2)
    segs = timeline(initial, changes, T0, now)
    return daily_uptime(segs, [D1], UTC, created_at=created_at, now=now, weights=weights)[0]


def test_six_hours_of_major_outage_is_three_quarters_up() -> None:
    day = one_day([(at(6), S.MAJOR_OUTAGE), (at(12), S.OPERATIONAL)])
    assert day.uptime == pytest.approx(0.75)
    assert day.worst is S.MAJOR_OUTAGE


def test_partial_outage_weighs_three_tenths() -> None:
    # 10 h partial: 3 h of downtime out of 24.
    day = one_day([(at(2), S.PARTIAL_OUTAGE), (at(12), S.OPERATIONAL)])
    assert day.uptime == pytest.approx(1 - 3 / 24)
    assert day.worst is S.PARTIAL_OUTAGE


def test_degraded_counts_as_up_but_colours_the_day() -> None:
    day = one_day([], initial=S.DEGRADED)
    assert day.uptime == pytest.approx(1.0)
    assert day.worst is S.DEGRADED


def test_maintenance_leaves_the_denominator() -> None:
    # 12 h maintenance, then 6 h major outage: 6 h down of 12 h counted.
    day = one_day([(at(12), S.MAJOR_OUTAGE), (at(18), S.OPERATIONAL)], initial=S.UNDER_MAINTENANCE)
    assert day.uptime == pytest.approx(0.5)
    assert day.counted_seconds == 12 * 3600


def test_a_day_only_under_maintenance_has_no_uptime_but_a_status() -> None:
    day = one_day([], initial=S.UNDER_MAINTENANCE)
    assert day.uptime is None
    assert day.worst is S.UNDER_MAINTENANCE


def test_days_before_the_service_existed_have_no_data() -> None:
    created = at(12)
    segs = timeline(S.OPERATIONAL, [(at(18), S.MAJOR_OUTAGE)], T0 - timedelta(days=1), at(0, 2))
    days = daily_uptime(segs, [date(2026, 10, 31), D1], UTC, created_at=created, now=at(0, 2))
    assert days[0].uptime is None and days[0].worst is None
    # The day it was created counts whole, as on Statuspage: 6 h down of 24.
    assert days[1].uptime == pytest.approx(0.75)
    assert days[1].counted_seconds == 24 * 3600


def test_today_counts_as_a_whole_day() -> None:
    # 3 h down by noon: 3 of the day's 24 hours, whatever the afternoon brings.
    day = one_day([(at(0), S.MAJOR_OUTAGE), (at(3), S.OPERATIONAL)], now=at(12))
    assert day.uptime == pytest.approx(0.875)


def test_an_ongoing_outage_counts_up_to_now() -> None:
    day = one_day([(at(6), S.MAJOR_OUTAGE)], now=at(12))
    assert day.uptime == pytest.approx(0.75)
    assert day.worst is S.MAJOR_OUTAGE


def test_a_service_created_today_with_a_short_outage_reads_as_statuspage_does() -> None:
    # Issue 19: created minutes ago, down for 2.5 minutes. Counting only the minutes it has
    # existed said 43.3 %; against the whole day it is 99.83 %.
    created, now = at(12), at(12) + timedelta(minutes=5, seconds=46)
    down = at(12) + timedelta(minutes=1)
    segs = timeline(
        S.OPERATIONAL,
        [(down, S.MAJOR_OUTAGE), (down + timedelta(minutes=2.5), S.OPERATIONAL)],
        T0,
        now,
    )
    days = daily_uptime(segs, [D1 - timedelta(days=1), D1], UTC, created_at=created, now=now)
    assert days[0].uptime is None
    assert days[1].uptime == pytest.approx(1 - 150 / 86400)
    assert overall(days) == pytest.approx(1 - 150 / 86400)


def test_a_day_across_a_dst_change_weighs_its_own_length() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    autumn = date(2026, 10, 25)  # 25 hours long in Berlin
    start, _end = uptime.day_bounds(autumn, berlin)
    segs = timeline(
        S.OPERATIONAL,
        [(start + timedelta(hours=1), S.MAJOR_OUTAGE), (start + timedelta(hours=6), S.OPERATIONAL)],
        start,
        start + timedelta(days=2),
    )
    (day,) = daily_uptime(
        segs, [autumn], berlin, created_at=LONG_AGO, now=start + timedelta(days=2)
    )
    assert day.counted_seconds == 25 * 3600
    assert day.uptime == pytest.approx(1 - 5 / 25)


def test_days_follow_the_page_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # UTC+1 in November
    segs = timeline(
        S.OPERATIONAL,
        [(at(23), S.MAJOR_OUTAGE), (at(1, day=2), S.OPERATIONAL)],
        T0 - timedelta(hours=1),
        at(0, day=4),
    )
    days = daily_uptime(
        segs, [D1, date(2026, 11, 2)], berlin, created_at=LONG_AGO, now=at(0, day=4)
    )
    # 23:00-01:00 UTC is 00:00-02:00 on 2 November in Berlin.
    assert days[0].uptime == pytest.approx(1.0)
    assert days[1].uptime == pytest.approx(22 / 24)


def test_weights_are_configurable() -> None:
    day = one_day(
        [(at(0), S.DEGRADED), (at(12), S.OPERATIONAL)],
        weights=Weights.from_settings({"degraded": 0.5, "major_outage": "lots"}),
    )
    assert day.uptime == pytest.approx(0.75)


def test_overall_uptime_weighs_days_by_counted_time() -> None:
    full = uptime.UptimeDay(D1, 0.5, S.MAJOR_OUTAGE, 86400, 43200)
    half = uptime.UptimeDay(D1, 1.0, S.OPERATIONAL, 43200, 0)
    empty = uptime.UptimeDay(D1, None, None, 0, 0)
    assert overall([full, half, empty]) == pytest.approx(1 - 43200 / 129600)
    assert overall([empty]) is None


def test_last_days_end_today_in_the_time_zone() -> None:
    now = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
    days = uptime.last_days(now, ZoneInfo("Europe/Berlin"), 90)
    assert len(days) == 90
    assert days[-1] == date(2026, 11, 30)
    assert days[0] == date(2026, 9, 2)


def test_segments_come_from_recorded_status_changes(store: Store) -> None:
    with store.begin() as conn:
        team = factory.team(conn)
        sid = factory.service(conn, team, "api", created_at=LONG_AGO)
        quiet = factory.service(conn, team, "db", created_at=LONG_AGO, status="degraded")
        factory.change(conn, sid, "operational", "partial_outage", at(-30))
        factory.change(conn, sid, "partial_outage", "major_outage", at(6))
        factory.change(conn, sid, "major_outage", "operational", at(12))
        segments = uptime.load_segments(conn, [sid, quiet], T0, at(0, day=2))
    assert segments[sid] == [
        uptime.Segment(T0, at(6), S.PARTIAL_OUTAGE),
        uptime.Segment(at(6), at(12), S.MAJOR_OUTAGE),
        uptime.Segment(at(12), at(0, day=2), S.OPERATIONAL),
    ]
    # No change at all: the current status all along.
    assert segments[quiet] == [uptime.Segment(T0, at(0, day=2), S.DEGRADED)]
    day = daily_uptime(segments[sid], [D1], UTC, created_at=LONG_AGO, now=at(0, day=2))[0]
    # 6 h partial (1.8 h) + 6 h major (6 h) down of 24.
    assert day.uptime == pytest.approx(1 - 7.8 / 24)
