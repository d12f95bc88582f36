"""What a rule's `notify` action says in a team channel: enough to act on without opening
Beacon, and a link for when one does.

    *Firing: Public API (api-down)*
    [Public API] [Down] timeout of 16000ms exceeded
    Incident: Public API unavailable
    http://beacon.example/p/northwind-internal/incidents/5d34v5z0grp7

The link is a path here (`RuleMessage.path`): the worker that sends it knows the base URL.
It is the activation's incident on a page of the team that shows it, else that page; a
private page first, since a team channel is read by the team.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .tables import activations, incidents, page_services, services, status_pages


@dataclass(frozen=True)
class RuleMessage:
    subject: str
    text: str
    #: Where to look, as a path on Beacon's own host ("" when no page shows the services).
    path: str
    services: list[str]


def rule_message(
    conn: Connection, team_id: int, rule_id: str, state: str, activation_id: Any, summary: str
) -> RuleMessage:
    """The message of rule `rule_id`'s notify action for `state` (`firing`...)."""
    spec: dict[str, Any] = {}
    incident = None
    if activation_id is not None:
        row = conn.execute(
            sa.select(activations.c.spec, activations.c.incident_id).where(
                activations.c.id == activation_id
            )
        ).first()
        if row is not None:
            spec = dict(row.spec or {})
            if row.incident_id is not None:
                incident = conn.execute(
                    sa.select(incidents.c.public_id, incidents.c.title).where(
                        incidents.c.id == row.incident_id
                    )
                ).first()
    keys = [str(k) for k in spec.get("services") or []]
    found = (
        conn.execute(
            sa.select(services.c.id, services.c.key, services.c.name).where(
                services.c.team_id == team_id, services.c.key.in_(keys)
            )
        ).all()
        if keys
        else []
    )
    by_key = {r.key: r for r in found}
    names = [by_key[k].name for k in keys if k in by_key]
    subject = f"{state.capitalize()}: {', '.join(names) or 'no service'} ({rule_id})"
    lines = [summary] if summary else []
    if incident is not None:
        lines.append(f"Incident: {incident.title}")
    slug = _page_slug(conn, [r.id for r in found])
    path = ""
    if slug:
        path = f"/p/{slug}/incidents/{incident.public_id}" if incident else f"/p/{slug}/"
    return RuleMessage(subject, "\n".join(lines), path, names)


def _page_slug(conn: Connection, service_ids: list[int]) -> str | None:
    if not service_ids:
        return None
    return conn.execute(
        sa.select(status_pages.c.slug)
        .join(page_services, page_services.c.page_id == status_pages.c.id)
        .where(page_services.c.service_id.in_(service_ids), status_pages.c.active.is_(True))
        # "private" sorts before "public": the team's own page first.
        .order_by(status_pages.c.type, status_pages.c.id)
        .limit(1)
    ).scalar()
