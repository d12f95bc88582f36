"""Rules belong to the teams of the file that declares them (issue 19, item 1): applying one
team's file never changes another team's rules, and the plan names every rule it adds,
changes or removes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from config import apply_file
from engine.db import Store
from engine.errors import ConfigError
from engine.tables import alert_events, alert_sources, rule_sets, services, teams
from tests.conftest import ROOT
from tests.rules.helpers import event
from tests.rules.store_helpers import ingest
from workers.evaluate import evaluate_partition, rules_runtime

# A second team with its own file, its own source (the same key as the example's: keys are
# unique within a team) and its own rules directory.
ACME = """\
teams:
  - {key: acme, name: ACME}
services:
  - {key: portal, name: Customer Portal, team: acme}
alert_sources:
  - {key: uptime-kuma, name: ACME Kuma, type: uptime-kuma, team: acme,
     integration_key: acme-uptime-kuma-key}
rules: [rules/*.yaml]
"""

# Sorted after the example's `rules/uptime.yaml`: were the example's rules to hear ACME's
# source, its `tagged-monitor-down` would match first and set only partial_outage.
ACME_RULES = """\
version: 1
rules:
  - id: portal-down
    match: {source: uptime-kuma, labels.monitor_name: Portal}
    services: [portal]
    then:
      - set_status: major_outage
"""


def _files(tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(ROOT / "examples", tmp_path / "northwind")
    acme = tmp_path / "acme"
    (acme / "rules").mkdir(parents=True)
    (acme / "beacon.yaml").write_text(ACME)
    (acme / "rules" / "watch.yaml").write_text(ACME_RULES)
    return tmp_path / "northwind" / "beacon.yaml", acme / "beacon.yaml"


def _source_id(store: Store, team: str, key: str) -> int:
    with store.read() as conn:
        return int(
            conn.execute(
                sa.select(alert_sources.c.id)
                .join(teams, teams.c.id == alert_sources.c.team_id)
                .where(teams.c.key == team, alert_sources.c.key == key)
            ).scalar_one()
        )


def _status(store: Store, team: str, key: str) -> str:
    with store.read() as conn:
        return str(
            conn.execute(
                sa.select(services.c.status)
                .join(teams, teams.c.id == services.c.team_id)
                .where(teams.c.key == team, services.c.key == key)
            ).scalar_one()
        )


def _fire(store: Store, team: str, dedup_key: str, **labels: str) -> list[str]:
    """A firing event from `team`'s Uptime Kuma source, evaluated; the rules it matched."""
    partition = f"{team}:uptime-kuma"
    source_id = _source_id(store, team, "uptime-kuma")
    (event_id,) = ingest(
        store,
        source_id,
        event(source="uptime-kuma", source_type="uptime-kuma", dedup_key=dedup_key, labels=labels),
        partition=partition,
    )
    evaluate_partition(store, rules_runtime(store), partition)
    with store.read() as conn:
        outcome = conn.execute(
            sa.select(alert_events.c.outcome).where(alert_events.c.id == event_id)
        ).scalar_one()
    return list(outcome["matched"])


def _both_teams_rules_in_force(store: Store) -> None:
    assert _fire(store, "platform", "p1", **{"tag.service": "db"}) == ["tagged-monitor-down"]
    assert _status(store, "platform", "db") == "partial_outage"
    assert _fire(store, "acme", "a1", monitor_name="Portal", **{"tag.service": "portal"}) == [
        "portal-down"
    ]
    assert _status(store, "acme", "portal") == "major_outage"


@pytest.mark.parametrize("order", ["example first", "acme first"])
def test_two_teams_files_keep_both_teams_rules_in_force(
    store: Store, tmp_path: Path, order: str
) -> None:
    example, acme = _files(tmp_path)
    first, second = (example, acme) if order == "example first" else (acme, example)
    apply_file(store, first)
    plan = apply_file(store, second)
    created = {c.key for c in plan.changes if c.kind == "rule" and c.action == "create"}
    assert created == ({"portal-down"} if second == acme else _example_rule_ids())
    assert not [c for c in plan.changes if c.kind == "rule" and c.action != "create"]
    # Re-applying the first file changes no rule of either team.
    again = apply_file(store, first)
    assert not [c for c in again.changes if c.kind in ("rule", "rule set")]
    _both_teams_rules_in_force(store)


def _example_rule_ids() -> set[str]:
    import yaml

    return {
        rule["id"]
        for path in (ROOT / "examples" / "rules").glob("*.yaml")
        for rule in yaml.safe_load(path.read_text())["rules"]
    }


def test_the_plan_names_every_rule_it_adds_changes_or_removes(store: Store, tmp_path: Path) -> None:
    example, acme = _files(tmp_path)
    apply_file(store, example)
    apply_file(store, acme)
    rules = tmp_path / "acme" / "rules"
    (rules / "watch.yaml").write_text(
        ACME_RULES.replace("major_outage", "partial_outage")
        + "  - id: portal-slow\n    match: {source: uptime-kuma}\n    services: [portal]\n"
        "    then: [{set_status: degraded}]\n"
    )
    plan = apply_file(store, acme, dry_run=True)
    lines = plan.render().splitlines()
    assert "  ~ update rule portal-down (then changed)" in lines
    assert "  + create rule portal-slow (rules/watch.yaml)" in lines
    (rules / "watch.yaml").write_text("version: 1\nrules: []\n")
    plan = apply_file(store, acme)
    assert [(c.action, c.kind, c.key) for c in plan.changes] == [
        ("delete", "rule", "portal-down"),
        ("create", "rule set", "version 3"),
    ]
    assert "  - delete rule portal-down" in plan.render().splitlines()
    # The example's rules were never touched.
    assert _fire(store, "platform", "p1", **{"tag.service": "db"}) == ["tagged-monitor-down"]


def test_a_rule_id_of_another_team_is_refused_with_both_places(
    store: Store, tmp_path: Path
) -> None:
    example, acme = _files(tmp_path)
    apply_file(store, example)
    (tmp_path / "acme" / "rules" / "watch.yaml").write_text(
        ACME_RULES.replace("portal-down", "api-down")
    )
    with pytest.raises(ConfigError) as caught:
        apply_file(store, acme)
    message = str(caught.value)
    assert f"{tmp_path / 'acme'}/rules/watch.yaml:3:9: rule 'api-down': rule id already used" in (
        message
    )
    assert "team platform (rules/uptime.yaml:" in message


def test_rules_of_a_file_hear_only_the_sources_of_its_teams(store: Store, tmp_path: Path) -> None:
    """A rule naming another team's source is an unknown source: it could never hear it."""
    example, acme = _files(tmp_path)
    apply_file(store, example)
    (tmp_path / "acme" / "rules" / "watch.yaml").write_text(
        ACME_RULES.replace("source: uptime-kuma", "source: alertmanager")
    )
    with pytest.raises(ConfigError, match="rule 'portal-down': unknown source 'alertmanager'"):
        apply_file(store, acme)


def test_same_rule_file_names_in_two_teams_are_both_kept(store: Store, tmp_path: Path) -> None:
    example, acme = _files(tmp_path)
    (tmp_path / "acme" / "rules" / "watch.yaml").rename(tmp_path / "acme" / "rules" / "uptime.yaml")
    apply_file(store, example)
    apply_file(store, acme)
    with store.read() as conn:
        row = conn.execute(
            sa.select(rule_sets.c.files, rule_sets.c.owners).order_by(rule_sets.c.version.desc())
        ).first()
    assert row is not None
    assert row.owners["rules/uptime.yaml"] == ["platform"]
    assert row.owners["acme/rules/uptime.yaml"] == ["acme"]
    _both_teams_rules_in_force(store)


def test_a_file_with_rules_but_no_team_is_refused(store: Store, tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yaml").write_text("version: 1\nrules: []\n")
    path = tmp_path / "beacon.yaml"
    path.write_text("rules: [rules/*.yaml]\n")
    with pytest.raises(ConfigError, match=r"beacon.yaml:1:\d+: rules belong to the teams"):
        apply_file(store, path)


def test_a_file_added_in_the_web_ui_hears_every_team_and_outlives_applies(
    store: Store, tmp_path: Path
) -> None:
    from engine import rulesets
    from rules.validate import digest

    example, acme = _files(tmp_path)
    apply_file(store, example)
    with store.begin() as conn:
        found = rulesets.in_force(conn)
        files = {**found.files, "ui/extra.yaml": ACME_RULES.replace("portal-down", "ui-rule")}
        rulesets.publish(
            conn, files, digest(files, found.owners), actor="test", owners=found.owners
        )
    plan = apply_file(store, acme)
    assert not [c for c in plan.changes if c.kind == "rule" and c.action == "delete"]
    with store.read() as conn:
        kept = rulesets.in_force(conn)
    assert "ui/extra.yaml" in kept.files and "ui/extra.yaml" not in (kept.owners or {})
    _both_teams_rules_in_force(store)
