""" "Why is this service degraded?": the inputs of a service's effective status, explained.

Read-only. `explain` gathers what `engine.status` weighs -- the manual override, open rule
claims (with the activation and alerts behind each), open incidents' impacts, maintenance
in progress -- plus recent status changes and the rule errors of the service's team, and
says which input decides. `beacon why SERVICE` prints it; the admin API serves it as
`GET /api/v1/services/{key}/why`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .errors import NotFoundError
from .models import OPEN_INCIDENT, worst_status
from .tables import (
    activation_alerts,
    activations,
    alert_events,
    alert_sources,
    claims,
    incident_services,
    incidents,
    maintenance_services,
    maintenance_windows,
    rule_errors,
    services,
    status_changes,
    teams,
    utcnow,
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def explain(
    conn: Connection,
    service_key: str,
    *,
    team: str | None = None,
    team_ids: Collection[int] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The explanation of `service_key`'s status (in `team` when given; a key found in
    several teams without `team` is a `NotFoundError` asking for it). `team_ids` limits the
    search to the teams a caller may see (None: all)."""
    now = now or utcnow()
    query = (
        sa.select(services, teams.c.key.label("team_key"))
        .join(teams, teams.c.id == services.c.team_id)
        .where(services.c.key == service_key)
    )
    if team is not None:
        query = query.where(teams.c.key == team)
    if team_ids is not None:
        query = query.where(services.c.team_id.in_(list(team_ids)))
    rows = conn.execute(query).all()
    if not rows:
        raise NotFoundError(f"no service {service_key!r}" + (f" in team {team!r}" if team else ""))
    if len(rows) > 1:
        names = ", ".join(sorted(r.team_key for r in rows))
        raise NotFoundError(f"service {service_key!r} exists in teams {names}: name the team")
    svc = rows[0]
    report: dict[str, Any] = {
        "service": svc.key,
        "name": svc.name,
        "team": svc.team_key,
        "status": svc.status,
        "since": _iso(svc.status_since),
        "override": None,
        "claims": _claims(conn, svc.id),
        "pending": _pending(conn, svc.key, svc.team_id),
        "incidents": _incidents(conn, svc.id),
        "maintenance": _maintenance(conn, svc.id),
        "recent_changes": _changes(conn, svc.id),
        "rule_errors": _errors(conn, svc.id, svc.team_id),
    }
    if svc.override_status and (svc.override_until is None or svc.override_until > now):
        report["override"] = {
            "status": svc.override_status,
            "until": _iso(svc.override_until),
            "reason": svc.override_reason,
            "by": svc.override_by,
        }
    report["because"] = _because(report)
    return report


def _claims(conn: Connection, service_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(
            claims.c.id,
            claims.c.status,
            claims.c.rule_id,
            claims.c.created_at,
            activations.c.id.label("activation_id"),
            activations.c.group_key,
            activations.c.state,
            activations.c.started_at,
        )
        .join(activations, activations.c.id == claims.c.activation_id)
        .where(claims.c.service_id == service_id, claims.c.released_at.is_(None))
        .order_by(claims.c.id)
    ).all()
    result = []
    for row in rows:
        alerts = conn.execute(
            sa.select(
                alert_sources.c.key, activation_alerts.c.dedup_key, activation_alerts.c.firing
            )
            .join(alert_sources, alert_sources.c.id == activation_alerts.c.source_id)
            .where(activation_alerts.c.activation_id == row.activation_id)
            .order_by(activation_alerts.c.id)
        ).all()
        result.append(
            {
                "claim": row.id,
                "status": row.status,
                "rule": row.rule_id,
                "since": _iso(row.created_at),
                "activation": row.activation_id,
                "group": row.group_key,
                "state": row.state,
                "alerts": [
                    {"source": a.key, "dedup_key": a.dedup_key, "firing": a.firing} for a in alerts
                ],
            }
        )
    return result


def _pending(conn: Connection, service_key: str, team_id: int) -> list[dict[str, Any]]:
    """Activations of the service's rules that have not acted yet: a `for` waiting out its
    duration, a `window` waiting for more alerts. Nothing claims the service yet, but the
    operator asking "why is it still green?" should hear that something will."""
    rows = conn.execute(
        sa.select(
            activations.c.id,
            activations.c.rule_id,
            activations.c.group_key,
            activations.c.started_at,
            activations.c.due_at,
            activations.c.spec,
        )
        .where(activations.c.team_id == team_id, activations.c.state == "pending")
        .order_by(activations.c.id)
    ).all()
    result = []
    for row in rows:
        spec = dict(row.spec or {})
        if service_key not in (spec.get("services") or []):
            continue
        firing = conn.execute(
            sa.select(activation_alerts.c.dedup_key)
            .where(
                activation_alerts.c.activation_id == row.id,
                activation_alerts.c.firing.is_(True),
            )
            .order_by(activation_alerts.c.id)
        ).scalars()
        result.append(
            {
                "rule": row.rule_id,
                "activation": row.id,
                "group": row.group_key,
                "since": _iso(row.started_at),
                # A `window` rule counts alerts (`fires`); a `for` rule waits for this time.
                "waits_for": "alerts" if spec.get("fires") else "time",
                "due_at": _iso(row.due_at),
                "firing": list(firing),
            }
        )
    return result


def _incidents(conn: Connection, service_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(
            incidents.c.public_id,
            incidents.c.title,
            incidents.c.status,
            incidents.c.managed_by,
            incident_services.c.impact,
        )
        .join(incident_services, incident_services.c.incident_id == incidents.c.id)
        .where(incident_services.c.service_id == service_id)
        .where(incidents.c.status.in_(OPEN_INCIDENT))
    ).all()
    return [
        {
            "id": r.public_id,
            "title": r.title,
            "status": r.status,
            "impact": r.impact,
            "managed_by": r.managed_by,
        }
        for r in rows
    ]


def _maintenance(conn: Connection, service_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(
            maintenance_windows.c.key, maintenance_windows.c.title, maintenance_windows.c.ends_at
        )
        .join(maintenance_services, maintenance_services.c.window_id == maintenance_windows.c.id)
        .where(maintenance_services.c.service_id == service_id)
        .where(maintenance_windows.c.status == "in_progress")
    ).all()
    return [{"key": r.key, "title": r.title, "ends_at": _iso(r.ends_at)} for r in rows]


def _changes(conn: Connection, service_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(status_changes)
        .where(status_changes.c.service_id == service_id)
        .order_by(status_changes.c.id.desc())
        .limit(5)
    ).all()
    return [
        {
            "at": _iso(r.at),
            "from": r.old_status,
            "to": r.new_status,
            "cause_kind": r.cause_kind,
            "cause": r.cause,
        }
        for r in rows
    ]


def _errors(conn: Connection, service_id: int, team_id: int) -> list[dict[str, Any]]:
    # An error tied to no service (a `service_from` value naming none) is shown for every
    # service of the team whose source sent the event.
    team_event = (
        sa.select(alert_events.c.id)
        .join(alert_sources, alert_sources.c.id == alert_events.c.source_id)
        .where(alert_sources.c.team_id == team_id)
    )
    rows = conn.execute(
        sa.select(rule_errors)
        .where(
            sa.or_(
                rule_errors.c.service_id == service_id,
                sa.and_(rule_errors.c.service_id.is_(None), rule_errors.c.event_id.in_(team_event)),
            )
        )
        .order_by(rule_errors.c.id.desc())
        .limit(10)
    ).all()
    return [
        {"at": _iso(r.at), "rule": r.rule_id, "event": r.event_id, "message": r.message}
        for r in rows
    ]


def _because(report: dict[str, Any]) -> str:
    if report["override"]:
        return f"a manual override sets {report['override']['status']}"
    inputs = [c["status"] for c in report["claims"]] + [i["impact"] for i in report["incidents"]]
    if report["maintenance"]:
        inputs.append("under_maintenance")
    if not inputs:
        waiting = "".join(f"; {_waiting(p)}" for p in report.get("pending") or [])
        return "no claims, open incidents or maintenance: operational" + waiting
    worst = worst_status(inputs)
    reasons = [f"rule {c['rule']} claims {c['status']}" for c in report["claims"]]
    reasons += [f"incident {i['title']!r} has impact {i['impact']}" for i in report["incidents"]]
    reasons += [f"maintenance {m['key']} is in progress" for m in report["maintenance"]]
    return f"{worst}: the worst of " + "; ".join(reasons)


def _waiting(pending: dict[str, Any]) -> str:
    if pending["waits_for"] == "alerts":
        return f"rule {pending['rule']} is pending: it acts when enough alerts fire"
    when = f" at {pending['due_at']}" if pending["due_at"] else ""
    return f"rule {pending['rule']} is pending: it acts{when} if its alert is still firing"


def render_text(report: dict[str, Any]) -> str:
    """A human-readable explanation for the terminal."""
    lines = [
        f"{report['service']} ({report['name']}, team {report['team']}): {report['status']}"
        f" since {report['since']}",
        f"because {report['because']}",
    ]
    for claim in report["claims"]:
        firing = [a["dedup_key"] for a in claim["alerts"] if a["firing"]]
        lines.append(
            f"  claim {claim['status']} by rule {claim['rule']} since {claim['since']}"
            f" (group {claim['group']}, {claim['state']}, firing: {', '.join(firing) or 'none'})"
        )
    for pending in report.get("pending") or []:
        lines.append(
            f"  pending rule {pending['rule']} since {pending['since']}"
            f" (group {pending['group']}, firing: {', '.join(pending['firing']) or 'none'}):"
            f" {_waiting(pending).split(': ', 1)[1]}"
        )
    for incident in report["incidents"]:
        lines.append(
            f"  incident {incident['id']} {incident['title']!r}: {incident['status']},"
            f" impact {incident['impact']} ({incident['managed_by']})"
        )
    for window in report["maintenance"]:
        lines.append(f"  maintenance {window['key']} until {window['ends_at']}")
    for error in report["rule_errors"]:
        lines.append(f"  rule error {error['at']} rule {error['rule']}: {error['message']}")
    return "\n".join(lines)
