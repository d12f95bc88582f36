"""The fault harness's replay (tests/faults/replay.py) finds a store whose statuses or
incidents are not what its event log makes of them; a store that is passes."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from adapters.alert_sources import Delivery, get_adapter
from config import apply_file
from engine import events, migrate, sources
from engine.db import Store, create_store
from engine.settings import Settings
from engine.tables import incident_services, incidents, services
from workers.evaluate import evaluate_partition, rules_runtime

from .cluster import CONFIG, RULES
from .load import Alert, _payload
from .replay import Final, final_state, replay

START = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)


def _config(directory: Path) -> Path:
    (directory / "rules.yaml").write_text(RULES)
    (directory / "beacon.yaml").write_text(CONFIG)
    return directory / "beacon.yaml"


def _deliver(
    store: Store, alert: Alert, status: str, at: datetime, started: datetime | None = None
) -> None:
    with store.read() as conn:
        [source] = sources.find_by_key(conn, alert.source, None, "platform")
    started = started or alert.started or at
    body = _payload(alert, status, started, at if status == "resolved" else None)
    delivery = Delivery(body=orjson.dumps(body), received_at=at)
    parsed = get_adapter("alertmanager").parse(delivery, source.settings)
    events.store_one(store, events.Submission(source, parsed, at))


@pytest.fixture
def logged(tmp_path: Path) -> tuple[Store, Path]:
    """A store whose events were evaluated as Beacon's workers do: api and db have firing
    alerts, web's alert fired and resolved, and a late firing from before that resolve
    (out of order) arrived after it."""
    config = _config(tmp_path)
    settings = Settings(data_dir=tmp_path, secret_key=SecretStr(secrets.token_hex(32)))
    store = create_store(settings)
    migrate.upgrade(store)
    apply_file(store, config)
    api, db, web = Alert("a0", "am2", "api"), Alert("a1", "am1", "db"), Alert("a2", "am2", "web")
    at = START
    for alert in (api, db, web):
        at += timedelta(seconds=1)
        alert.started = at
        _deliver(store, alert, "firing", at)
    _deliver(store, web, "resolved", at + timedelta(seconds=5))
    stale = at + timedelta(seconds=1)
    _deliver(store, web, "firing", stale, started=stale)
    evaluate(store)
    return store, config


def evaluate(store: Store) -> None:
    runtime = rules_runtime(store)
    with store.read() as conn:
        partitions = conn.execute(sa.text("SELECT DISTINCT partition FROM alert_events")).scalars()
        for partition in list(partitions):
            evaluate_partition(store, runtime, partition)


def test_a_store_that_evaluated_its_log_equals_its_replay(
    logged: tuple[Store, Path], tmp_path: Path
) -> None:
    store, config = logged
    got = final_state(store)
    assert got.statuses == {
        "platform/api": "major_outage",
        "platform/db": "major_outage",
        "platform/web": "operational",
    }
    assert got.open == 2 and sum(got.incidents.values()) == 3
    assert got.differences(replay(store, config, tmp_path / "replay")) == []


def _status_changed(conn: sa.Connection) -> None:
    conn.execute(services.update().where(services.c.key == "web").values(status="major_outage"))


def _incident_doubled(conn: sa.Connection) -> None:
    first = conn.execute(sa.select(incidents).order_by(incidents.c.id).limit(1)).one()
    values = {k: v for k, v in first._mapping.items() if k not in ("id", "public_id")}
    made = conn.execute(incidents.insert().values(**values)).inserted_primary_key[0]
    for row in conn.execute(
        sa.select(incident_services).where(incident_services.c.incident_id == first.id)
    ).all():
        conn.execute(
            incident_services.insert().values(
                incident_id=made, service_id=row.service_id, impact=row.impact
            )
        )


def _component_lost(conn: sa.Connection) -> None:
    conn.execute(incident_services.delete())


def _incident_left_open(conn: sa.Connection) -> None:
    conn.execute(
        incidents.update().where(incidents.c.status == "resolved").values(status="investigating")
    )


BREAKS: dict[str, Callable[[sa.Connection], None]] = {
    "a service's status": _status_changed,
    "a duplicate incident": _incident_doubled,
    "an incident's components": _component_lost,
    "an incident's state": _incident_left_open,
}


@pytest.mark.parametrize("broken", sorted(BREAKS))
def test_the_replay_finds_a_store_that_its_log_does_not_explain(
    logged: tuple[Store, Path], tmp_path: Path, broken: str
) -> None:
    store, config = logged
    with store.begin() as conn:
        BREAKS[broken](conn)
    found = final_state(store).differences(replay(store, config, tmp_path / "replay"))
    assert found, f"{broken} was changed and the replay saw nothing"


def test_the_replay_finds_an_event_whose_effects_are_missing(
    logged: tuple[Store, Path], tmp_path: Path
) -> None:
    store, config = logged
    # A late firing for web, stored and marked evaluated, whose effects never happened.
    web = Alert("a2", "am2", "web", started=START + timedelta(minutes=5))
    _deliver(store, web, "firing", START + timedelta(minutes=5))
    with store.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE alert_events SET evaluated_at = received_at, outcome = '{}'"
                " WHERE evaluated_at IS NULL"
            )
        )
    found = final_state(store).differences(replay(store, config, tmp_path / "replay"))
    assert "platform/web: operational (replay major_outage)" in found
    assert "3 incidents (replay 4)" in found


def test_differences_name_what_differs() -> None:
    one = ("Down: a0", "investigating", "major_outage", (("api", "major_outage"),))
    got = Final({"t/api": "operational"}, Counter([one, one]))
    want = Final({"t/api": "major_outage"}, Counter([one]))
    assert got.differences(want) == [
        "t/api: operational (replay major_outage)",
        "2 incidents (replay 1)",
        "extra 'Down: a0' investigating impact major_outage [api major_outage] x1",
    ]
