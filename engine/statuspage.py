"""Statuspage's objects of one page snapshot: component, group, incident, incident update and
scheduled maintenance, with Statuspage's field names, types and enum values.

The one serialiser of these objects. The v2 API (`pages.statuspage_api`) puts them in its
documents and the subscriber webhook (`workers.messages.notices`) in its envelope, as
Atlassian Statuspage's webhooks carry the same incident and component objects as its v2
API: a field added or spelled differently here changes both, so they cannot drift apart.
Times are in the page's time zone with milliseconds, as Statuspage writes them (`Z` on UTC
pages).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, tzinfo
from functools import cached_property
from typing import Any

from .models import component_status
from .pagemodel import (
    Component,
    Group,
    Incident,
    IncidentUpdate,
    Maintenance,
    MaintenanceUpdate,
    PageSnapshot,
)

Json = dict[str, Any]


def timestamp(value: datetime | None, tz: tzinfo) -> str | None:
    """Statuspage's spelling: `2022-02-15T13:37:37.407-08:00`, or `...Z` in UTC."""
    if value is None:
        return None
    text = value.astimezone(tz).isoformat(timespec="milliseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class Objects:
    """Serialises the objects of one snapshot; `url` is the page's public address (custom
    domain, page host or `/p/<slug>` under the base URL)."""

    def __init__(self, snap: PageSnapshot, url: str) -> None:
        self.snap = snap
        self.url = url.rstrip("/")
        self.tz = snap.tz
        self.page_id = snap.page.public_id
        self._times: dict[datetime, str] = {}

    def ts(self, value: datetime | None) -> str | None:
        # The same instants recur (an update's created, updated and display times), and
        # formatting in a zone is the costliest step of a document.
        if value is None:
            return None
        text = self._times.get(value)
        if text is None:
            text = self._times[value] = timestamp(value, self.tz) or ""
        return text

    # --- components -----------------------------------------------------------------------

    def component(self, comp: Component, position: int) -> Json:
        return {
            "id": comp.public_id,
            "name": comp.name,
            "status": component_status(comp.status),
            "created_at": self.ts(comp.created_at),
            "updated_at": self.ts(comp.updated_at),
            "position": position,
            "description": comp.description or None,
            "showcase": not self.snap.page.hide_uptime,
            "start_date": comp.service_created_at.astimezone(self.tz).date().isoformat(),
            "group_id": comp.group_id,
            "page_id": self.page_id,
            "group": False,
            "only_show_if_degraded": False,
        }

    def group(self, group: Group, position: int) -> Json:
        return {
            "id": group.public_id,
            "name": group.name,
            "status": component_status(group.status),
            "created_at": self.ts(group.created_at),
            "updated_at": self.ts(group.updated_at),
            "position": position,
            "description": None,
            "showcase": False,
            "start_date": None,
            "group_id": None,
            "page_id": self.page_id,
            "group": True,
            "only_show_if_degraded": False,
            "components": list(group.component_ids),
        }

    def components(self) -> list[Json]:
        """Every component in page order, each group just before its members; positions
        count from 1 as on Statuspage."""
        return self._components

    @cached_property
    def _components(self) -> list[Json]:
        # Built once per document: incidents and maintenances embed the same objects.
        groups = {g.public_id: g for g in self.snap.groups}
        out: list[Json] = []
        seen: set[str] = set()
        for comp in self.snap.components:
            if comp.group_id and comp.group_id not in seen and comp.group_id in groups:
                seen.add(comp.group_id)
                out.append(self.group(groups[comp.group_id], len(out) + 1))
            out.append(self.component(comp, len(out) + 1))
        # A group with no services on the page still exists as a component.
        for group in self.snap.groups:
            if group.public_id not in seen:
                out.append(self.group(group, len(out) + 1))
        return out

    @cached_property
    def _by_id(self) -> dict[str, Json]:
        return {c["id"]: c for c in self._components}

    def components_by_id(self) -> dict[str, Json]:
        """The objects of `components()` by component id (shared: copy before changing)."""
        return self._by_id

    # --- incidents ------------------------------------------------------------------------

    def incident_update(self, update: IncidentUpdate, incident_id: str) -> Json:
        affected = None
        if update.affected is not None:
            affected = [
                {
                    "code": a.code,
                    "name": a.name,
                    # Never null: a component without an earlier status is shown as
                    # already at its new one (the v2 API's spelling since its first release).
                    "old_status": component_status(a.old_status or a.new_status),
                    "new_status": component_status(a.new_status),
                }
                for a in update.affected
            ]
        return {
            "id": update.public_id,
            "status": str(update.status),
            "body": update.body,
            "incident_id": incident_id,
            "created_at": self.ts(update.created_at),
            "updated_at": self.ts(update.updated_at),
            "display_at": self.ts(update.display_at),
            "affected_components": affected,
            "deliver_notifications": update.deliver_notifications,
            "custom_tweet": None,
            "tweet_id": None,
        }

    def incident(self, incident: Incident, comps: dict[str, Json] | None = None) -> Json:
        """`comps`: `components_by_id()` (the default)."""
        comps = self.components_by_id() if comps is None else comps
        return {
            "id": incident.public_id,
            "name": incident.title,
            "status": str(incident.status),
            "created_at": self.ts(incident.created_at),
            "updated_at": self.ts(incident.updated_at),
            "monitoring_at": self.ts(incident.monitoring_at),
            "resolved_at": self.ts(incident.resolved_at),
            "impact": str(incident.impact),
            "shortlink": f"{self.url}/incidents/{incident.public_id}",
            "started_at": self.ts(incident.started_at),
            "page_id": self.page_id,
            "incident_updates": [
                self.incident_update(u, incident.public_id) for u in incident.updates
            ],
            "components": [comps[cid] for cid in incident.component_ids if cid in comps],
        }

    def incidents(self, found: Iterable[Incident]) -> list[Json]:
        comps = self.components_by_id()
        return [self.incident(i, comps) for i in found]

    # --- scheduled maintenances -----------------------------------------------------------

    @cached_property
    def _names(self) -> dict[str, str]:
        return {c.public_id: c.name for c in self.snap.components}

    def maintenance_update(self, maint: Maintenance, update: MaintenanceUpdate) -> Json:
        # Statuspage shows the components' move into and out of maintenance on each step.
        old, new = {
            "in_progress": ("operational", "under_maintenance"),
            "verifying": ("under_maintenance", "under_maintenance"),
            "completed": ("under_maintenance", "operational"),
        }.get(str(update.status), ("operational", "operational"))
        names = self._names
        return {
            "id": update.public_id,
            "status": str(update.status),
            "body": update.body,
            "incident_id": maint.public_id,
            "created_at": self.ts(update.created_at),
            "updated_at": self.ts(update.created_at),
            "display_at": self.ts(update.display_at),
            "affected_components": [
                {"code": cid, "name": names[cid], "old_status": old, "new_status": new}
                for cid in maint.component_ids
                if cid in names
            ],
            "deliver_notifications": True,
            "custom_tweet": None,
            "tweet_id": None,
        }

    def maintenance(self, maint: Maintenance, comps: dict[str, Json] | None = None) -> Json:
        """`comps`: `components_by_id()` (the default)."""
        comps = self.components_by_id() if comps is None else comps
        return {
            "id": maint.public_id,
            "name": maint.title,
            "status": str(maint.status),
            "created_at": self.ts(maint.created_at),
            "updated_at": self.ts(maint.updated_at),
            "monitoring_at": None,
            "resolved_at": self.ts(maint.completed_at),
            "impact": "maintenance",
            # Maintenances have no permalink page of their own; they show on the page.
            "shortlink": f"{self.url}/#{maint.public_id}",
            "started_at": self.ts(maint.started_at or maint.starts_at),
            "page_id": self.page_id,
            "incident_updates": [self.maintenance_update(maint, u) for u in maint.updates],
            "components": [comps[cid] for cid in maint.component_ids if cid in comps],
            "scheduled_for": self.ts(maint.starts_at),
            "scheduled_until": self.ts(maint.ends_at),
        }

    def maintenances(self, found: Iterable[Maintenance]) -> list[Json]:
        comps = self.components_by_id()
        return [self.maintenance(m, comps) for m in found]
