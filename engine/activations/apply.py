"""Intents applied to the store, in the caller's transaction.

`apply_intents` turns the machine's intents into claims, incidents, rule errors and outbox
rows, and recomputes the affected services' status with its cause. The `match` is
exhaustive (`assert_never`): an intent kind added to `engine.activations.intents.Intent`
and not applied here is a mypy error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, assert_never

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import incidents as incidents_api
from .. import outbox, status
from ..models import ServiceStatus
from ..rule_messages import rule_message
from ..tables import (
    activations,
    alert_events,
    channels,
    claims,
    incident_alerts,
    incident_templates,
    incidents,
    rule_errors,
)
from .intents import (
    AlertRef,
    AttachAlert,
    Claim,
    Hold,
    Ignored,
    Intent,
    Notify,
    OpenIncident,
    Release,
    ResolveIncident,
    RuleError,
)
from .lookups import Ids

log = logging.getLogger("beacon.rules")

#: workers.notify's outbox kind for a message to a team channel.
NOTIFY_CHANNEL = "notify.channel"


def apply_intents(conn: Connection, ids: Ids, intents: Iterable[Intent]) -> None:
    """Apply `intents` in order on `conn`."""
    for intent in intents:
        apply_intent(conn, ids, intent)


def apply_intent(conn: Connection, ids: Ids, intent: Intent) -> None:
    """Apply one intent on `conn`."""
    match intent:
        case Claim():
            _claim(conn, ids, intent)
        case Release():
            _release(conn, ids, intent)
        case OpenIncident():
            _open_incident(conn, ids, intent)
        case AttachAlert():
            _attach_alert(conn, intent)
        case ResolveIncident():
            _resolve_incident(conn, intent)
        case Notify():
            _notify(conn, ids, intent)
        case RuleError():
            _rule_error(conn, ids, intent)
        case Hold() | Ignored():
            # Nothing to apply: the state stored the held alert (`held_alerts`), and the
            # event's outcome says it was ignored.
            pass
        case _:
            assert_never(intent)


def _event_id(alert: AlertRef | None) -> int | None:
    return alert.stored_event_id if alert is not None else None


def _cause(intent: Claim | Release) -> dict[str, Any]:
    cause: dict[str, Any] = {
        "rule": intent.rule_id,
        "activation": intent.activation_id,
        "group": intent.group_key,
    }
    if isinstance(intent, Release):
        cause["reason"] = intent.reason
    return cause


def _claim(conn: Connection, ids: Ids, intent: Claim) -> None:
    found = ids.service(intent.team, intent.service)
    if found is None:
        return
    conn.execute(
        claims.insert(),
        {
            "service_id": found[0],
            "activation_id": intent.activation_id,
            "status": str(intent.status),
            "rule_id": intent.rule_id,
            "created_at": intent.at,
        },
    )
    status.recompute(conn, [found[0]], cause_kind="rule", cause=_cause(intent), now=intent.at)


_RELEASE = (
    claims.update()
    .where(claims.c.activation_id == sa.bindparam("act_id"))
    .where(claims.c.service_id == sa.bindparam("claim_service_id"))
    .where(claims.c.released_at.is_(None))
    .values(released_at=sa.bindparam("at"), released_by=sa.bindparam("by"))
)


def _release(conn: Connection, ids: Ids, intent: Release) -> None:
    found = ids.service(intent.team, intent.service)
    if found is None:
        return
    conn.execute(
        _RELEASE,
        {
            "act_id": intent.activation_id,
            "claim_service_id": found[0],
            "at": intent.at,
            "by": f"rule:{intent.rule_id}",
        },
    )
    status.recompute(conn, [found[0]], cause_kind="rule", cause=_cause(intent), now=intent.at)


def _open_incident(conn: Connection, ids: Ids, intent: OpenIncident) -> None:
    impacts: dict[int, ServiceStatus] = {}
    for key, impact in intent.services.items():
        found = ids.service(intent.team, key)
        if found is not None:
            impacts[found[0]] = ServiceStatus(impact)
    team_id = ids.team(intent.team)
    template_id = conn.execute(
        sa.select(incident_templates.c.id).where(
            incident_templates.c.team_id == team_id,
            incident_templates.c.key == intent.template,
        )
    ).scalar()
    incident_id = incidents_api.create(
        conn,
        team_id=team_id,
        title=intent.title,
        message=intent.message,
        status=intent.status or "investigating",
        impacts=impacts,
        started_at=intent.at,
        template_id=template_id,
        activation_id=intent.activation_id,
        managed_by="automation",
        author=f"rule:{intent.rule_id}",
        notify=intent.notify,
        now=intent.at,
    )
    event_id = _event_id(intent.alert)
    if event_id is not None:
        conn.execute(incident_alerts.insert().values(incident_id=incident_id, event_id=event_id))
    conn.execute(
        activations.update()
        .where(activations.c.id == intent.activation_id)
        .values(incident_id=incident_id)
    )


def _incident_of(conn: Connection, activation_id: int | None) -> Any:
    return conn.execute(
        sa.select(incidents.c.id, incidents.c.status, incidents.c.managed_by)
        .join(activations, activations.c.incident_id == incidents.c.id)
        .where(activations.c.id == activation_id)
    ).first()


def _attach_alert(conn: Connection, intent: AttachAlert) -> None:
    incident = _incident_of(conn, intent.activation_id)
    event_id = _event_id(intent.alert)
    if incident is None or event_id is None:
        return
    exists = conn.execute(
        sa.select(incident_alerts.c.event_id).where(
            incident_alerts.c.incident_id == incident.id, incident_alerts.c.event_id == event_id
        )
    ).first()
    if exists is None:
        conn.execute(incident_alerts.insert().values(incident_id=incident.id, event_id=event_id))


def _resolve_incident(conn: Connection, intent: ResolveIncident) -> None:
    incident = _incident_of(conn, intent.activation_id)
    # A person who took the incident over owns its timeline: automation leaves it alone.
    if incident is None or incident.managed_by != "automation" or incident.status == "resolved":
        return
    incidents_api.resolve(
        conn,
        incident.id,
        message=intent.message,
        author=f"rule:{intent.rule_id}",
        now=intent.at,
    )


def _notify(conn: Connection, ids: Ids, intent: Notify) -> None:
    channel = conn.execute(
        sa.select(channels.c.id).where(
            channels.c.team_id == ids.team(intent.team), channels.c.key == intent.channel
        )
    ).scalar()
    if channel is None:
        _rule_error(
            conn,
            ids,
            RuleError(
                at=intent.at,
                rule_id=intent.rule_id,
                team=intent.team,
                group_key=intent.group_key,
                activation_id=intent.activation_id,
                message=f"unknown channel {intent.channel!r} in team {intent.team!r}",
            ),
        )
        return
    state = intent.state or "firing"
    summary = ""
    event_id = _event_id(intent.alert)
    if event_id is not None:
        summary = str(
            conn.execute(
                sa.select(alert_events.c.summary).where(alert_events.c.id == event_id)
            ).scalar()
            or ""
        )
    said = rule_message(
        conn, ids.team(intent.team), intent.rule_id, state, intent.activation_id, summary
    )
    outbox.emit(
        conn,
        NOTIFY_CHANNEL,
        {
            "channel_id": channel,
            # One message per activation, state and channel, however often this is retried.
            "dedup_key": f"rule:{intent.activation_id}:{state}:{channel}",
            "subject": said.subject,
            "text": said.text,
            # The sender puts its base URL in front (engine.rule_messages).
            "link_path": said.path,
            "payload": {
                "rule": intent.rule_id,
                "state": state,
                "group": intent.group_key,
                "activation": intent.activation_id,
                "event_id": event_id,
                "summary": summary,
                "services": said.services,
            },
        },
    )


def _rule_error(conn: Connection, ids: Ids, intent: RuleError) -> None:
    event_id = _event_id(intent.alert)
    # Recorded against the services it concerns: an error on the clock (a `for` rule's
    # incident failing to render) comes with no event by which `why` could find it.
    service_ids: list[int | None] = [
        found[0] for key in intent.services if (found := ids.service(intent.team, key)) is not None
    ]
    conn.execute(
        rule_errors.insert(),
        [
            {
                "rule_id": intent.rule_id,
                "event_id": event_id,
                "service_id": service_id,
                "message": intent.message,
                "at": intent.at,
            }
            for service_id in service_ids or [None]
        ],
    )
    log.warning("rule %r (team %r): %s", intent.rule_id, intent.team, intent.message)
    if intent.activation_id is not None:
        conn.execute(
            activations.update()
            .where(activations.c.id == intent.activation_id)
            .values(error=intent.message[:2000])
        )
