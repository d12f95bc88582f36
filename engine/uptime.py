"""Uptime per service and day, from the recorded status changes (DESIGN.md, "Uptime").

Counted the way Atlassian Statuspage counts it, so that a figure reads the same to a
visitor who knows Statuspage: every calendar day (in the page's time zone) on which the
service existed, today and the day it was created included, weighs its outage time against
the whole day (1,440 minutes; 1,380 or 1,500 across a DST change). Outage time is weighted
(major outage 1.0, partial outage 0.3, degraded 0 by default); time under maintenance is
taken out of the day, counting neither as up nor as down. Days before the service existed
have no uptime (shown as "no data"), and neither has a day spent wholly in maintenance.

So a service created this morning with a 2.5-minute outage shows 99.83 % for today, not
the share of the few minutes it has existed; the rest of today counts as up until it
happens otherwise, which is why pages re-render on the hour (pages.render).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .models import ServiceStatus
from .tables import services, status_changes

DEFAULT_DAYS = 90


@dataclass(frozen=True)
class Weights:
    """How much of an interval under each status counts as downtime (0..1)."""

    major_outage: float = 1.0
    partial_outage: float = 0.3
    degraded: float = 0.0

    def of(self, status: ServiceStatus) -> float:
        if status is ServiceStatus.MAJOR_OUTAGE:
            return self.major_outage
        if status is ServiceStatus.PARTIAL_OUTAGE:
            return self.partial_outage
        if status is ServiceStatus.DEGRADED:
            return self.degraded
        return 0.0

    @classmethod
    def from_settings(cls, value: object) -> Weights:
        """Weights from a page's `settings["uptime_weights"]`; unknown or bad values are
        ignored so a hand-edited setting can never break a page's render."""
        if not isinstance(value, Mapping):
            return cls()
        picked: dict[str, float] = {}
        for name in ("major_outage", "partial_outage", "degraded"):
            raw = value.get(name)
            if isinstance(raw, int | float) and 0.0 <= float(raw) <= 1.0:
                picked[name] = float(raw)
        return cls(**picked)


@dataclass(frozen=True)
class Segment:
    """An interval [start, end) under one status."""

    start: datetime
    end: datetime
    status: ServiceStatus


@dataclass(frozen=True)
class DayIncident:
    public_id: str
    title: str


@dataclass(frozen=True)
class UptimeDay:
    """One bar of the 90-day bar: `uptime` is None on a day without data."""

    day: date
    uptime: float | None
    #: The day's worst status, None without data.
    worst: ServiceStatus | None
    #: Seconds that counted (the whole day less its maintenance; 0 before the service
    #: existed) and weighted downtime.
    counted_seconds: float
    down_seconds: float
    incidents: tuple[DayIncident, ...] = ()


def timeline(
    initial: ServiceStatus,
    changes: Iterable[tuple[datetime, ServiceStatus]],
    start: datetime,
    end: datetime,
) -> list[Segment]:
    """The segments covering [start, end), given the status at `start` and the changes
    (time, new status) in time order; changes outside the range only move the status."""
    segments: list[Segment] = []
    status, cursor = initial, start
    for at, new in changes:
        if at <= start:
            status = new
            continue
        if at >= end:
            break
        if at > cursor:
            segments.append(Segment(cursor, at, status))
            cursor = at
        status = new
    if cursor < end:
        segments.append(Segment(cursor, end, status))
    return segments


def day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The UTC start and end of a calendar day in `tz` (23 or 25 hours across DST)."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def last_days(now: datetime, tz: tzinfo, count: int = DEFAULT_DAYS) -> list[date]:
    """The `count` calendar days in `tz` ending with today, oldest first."""
    today = now.astimezone(tz).date()
    return [today - timedelta(days=offset) for offset in range(count - 1, -1, -1)]


def daily_uptime(
    segments: Sequence[Segment],
    days: Sequence[date],
    tz: tzinfo,
    *,
    created_at: datetime,
    now: datetime,
    weights: Weights | None = None,
    bounds: Sequence[tuple[datetime, datetime]] | None = None,
) -> list[UptimeDay]:
    """Each day's uptime and worst status from a service's segments (in time order).

    A day counts whole once the service existed by its end: its outage seconds (up to
    `now`) over the day's length less its maintenance. `bounds` (each day's UTC start and
    end, from `day_bounds`) may be given to share the work across the services of a page.
    """
    weights = weights or Weights()
    bounds = bounds or [day_bounds(day, tz) for day in days]
    result = []
    first = 0  # segments before this one end before the current day: never looked at again
    for day, (day_start, day_end) in zip(days, bounds, strict=True):
        if day_end <= created_at:
            result.append(UptimeDay(day, None, None, 0.0, 0.0))
            continue
        # What happened is read from the service's creation up to now; the rest of the day
        # (before it existed, or still to come) counts as up.
        lo, hi = max(day_start, created_at), min(day_end, now)
        maintenance = down = 0.0
        worst: ServiceStatus | None = None
        while first < len(segments) and segments[first].end <= day_start:
            first += 1
        for seg in segments[first:]:
            if seg.start >= hi:
                break
            a, b = max(seg.start, lo), min(seg.end, hi)
            if a >= b:
                continue
            if worst is None or seg.status.rank > worst.rank:
                worst = seg.status
            seconds = (b - a).total_seconds()
            if seg.status is ServiceStatus.UNDER_MAINTENANCE:
                maintenance += seconds
            else:
                down += seconds * weights.of(seg.status)
        if worst is None:
            # Created this very moment: nothing recorded yet, its status is its last one.
            worst = segments[-1].status if segments else ServiceStatus.OPERATIONAL
        counted = (day_end - day_start).total_seconds() - maintenance
        uptime = 1.0 - down / counted if counted > 0 else None
        result.append(UptimeDay(day, uptime, worst, counted, down))
    return result


def overall(days: Iterable[UptimeDay]) -> float | None:
    """Uptime over several days, weighted by the time each counted (None without data)."""
    counted = down = 0.0
    for d in days:
        counted += d.counted_seconds
        down += d.down_seconds
    return 1.0 - down / counted if counted > 0 else None


def load_segments(
    conn: Connection, service_ids: Sequence[int], start: datetime, end: datetime
) -> dict[int, list[Segment]]:
    """Each service's status segments over [start, end) from `status_changes`.

    The status at `start` is the newest change before it; without one, the first later
    change's `old_status`; without any change, the service's current status.
    """
    ids = list(service_ids)
    if not ids:
        return {}
    current = {
        row.id: ServiceStatus(row.status)
        for row in conn.execute(
            sa.select(services.c.id, services.c.status).where(services.c.id.in_(ids))
        )
    }
    newest_before = (
        sa.select(status_changes.c.service_id, sa.func.max(status_changes.c.at).label("at"))
        .where(status_changes.c.service_id.in_(ids))
        .where(status_changes.c.at <= start)
        .group_by(status_changes.c.service_id)
        .subquery()
    )
    initial: dict[int, ServiceStatus] = {}
    for before in conn.execute(
        sa.select(status_changes.c.service_id, status_changes.c.new_status).join(
            newest_before,
            sa.and_(
                newest_before.c.service_id == status_changes.c.service_id,
                newest_before.c.at == status_changes.c.at,
            ),
        )
    ):
        initial[before.service_id] = ServiceStatus(before.new_status)

    changes: dict[int, list[tuple[datetime, ServiceStatus]]] = defaultdict(list)
    first_old: dict[int, ServiceStatus] = {}
    for row in conn.execute(
        sa.select(
            status_changes.c.service_id,
            status_changes.c.at,
            status_changes.c.old_status,
            status_changes.c.new_status,
        )
        .where(status_changes.c.service_id.in_(ids))
        .where(status_changes.c.at > start)
        .where(status_changes.c.at < end)
        .order_by(status_changes.c.service_id, status_changes.c.at, status_changes.c.id)
    ):
        if row.service_id not in first_old and row.old_status:
            first_old[row.service_id] = ServiceStatus(row.old_status)
        changes[row.service_id].append((row.at, ServiceStatus(row.new_status)))

    result = {}
    for sid in ids:
        if sid not in current:
            continue
        if sid in initial:
            start_status = initial[sid]
        elif changes.get(sid):
            # A first change without an old status was the service's first recorded one.
            start_status = first_old.get(sid, ServiceStatus.OPERATIONAL)
        else:
            start_status = current[sid]
        result[sid] = timeline(start_status, changes.get(sid, []), start, end)
    return result
