"""Seeding a store the way `beacon apply` and the intake would, for the evaluator's tests."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from engine.db import Store
from engine.models import AlertEvent
from engine.tables import (
    activation_alerts,
    activations,
    alert_events,
    claims,
    services,
)
from rules.runtime import RuleRuntime
from tests import factories
from tests.rules.helpers import T0
from workers.evaluate import evaluate_partition, publish_rules, rules_runtime

_fingerprints = itertools.count()


def seed(store: Store) -> dict[str, int]:
    """Team `platform` with services api, db, web, source `am`, templates and a window."""
    with store.begin() as conn:
        team = factories.team(conn, "platform", name="Platform")
        ids = {"team": team}
        for key in ("api", "db", "web"):
            ids[key] = factories.service(conn, team, key)
        for key, kind in (("am", "alertmanager"), ("kuma", "uptime-kuma")):
            ids[key] = factories.source(conn, team, key, kind)
        factories.template(
            conn,
            team,
            "outage",
            "{{ service.name }} down: {{ event.summary }}",
            message="Investigating.",
            resolve_message="Recovered.",
            services={"api": "major_outage"},
        )
        ids["window"] = factories.maintenance(
            conn,
            team,
            "Upgrade",
            key="mw",
            starts_at=T0 + timedelta(minutes=10),
            ends_at=T0 + timedelta(minutes=20),
            service_ids=[ids["db"]],
            on_end="replay",
            status="in_progress",
            updates=False,
        )
    return ids


def ingest(store: Store, source_id: int, *events: AlertEvent, partition: str = "am") -> list[int]:
    """Store events as the intake does: unevaluated, in the source's partition."""
    new = []
    with store.begin() as conn:
        for event in events:
            new.append(
                conn.execute(
                    alert_events.insert().values(
                        source_id=source_id,
                        dedup_key=event.dedup_key,
                        status=str(event.status),
                        severity=str(event.severity),
                        summary=event.summary,
                        labels=dict(event.labels),
                        links=[],
                        occurred_at=event.occurred_at,
                        received_at=event.received_at,
                        fingerprint=f"fp-{next(_fingerprints)}",
                        partition=partition,
                    )
                ).inserted_primary_key[0]
            )
    return new


def load_rules(store: Store, text: str) -> RuleRuntime:
    publish_rules(store, {"rules.yaml": "version: 1\nrules:\n" + text}, None)
    return rules_runtime(store)


def evaluate(store: Store, runtime: RuleRuntime, partition: str = "am") -> int:
    return evaluate_partition(store, rules_runtime(store, runtime), partition)


def status_of(store: Store, service_id: int) -> str:
    with store.read() as conn:
        return str(
            conn.execute(sa.select(services.c.status).where(services.c.id == service_id)).scalar()
        )


def open_claims(store: Store) -> list[Any]:
    with store.read() as conn:
        return conn.execute(
            sa.select(claims.c.service_id, claims.c.status, claims.c.rule_id)
            .where(claims.c.released_at.is_(None))
            .order_by(claims.c.id)
        ).all()


def stored_activation(
    store: Store, team_id: int, alerts: list[tuple[int, str, bool]], firing: int
) -> int:
    """An active activation stored as the evaluator leaves it: its alerts (source id, dedup
    key, firing) and the count of firing ones it keeps (`firing`, the count to store)."""
    with store.begin() as conn:
        act = conn.execute(
            activations.insert().values(
                team_id=team_id,
                rule_id="r",
                group_key="g",
                state="active",
                started_at=T0,
                firing_alerts=firing,
            )
        ).inserted_primary_key[0]
        conn.execute(
            activation_alerts.insert(),
            [
                {"activation_id": act, "source_id": source_id, "dedup_key": key}
                | {"firing": on, "first_fired_at": T0, "last_occurred_at": T0}
                for source_id, key, on in alerts
            ],
        )
    return int(act)


def firing_count(store: Store, activation_id: int) -> int:
    with store.read() as conn:
        return int(
            conn.execute(
                sa.select(activations.c.firing_alerts).where(activations.c.id == activation_id)
            ).scalar_one()
        )
