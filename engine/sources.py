"""Alert sources: every write of one (create, change, delete, rotate its key), finding one
by its integration key, and rate limits.

An integration key is the secret in a source's webhook URL. After a rotation the previous
key keeps working until `previous_key_expires_at`, so a tool can be reconfigured without
losing alerts. Unknown, expired and disabled keys look the same to a caller (None), so the
intake's answer never tells an attacker which keys exist.

The store keeps only a keyed digest of each key (engine.vault): a key is shown once, when
it is made or rotated, and found by its digest. The signing secret is kept encrypted.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from . import crud, vault
from .activations.claims import forget_source_alerts
from .changes import UNSET, Unset, given
from .errors import ConflictError, ValidationError
from .tables import alert_sources, utcnow

#: Longest grace period a rotation may give the previous key.
MAX_GRACE = timedelta(days=30)
#: Grace period when a rotation names none: a day to update the tool's webhook URL.
DEFAULT_GRACE = timedelta(hours=24)


@dataclass(frozen=True)
class Source:
    """What the intake needs to know about an alert source."""

    id: int
    team_id: int
    key: str
    name: str
    type: str
    signing_secret: str | None
    settings: Mapping[str, Any] = field(default_factory=dict)
    rate_limit: str | None = None
    enabled: bool = True
    last_event_at: datetime | None = None
    #: The digest the key was found by, when it is under an older secret key (re-digest it).
    stale_digest: str | None = None

    @property
    def partition(self) -> str:
        """The evaluation partition of this source's events (contracts: intake -> rules)."""
        return f"source:{self.id}"


SIGNING_SECRET = "alert_sources.signing_secret"


def _source(keyring: vault.Keyring, row: Row[Any], stale_digest: str | None = None) -> Source:
    secret = row.signing_secret
    return Source(
        stale_digest=stale_digest,
        id=row.id,
        team_id=row.team_id,
        key=row.key,
        name=row.name,
        type=row.type,
        signing_secret=keyring.reveal(secret, SIGNING_SECRET) if secret else None,
        settings=dict(row.settings or {}),
        rate_limit=row.rate_limit or None,
        enabled=bool(row.enabled),
        last_event_at=row.last_event_at,
    )


def find_by_integration_key(
    conn: Connection, integration_key: str, now: datetime | None = None
) -> Source | None:
    """The enabled source whose current key, or previous key still in its grace period, is
    `integration_key`; None otherwise (unknown, expired and disabled alike)."""
    if not integration_key or len(integration_key) > 128 or "\x00" in integration_key:
        # No key has a NUL (and PostgreSQL's text cannot even compare one): unknown.
        return None
    now = now or utcnow()
    keyring = vault.of(conn)
    digests = keyring.digests(integration_key)
    row = conn.execute(
        sa.select(alert_sources).where(
            sa.or_(
                alert_sources.c.key_digest.in_(digests),
                alert_sources.c.previous_key_digest.in_(digests),
            )
        )
    ).first()
    if row is None or not row.enabled:
        return None
    found = row.key_digest
    if found not in digests:
        # The previous key: valid only until its grace period ends.
        expires = row.previous_key_expires_at
        if expires is None or expires <= now:
            return None
        found = row.previous_key_digest
    return _source(keyring, row, None if keyring.is_current(found) else found)


def redigest(conn: Connection, source_id: int, integration_key: str, stale: str) -> None:
    """Store `integration_key`'s digest under the current secret key in place of `stale`
    (its digest under a previous one), so that the previous secret key can be dropped.
    Conditional: a rotation in between wins."""
    fresh = vault.of(conn).digest(integration_key)
    for column in (alert_sources.c.key_digest, alert_sources.c.previous_key_digest):
        conn.execute(
            alert_sources.update()
            .where(alert_sources.c.id == source_id, column == stale)
            .values({column.name: fresh})
        )


def find_by_key(
    conn: Connection, key: str, team_ids: list[int] | None, team_key: str | None = None
) -> list[Source]:
    """Sources named `key` in the teams `team_ids` (None: every team), optionally only the
    team `team_key`. Several teams may use the same source key, so this returns a list."""
    from .tables import teams

    query = (
        sa.select(alert_sources)
        .join(teams, teams.c.id == alert_sources.c.team_id)
        .where(alert_sources.c.key == key)
    )
    if team_ids is not None:
        query = query.where(alert_sources.c.team_id.in_(team_ids))
    if team_key is not None:
        query = query.where(teams.c.key == team_key)
    keyring = vault.of(conn)
    return [_source(keyring, row) for row in conn.execute(query.order_by(alert_sources.c.id))]


def new_integration_key() -> str:
    """A fresh integration key: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Rotation:
    integration_key: str
    previous_key_expires_at: datetime | None


def rotate_key(
    conn: Connection,
    source_id: int,
    grace: timedelta = DEFAULT_GRACE,
    now: datetime | None = None,
    *,
    replace_previous: bool = False,
    actor: str = "system",
) -> Rotation:
    """Give the source a new integration key; the current one keeps working for `grace`
    (zero: it stops at once). A source keeps one previous key: while an earlier rotation's
    key is still in its grace period, rotating again would stop that key at once, which
    its rotation promised it would not, so it is a `ConflictError` unless
    `replace_previous`."""
    if grace < timedelta(0) or grace > MAX_GRACE:
        raise ValidationError(
            f"grace must be between 0 and {int(MAX_GRACE.total_seconds())} seconds", field="grace"
        )
    now = now or utcnow()
    row = crud.row(conn, alert_sources, source_id, "alert source")
    current = row.key_digest
    if row.previous_key_expires_at is not None and row.previous_key_expires_at > now:
        if not replace_previous:
            raise ConflictError(
                "the key of an earlier rotation still works until "
                f"{row.previous_key_expires_at.isoformat()}; rotating again would stop it at "
                'once: wait until then, or rotate with "replace_previous": true'
            )
    key = new_integration_key()
    expires = now + grace if grace > timedelta(0) else None
    conn.execute(
        alert_sources.update()
        .where(alert_sources.c.id == source_id)
        .values(
            key_digest=vault.of(conn).digest(key),
            key_hint=key_hint(key),
            previous_key_digest=current if expires else None,
            previous_key_expires_at=expires,
        )
    )
    crud.audit(
        conn,
        actor,
        "rotate key",
        "alert source",
        row.key,
        team_id=row.team_id,
        detail={"previous_key_expires_at": expires.isoformat() if expires else None},
    )
    return Rotation(key, expires)


def touch_last_event(conn: Connection, last_seen: Mapping[int, datetime]) -> None:
    """Move each source's `last_event_at` forward to the given time (never backward: group
    commits from several processes may land out of order)."""
    if last_seen:
        conn.execute(_TOUCH, [{"source_id": sid, "at": at} for sid, at in last_seen.items()])


# Built once: it runs in every group commit of the intake.
_TOUCH = (
    alert_sources.update()
    .where(alert_sources.c.id == sa.bindparam("source_id"))
    .where(
        sa.or_(
            alert_sources.c.last_event_at.is_(None),
            alert_sources.c.last_event_at < sa.bindparam("at"),
        )
    )
    .values(last_event_at=sa.bindparam("at"))
)


# --- writes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFields:
    """A new alert source. Without `integration_key` one is generated. The caller has
    checked `type` and `settings` against the adapters (the engine does not know them)."""

    key: str
    name: str
    type: str
    integration_key: str | None = None
    signing_secret: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    rate_limit: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class SourceChanges:
    """A change to an alert source (`signing_secret=None` and `rate_limit=None` remove them)."""

    name: str | Unset = UNSET
    type: str | Unset = UNSET
    integration_key: str | Unset = UNSET
    signing_secret: str | None | Unset = UNSET
    settings: Mapping[str, Any] | Unset = UNSET
    rate_limit: str | None | Unset = UNSET
    enabled: bool | Unset = UNSET


def create(conn: Connection, team_id: int, fields: SourceFields, *, actor: str) -> int:
    """Create an alert source in team `team_id`; returns its id. A caller that shows the key
    passes it in (`new_integration_key()`): the store keeps only its digest."""
    crud.key_free(conn, alert_sources, team_id, fields.key, "alert source")
    values = {
        "team_id": team_id,
        "key": fields.key,
        "name": fields.name,
        "type": fields.type,
        "integration_key": fields.integration_key or new_integration_key(),
        "signing_secret": fields.signing_secret,
        "settings": dict(fields.settings),
        "rate_limit": fields.rate_limit,
        "enabled": fields.enabled,
    }
    _check(conn, values, None)
    source_id = crud.insert(conn, alert_sources, _stored(conn, values))
    crud.created(conn, alert_sources, source_id, actor, "alert source", fields.key, team_id=team_id)
    return source_id


def update(conn: Connection, source_id: int, changes: SourceChanges, *, actor: str) -> None:
    """Change an alert source (nothing given: nothing happens)."""
    row = crud.row(conn, alert_sources, source_id, "alert source")
    values = given(changes)
    if not values:
        return
    if "settings" in values:
        values["settings"] = dict(values["settings"])
    _check(conn, values, source_id)
    crud.update(conn, alert_sources, source_id, _stored(conn, values))
    crud.audit(
        conn,
        actor,
        "update",
        "alert source",
        row.key,
        team_id=row.team_id,
        detail={"fields": sorted(values)},
    )


def delete(conn: Connection, source_id: int, *, actor: str) -> None:
    """Delete an alert source. Its alerts leave the activations they joined first
    (`forget_source_alerts`): no resolve of theirs can arrive any more, so an activation
    left without a firing alert ends by the clock instead of holding its claims for ever."""
    row = crud.row(conn, alert_sources, source_id, "alert source")
    forget_source_alerts(conn, source_id)
    conn.execute(alert_sources.delete().where(alert_sources.c.id == source_id))
    crud.audit(conn, actor, "delete", "alert source", row.key, team_id=row.team_id)


def _check(conn: Connection, values: Mapping[str, Any], source_id: int | None) -> None:
    if values.get("rate_limit") is not None:
        parse_rate_limit(values["rate_limit"])
    key = values.get("integration_key")
    if key is None:
        return
    taken = key_owner(conn, key)
    if taken is not None and taken != source_id:
        raise ConflictError("that integration key is already in use")


def key_owner(conn: Connection, integration_key: str) -> int | None:
    """The id of the source whose current or previous key is `integration_key`, if any."""
    digests = vault.of(conn).digests(integration_key)
    return conn.execute(
        sa.select(alert_sources.c.id).where(
            sa.or_(
                alert_sources.c.key_digest.in_(digests),
                alert_sources.c.previous_key_digest.in_(digests),
            )
        )
    ).scalar()


def key_hint(integration_key: str) -> str | None:
    """The last 4 characters of a key long enough to spare them (at least 20: 96 bits or so
    stay secret), to tell keys apart in listings; None for a shorter key."""
    return integration_key[-4:] if len(integration_key) >= 20 else None


def _stored(conn: Connection, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` as the row keeps them: the key as its digest, the signing secret sealed."""
    keyring = vault.of(conn)
    out = dict(values)
    if "integration_key" in out:
        key = out.pop("integration_key")
        out["key_digest"] = keyring.digest(key)
        out["key_hint"] = key_hint(key)
    if out.get("signing_secret"):
        out["signing_secret"] = keyring.seal(out["signing_secret"], SIGNING_SECRET)
    return out


def signing_secret(conn: Connection, stored: str | None) -> str | None:
    """The plaintext of a source row's `signing_secret` column."""
    return vault.of(conn).reveal(stored, SIGNING_SECRET) if stored else None


# --- rate limits -----------------------------------------------------------------------------

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$", re.IGNORECASE)
_PERIODS = {"s": 1, "m": 60, "h": 3600}
#: Largest N in a rate limit: the limiter counts in integer microseconds on Lua's doubles,
#: exact below 2**53, and N events an hour in microseconds stay under that.
MAX_RATE_COUNT = 1_000_000


@dataclass(frozen=True)
class RateLimit:
    """At most `count` firing events at once, refilled at `count` per `seconds`."""

    count: int
    seconds: int
    text: str


def parse_rate_limit(text: str) -> RateLimit:
    """`50/s`, `600/m` or `10000/h` as a `RateLimit`; a `ValidationError` otherwise."""
    match = _RATE.match(text or "")
    if not match or not 0 < int(match.group(1)) <= MAX_RATE_COUNT:
        raise ValidationError(
            f"rate_limit {text!r} is not of the form N/s, N/m or N/h (0 < N <= {MAX_RATE_COUNT})",
            field="rate_limit",
        )
    return RateLimit(int(match.group(1)), _PERIODS[match.group(2)[0].lower()], text.strip())


@dataclass(frozen=True)
class RateDecision:
    """Whether a take was allowed; if not, the whole seconds to wait before it would be."""

    allowed: bool
    retry_after: int = 0


# GCRA in its "continuous-state leaky bucket" form, which admits exactly what the
# theoretical-arrival-time form admits. Units: one event costs `period` (microseconds of the
# limit's period) and the bucket drains `limit` units per microsecond, so the capacity is
# `limit * period` = `limit` events and every quantity is an integer: no rounding can let an
# extra event in or refuse one that is exactly on time. `at` only moves forward, so a process
# whose clock is behind sees no refill it has not reached.
#
# KEYS[1] the bucket; ARGV now (us), limit (events), period (us), n (events to take).
# Returns {1, 0} when taken, {0, wait in whole seconds (at least 1)} when refused.
_GCRA = """
local now, limit, period, n =
    tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function int(x) return string.format('%.0f', x) end
local function ceil_div(a, b) return math.floor((a + b - 1) / b) end

local capacity = limit * period
local state = redis.call('HMGET', KEYS[1], 'level', 'at')
local level, at = tonumber(state[1]) or 0, tonumber(state[2]) or now
if now > at then
    level = math.max(0, level - (now - at) * limit)
    at = now
end
local wanted = level + n * period
if wanted <= capacity then
    redis.call('HSET', KEYS[1], 'level', int(wanted), 'at', int(at))
    -- Gone once drained: an absent key is a full bucket. A second more for clock skew.
    redis.call('PEXPIRE', KEYS[1], ceil_div(ceil_div(wanted, limit), 1000) + 1000)
    return {1, 0}
end
-- Refused: nothing is written. The wait is until n events fit, or, for a take larger than
-- the whole capacity, until the bucket is full again (the take never fits).
local over = math.min(wanted - capacity, level)
local wait_us = (at - now) + ceil_div(over, limit)
return {0, math.max(1, ceil_div(wait_us, 1000000))}
"""


def take_rate(
    redis: Any, prefix: str, source_id: int, limit: RateLimit, count: int, now: float
) -> RateDecision:
    """Take `count` events from the source's budget, all or nothing, in one atomic script on
    Redis, so that every process shares the budget exactly.

    The budget is a token bucket (GCRA): `limit.count` events at once, refilled continuously
    at `limit.count` per `limit.seconds`. So no burst, across any boundary, passes more than
    `limit.count`, and over any span of t seconds at most `limit.count * (1 + t/seconds)`
    pass. A refused take consumes nothing, and its `retry_after` is the exact wait, rounded
    up to whole seconds (at least 1), until `count` events would be taken. A take of more
    than `limit.count` events can never be taken: it is refused with the wait until the
    bucket is full, which only says when the source has its whole budget back.

    Time is the caller's `now`, not Redis's clock: tests are then deterministic, and hosts
    running NTP agree to milliseconds, which at most lets that many milliseconds of refill
    through early. The bucket's key carries the limit, so a changed limit starts full.
    """
    if count <= 0:
        return RateDecision(True)
    # EVALSHA, loading the script only when this Redis has not seen it yet.
    return _decided(
        redis.register_script(_GCRA)(**_gcra_call(prefix, source_id, limit, count, now))
    )


async def atake_rate(
    redis: Any, prefix: str, source_id: int, limit: RateLimit, count: int, now: float
) -> RateDecision:
    """`take_rate` through an asyncio Redis client (the intake, on the event loop)."""
    if count <= 0:
        return RateDecision(True)
    script = redis.register_script(_GCRA)
    return _decided(await script(**_gcra_call(prefix, source_id, limit, count, now)))


def _gcra_call(
    prefix: str, source_id: int, limit: RateLimit, count: int, now: float
) -> dict[str, list[Any]]:
    key = f"{prefix}beacon:gcra:{source_id}:{limit.count}/{limit.seconds}"
    return {
        "keys": [key],
        "args": [round(now * 1_000_000), limit.count, limit.seconds * 1_000_000, count],
    }


def _decided(answer: list[Any]) -> RateDecision:
    allowed, retry_after = answer
    return RateDecision(True) if allowed else RateDecision(False, int(retry_after))
