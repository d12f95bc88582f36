"""Incident templates: every write of one, for the admin API and `beacon apply`, and the one
syntax check of their Jinja text (they render in a sandbox when a rule opens an incident).

A template's `services` map names services of its team by key, each with the status the
incident puts on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy.engine import Connection

from . import crud
from .changes import UNSET, Unset, given
from .errors import ValidationError
from .models import IncidentStatus, ServiceStatus
from .tables import incident_templates, services

#: The fields that are Jinja templates.
TEXT_FIELDS = ("title", "message", "resolve_message")


@dataclass(frozen=True)
class TemplateFields:
    """A new incident template of a team."""

    key: str
    title: str
    message: str = ""
    resolve_message: str = ""
    status: IncidentStatus = IncidentStatus.INVESTIGATING
    services: Mapping[str, ServiceStatus] = field(default_factory=dict)


@dataclass(frozen=True)
class TemplateChanges:
    """A change to an incident template; `services` replaces the whole map."""

    title: str | Unset = UNSET
    message: str | Unset = UNSET
    resolve_message: str | Unset = UNSET
    status: IncidentStatus | Unset = UNSET
    services: Mapping[str, ServiceStatus] | Unset = UNSET


def syntax_problem(text: str) -> str | None:
    """What is wrong with `text` as a Jinja template (`line N: message`), or None."""
    try:
        SandboxedEnvironment().parse(text)
    except TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    return None


def create(conn: Connection, team_id: int, fields: TemplateFields, *, actor: str) -> int:
    """Create an incident template in team `team_id`; returns its id."""
    crud.key_free(conn, incident_templates, team_id, fields.key, "incident template")
    values = {
        "title": fields.title,
        "message": fields.message,
        "resolve_message": fields.resolve_message,
        "status": IncidentStatus(fields.status),
        "services": dict(fields.services),
    }
    _check(conn, team_id, values)
    template_id = crud.insert(
        conn, incident_templates, {"team_id": team_id, "key": fields.key, **_stored(values)}
    )
    crud.created(
        conn,
        incident_templates,
        template_id,
        actor,
        "incident template",
        fields.key,
        team_id=team_id,
    )
    return template_id


def update(conn: Connection, template_id: int, changes: TemplateChanges, *, actor: str) -> None:
    """Change an incident template (nothing given: nothing happens)."""
    row = crud.row(conn, incident_templates, template_id, "incident template")
    values = given(changes)
    if not values:
        return
    _check(conn, row.team_id, values)
    crud.update(conn, incident_templates, template_id, _stored(values))
    crud.audit(
        conn,
        actor,
        "update",
        "incident template",
        row.key,
        team_id=row.team_id,
        detail={"fields": sorted(values)},
    )


def delete(conn: Connection, template_id: int, *, actor: str) -> None:
    """Delete an incident template (incidents opened from it stay)."""
    row = crud.row(conn, incident_templates, template_id, "incident template")
    conn.execute(incident_templates.delete().where(incident_templates.c.id == template_id))
    crud.audit(conn, actor, "delete", "incident template", row.key, team_id=row.team_id)


def _check(conn: Connection, team_id: int, values: Mapping[str, Any]) -> None:
    for name in TEXT_FIELDS:
        if values.get(name) and (problem := syntax_problem(values[name])):
            raise ValidationError(f"template syntax: {problem}", field=name)
    keys = list(values.get("services") or {})
    if keys:
        found = set(
            conn.execute(
                sa.select(services.c.key).where(
                    services.c.team_id == team_id, services.c.key.in_(keys)
                )
            ).scalars()
        )
        if missing := [k for k in keys if k not in found]:
            raise ValidationError(
                f"no service {missing[0]!r} in this team", field=f"services.{missing[0]}"
            )


def _stored(values: Mapping[str, Any]) -> dict[str, Any]:
    stored = dict(values)
    if "status" in stored:
        stored["status"] = str(stored["status"])
    if "services" in stored:
        stored["services"] = {k: str(v) for k, v in stored["services"].items()}
    return stored
