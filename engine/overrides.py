"""Manual status overrides: an operator's word on a service's status, which wins over rules,
incidents and maintenance until it is cleared or expires (DESIGN.md, "Service").

An expiry is a deadline (`service.override`, keyed by service id), so it fires once, on time,
in whichever process ticks first, and survives restarts. An expired override is ignored by
`engine.status` from the moment it expires; the deadline makes the stored status follow.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from . import crud, deadlines
from .errors import ValidationError
from .models import ServiceStatus
from .status import recompute
from .tables import services, utcnow

#: The deadline kind whose handler (workers.jobs.handle_override_expiry) recomputes the
#: service once its override has expired.
EXPIRY = "service.override"


def set_override(
    conn: Connection,
    service_id: int,
    status: ServiceStatus,
    *,
    until: datetime | None,
    reason: str | None,
    actor: str,
    now: datetime | None = None,
) -> None:
    """Pin the service at `status` (until `until`, if given) and recompute it now; `actor`
    is named on the override, its status change and the audit row."""
    now = now or utcnow()
    if until is not None and until <= now:
        raise ValidationError("until must be in the future", field="until")
    row = crud.row(conn, services, service_id, "service")
    conn.execute(
        services.update()
        .where(services.c.id == service_id)
        .values(
            override_status=ServiceStatus(status),
            override_until=until,
            override_reason=reason,
            override_by=actor,
            updated_at=now,
        )
    )
    if until is None:
        deadlines.cancel(conn, EXPIRY, str(service_id))
    else:
        deadlines.schedule(conn, EXPIRY, str(service_id), until, {"service_id": service_id})
    recompute(
        conn, [service_id], cause_kind="override", cause={"by": actor, "reason": reason}, now=now
    )
    detail = {"status": str(ServiceStatus(status))}
    crud.audit(conn, actor, "override", "service", row.key, team_id=row.team_id, detail=detail)


def clear_override(conn: Connection, service_id: int, *, actor: str) -> None:
    """Remove the override; the service's status comes from its other inputs again."""
    row = crud.row(conn, services, service_id, "service")
    _clear(conn, service_id)
    deadlines.cancel(conn, EXPIRY, str(service_id))
    recompute(conn, [service_id], cause_kind="user", cause={"by": actor, "override": "cleared"})
    crud.audit(conn, actor, "clear override", "service", row.key, team_id=row.team_id)


def _clear(conn: Connection, service_id: int) -> None:
    conn.execute(
        services.update()
        .where(services.c.id == service_id)
        .values(
            override_status=None,
            override_until=None,
            override_reason=None,
            override_by=None,
            updated_at=utcnow(),
        )
    )
