"""What real Statuspage v2 responses look like, learnt from the captures in
`../shared/fixtures/statuspage/`: per kind of object (page, status, component, incident,
incident update, affected component, scheduled maintenance) the keys every capture has,
the keys some have, and the JSON types each key takes; and the enum values seen."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.conftest import FIXTURES, need

STATUSPAGE = FIXTURES / "statuspage"

#: Endpoint file prefix -> our path under /api/v2/.
ENDPOINTS = {
    "summary": "summary.json",
    "status": "status.json",
    "components": "components.json",
    "incidents": "incidents.json",
    "incidents-unresolved": "incidents/unresolved.json",
    "scheduled-maintenances": "scheduled-maintenances.json",
    "scheduled-maintenances-upcoming": "scheduled-maintenances/upcoming.json",
    "scheduled-maintenances-active": "scheduled-maintenances/active.json",
}
#: Enum values Statuspage documents beyond those the captures happen to show.
DOCUMENTED = {
    ("component", "status"): {
        "operational",
        "degraded_performance",
        "partial_outage",
        "major_outage",
        "under_maintenance",
    },
    ("incident", "status"): {"investigating", "identified", "monitoring", "resolved", "postmortem"},
    ("incident", "impact"): {"none", "minor", "major", "critical"},
    ("maintenance", "status"): {"scheduled", "in_progress", "verifying", "completed"},
    ("maintenance", "impact"): {"none", "maintenance", "minor", "major", "critical"},
    ("status", "indicator"): {"none", "minor", "major", "critical", "maintenance"},
}
ENUM_KEYS = {
    ("component", "status"),
    ("incident", "status"),
    ("incident", "impact"),
    ("maintenance", "status"),
    ("maintenance", "impact"),
    ("status", "indicator"),
    ("update", "status"),
    ("affected", "old_status"),
    ("affected", "new_status"),
}
TIME_KEYS = {"created_at", "updated_at", "monitoring_at", "resolved_at", "started_at",
             "display_at", "scheduled_for", "scheduled_until"}  # fmt: skip


def json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}[type(value)]  # fmt: skip


@dataclass
class Shape:
    """Everything seen for one kind of object."""

    keysets: list[frozenset[str]] = field(default_factory=list)
    types: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    values: dict[str, set[Any]] = field(default_factory=lambda: defaultdict(set))

    @property
    def required(self) -> frozenset[str]:
        return frozenset.intersection(*self.keysets)

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset.union(*self.keysets)


def walk(doc: dict[str, Any], visit: Any) -> None:
    """Call `visit(kind, obj, where)` for every object of a v2 document."""

    def incidentish(kind: str, obj: dict[str, Any], where: str) -> None:
        visit(kind, obj, where)
        for i, update in enumerate(obj.get("incident_updates") or []):
            visit("update", update, f"{where}.incident_updates[{i}]")
            for j, affected in enumerate(update.get("affected_components") or []):
                visit(
                    "affected", affected, f"{where}.incident_updates[{i}].affected_components[{j}]"
                )
        for i, comp in enumerate(obj.get("components") or []):
            visit("component", comp, f"{where}.components[{i}]")

    visit("document", doc, "$")
    for key, value in doc.items():
        if key == "page":
            visit("page", value, "$.page")
        elif key == "status":
            visit("status", value, "$.status")
        elif key == "components":
            for i, comp in enumerate(value):
                visit("component", comp, f"$.components[{i}]")
        elif key == "incidents":
            for i, inc in enumerate(value):
                incidentish("incident", inc, f"$.incidents[{i}]")
        elif key == "scheduled_maintenances":
            for i, maint in enumerate(value):
                incidentish("maintenance", maint, f"$.scheduled_maintenances[{i}]")


def learn() -> tuple[dict[str, Shape], dict[str, set[frozenset[str]]]]:
    """Shapes per kind over every capture, and the top-level keys per endpoint."""
    need(STATUSPAGE.is_dir(), f"no Statuspage captures at {STATUSPAGE} (set BEACON_SHARED_DIR)")
    shapes: dict[str, Shape] = defaultdict(Shape)
    tops: dict[str, set[frozenset[str]]] = defaultdict(set)
    for path in sorted(STATUSPAGE.glob("*.json")):
        endpoint = path.name.split("__")[0]
        doc = json.loads(path.read_text())
        tops[endpoint].add(frozenset(doc))

        def visit(kind: str, obj: dict[str, Any], where: str) -> None:
            if kind == "document":
                return
            shape = shapes[kind]
            shape.keysets.append(frozenset(obj))
            for key, value in obj.items():
                shape.types[key].add(json_type(value))
                if isinstance(value, str) and (kind, key) in ENUM_KEYS:
                    shape.values[key].add(value)

        walk(doc, visit)
    return shapes, tops


def problems(endpoint: str, doc: dict[str, Any]) -> list[str]:
    """How `doc` (our answer for `endpoint`) differs from the captures; empty when it fits."""
    shapes, tops = learn()
    found: list[str] = []
    if frozenset(doc) not in tops[endpoint]:
        found.append(f"$: keys {sorted(doc)} differ from {[sorted(t) for t in tops[endpoint]]}")

    def visit(kind: str, obj: dict[str, Any], where: str) -> None:
        if kind == "document":
            return
        shape = shapes[kind]
        keys = frozenset(obj)
        if missing := shape.required - keys:
            found.append(f"{where}: missing {sorted(missing)}")
        if extra := keys - shape.allowed:
            found.append(f"{where}: keys Statuspage never sends {sorted(extra)}")
        for key, value in obj.items():
            if key in shape.types and json_type(value) not in shape.types[key]:
                seen = sorted(shape.types[key])
                found.append(f"{where}.{key}: {json_type(value)}, Statuspage sends {seen}")
            if (kind, key) in ENUM_KEYS and value is not None:
                allowed = shape.values[key] | DOCUMENTED.get((kind, key), set())
                if kind in ("update", "affected"):
                    allowed |= (
                        DOCUMENTED[("component", "status")]
                        | DOCUMENTED[("incident", "status")]
                        | DOCUMENTED[("maintenance", "status")]
                    )
                if value not in allowed:
                    found.append(f"{where}.{key}: {value!r} is not one of {sorted(allowed)}")
            if key in TIME_KEYS and isinstance(value, str):
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if parsed.tzinfo is None or "." not in value:
                    found.append(f"{where}.{key}: {value!r} is not Statuspage's time format")

    walk(doc, visit)
    return found
