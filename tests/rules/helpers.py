"""Small builders shared by the rules tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from engine.models import AlertEvent
from rules.validate import Known, TeamKeys

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

KNOWN = Known(
    {
        "platform": TeamKeys(
            services=frozenset({"api", "db", "web", "search"}),
            templates=frozenset({"db-outage", "api-outage"}),
            channels=frozenset({"platform-slack"}),
            sources={"kuma": "uptime-kuma", "am": "alertmanager", "legacy": "generic"},
        )
    }
)


def event(
    status: str = "firing",
    *,
    at: float = 0,
    occurred: float | None = None,
    source: str = "am",
    source_type: str = "alertmanager",
    dedup_key: str = "a1",
    **fields: Any,
) -> AlertEvent:
    """An event received `at` seconds after T0 (its tool time `occurred`, default the same)."""
    received = T0 + timedelta(seconds=at)
    occurred_at = T0 + timedelta(seconds=at if occurred is None else occurred)
    return AlertEvent(
        source=source,
        source_type=source_type,
        dedup_key=dedup_key,
        status=status,
        occurred_at=occurred_at,
        received_at=received,
        **fields,
    )
