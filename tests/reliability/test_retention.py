"""Retention: the daily purge deletes finished deliveries, subscribers who never confirmed
and audit rows past their configured ages (BEACON_*_RETENTION_DAYS), and never a pending
delivery, a confirmed subscriber or anything younger."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from engine import retention
from engine.events import handle_purge
from engine.settings import Settings
from engine.tables import audit_log, deliveries, status_pages, subscribers, teams, utcnow

NOW = utcnow()
OLD = NOW - timedelta(days=400)
RECENT = NOW - timedelta(days=1)


def _fill(store) -> None:
    with store.begin() as conn:
        team = conn.execute(teams.insert().values(key="t", name="T")).inserted_primary_key[0]
        page = conn.execute(
            status_pages.insert().values(team_id=team, slug="acme", name="Acme")
        ).inserted_primary_key[0]
        made = {}
        for name, confirmed, at in (
            ("old-unconfirmed", False, OLD),
            ("new-unconfirmed", False, RECENT),
            ("old-confirmed", True, OLD),
        ):
            made[name] = conn.execute(
                subscribers.insert().values(
                    page_id=page,
                    channel="email",
                    address=f"{name}@example.com",
                    confirmed=confirmed,
                    link_selector=name,
                    created_at=at,
                )
            ).inserted_primary_key[0]
        for key, status, at in (
            ("old-sent", "sent", OLD),
            ("old-failed", "failed", OLD),
            ("old-pending", "pending", OLD),
            ("old-sending", "sending", OLD),
            ("new-sent", "sent", RECENT),
        ):
            conn.execute(
                deliveries.insert().values(
                    dedup_key=key,
                    subscriber_id=made["old-confirmed"],
                    kind="email",
                    message={},
                    status=status,
                    created_at=at,
                    updated_at=at,
                )
            )
        for key, at in (("old", OLD), ("new", RECENT)):
            conn.execute(
                audit_log.insert().values(
                    at=at, actor="x", action="update", object_kind="page", object_key=key
                )
            )


def _left(store) -> tuple[list[str], list[str], list[str]]:
    with store.read() as conn:
        return (
            sorted(conn.execute(sa.select(subscribers.c.link_selector)).scalars()),
            sorted(conn.execute(sa.select(deliveries.c.dedup_key)).scalars()),
            sorted(conn.execute(sa.select(audit_log.c.object_key)).scalars()),
        )


def test_each_retention_purges_only_old_finished_rows(store):
    _fill(store)
    settings = Settings(
        delivery_retention_days=90, unconfirmed_retention_days=7, audit_retention_days=365
    )
    purged = retention.purge_all(store, settings, NOW)
    assert purged == retention.Purged(deliveries=2, unconfirmed_subscribers=1, audit_rows=1)
    assert _left(store) == (
        ["new-unconfirmed", "old-confirmed"],
        ["new-sent", "old-pending", "old-sending"],
        ["new"],
    )
    # A second purge finds nothing.
    assert retention.purge_all(store, settings, NOW) == retention.Purged()


def test_zero_keeps_everything(store):
    _fill(store)
    settings = Settings(
        delivery_retention_days=0, unconfirmed_retention_days=0, audit_retention_days=0
    )
    assert retention.purge_all(store, settings, NOW) == retention.Purged()


def test_the_daily_purge_applies_the_environments_retention(tmp_path: Path, make_runtime):
    settings = Settings.from_env(
        {
            "BEACON_DATA_DIR": str(tmp_path / "data"),
            "BEACON_DELIVERY_RETENTION_DAYS": "500",
            "BEACON_UNCONFIRMED_RETENTION_DAYS": "2",
            "BEACON_AUDIT_RETENTION_DAYS": "0",
        }
    )
    rt = make_runtime(settings)
    _fill(rt.store)
    handle_purge(rt, [])
    assert _left(rt.store) == (
        ["new-unconfirmed", "old-confirmed"],
        ["new-sent", "old-failed", "old-pending", "old-sending", "old-sent"],
        ["new", "old"],
    )
