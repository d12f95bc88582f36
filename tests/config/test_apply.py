"""`beacon apply`: idempotence, field-level plans, prune scope, errors that write nothing."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from config import apply_file
from engine import sources
from engine.db import Store
from engine.errors import ConfigError
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import (
    alert_sources,
    assets,
    audit_log,
    deadlines,
    outbox,
    page_services,
    rule_sets,
    services,
    status_pages,
    teams,
)
from tests.rules.store_helpers import firing_count, stored_activation

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "beacon.yaml"

TWO_TEAMS = """\
teams:
  - {key: platform}
  - {key: acme, private: true}
services:
  - {key: api, name: Public API, group: Core, team: platform}
  - {key: db, name: Database, group: Core, team: platform}
  - {key: portal, name: Portal, team: acme}
status_pages:
  - {slug: acme, name: ACME, teams: [platform], services: [api, db]}
"""


def write(tmp_path: Path, text: str, name: str = "beacon.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def count(store: Store, table: sa.Table) -> int:
    with store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def service_keys(store: Store) -> set[tuple[str, str]]:
    with store.read() as conn:
        rows = conn.execute(
            sa.select(teams.c.key, services.c.key).join(teams, teams.c.id == services.c.team_id)
        ).all()
    return {(t, s) for t, s in rows}


def example_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path / "examples" / "beacon.yaml"


def test_second_apply_of_the_example_reports_no_change(store: Store, tmp_path: Path) -> None:
    first = apply_file(store, EXAMPLE)
    assert first.changed
    assert {c.kind for c in first.changes} >= {"team", "service", "status page", "alert source"}
    second = apply_file(store, EXAMPLE)
    assert not second.changed
    assert "no changes" in second.render()


def test_every_outbox_row_the_example_makes_has_a_handler_that_takes_it(
    store: Store, settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    # `rules.changed` once had none: every `make run` logged an error and gave the row up.
    from engine.runtime import install
    from rules.runtime import RuleRuntime
    from workers.dispatch import dispatch_once

    apply_file(store, EXAMPLE)
    rt = make_runtime(settings, store=store)
    install(rt)
    for _ in range(10):
        if not dispatch_once(rt):
            break
        rt.queues.worker().work(burst=True, logging_level="WARNING")
    with store.read() as conn:
        left = conn.execute(
            sa.select(outbox.c.kind, outbox.c.error).where(outbox.c.done_at.is_(None))
        ).all()
    assert left == []
    book = rt.part(RuleRuntime).book
    assert book is not None and book.version == 1  # compiled by the rules.changed job


def test_a_changed_field_is_an_update_of_that_field(store: Store, tmp_path: Path) -> None:
    path = example_copy(tmp_path)
    apply_file(store, path)
    path.write_text(path.read_text().replace("name: Database,", "name: Primary Database,"))
    plan = apply_file(store, path)
    assert [(c.action, c.kind, c.key) for c in plan.changes] == [
        ("update", "service", "platform/db")
    ]
    assert plan.changes[0].fields == {"name": ("Database", "Primary Database")}
    assert "name: 'Database' -> 'Primary Database'" in plan.render()


def test_prune_deletes_a_removed_service_and_dry_run_only_prints(
    store: Store, tmp_path: Path
) -> None:
    path = example_copy(tmp_path)
    apply_file(store, path)
    text = path.read_text()
    text = text.replace(
        "  - {key: webhooks, name: Outbound Webhooks, group: Integrations, team: platform}\n", ""
    )
    text = text.replace("auth, email, webhooks]", "auth, email]")
    text = text.replace("search, email, webhooks]", "search, email]")
    path.write_text(text)

    dry = apply_file(store, path, prune=True, dry_run=True)
    assert ("delete", "service", "platform/webhooks") in [
        (c.action, c.kind, c.key) for c in dry.changes
    ]
    assert "dry run" in dry.render()
    assert ("platform", "webhooks") in service_keys(store)

    without_prune = apply_file(store, path)
    assert "delete" not in {c.action for c in without_prune.changes}
    assert ("platform", "webhooks") in service_keys(store)

    pruned = apply_file(store, path, prune=True)
    assert ("delete", "service", "platform/webhooks") in [
        (c.action, c.kind, c.key) for c in pruned.changes
    ]
    assert ("platform", "webhooks") not in service_keys(store)
    assert not apply_file(store, path, prune=True).changed


def test_a_misspelt_field_names_file_and_line_and_writes_nothing(
    store: Store, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "teams:\n  - {key: platform}\nservices:\n  - key: api\n    name: API\n"
        "    team: platform\n    gruop: Core\n",
    )
    with pytest.raises(ConfigError) as caught:
        apply_file(store, path)
    assert f"{path}:7:5: unknown field 'gruop'" in str(caught.value)
    assert count(store, teams) == 0
    assert count(store, services) == 0


def test_every_error_is_listed_at_once(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "services:\n  - {key: api, name: API, team: nope, stauts: x}\n"
        "status_pages:\n  - {slug: Bad Slug, name: P, teams: [nope]}\n",
    )
    with pytest.raises(ConfigError) as caught:
        apply_file(store, path)
    message = str(caught.value)
    assert f"{path}:2:39: unknown field 'stauts'" in message
    assert f"{path}:4:6:" in message and "slug" in message


def test_a_prune_by_one_teams_file_leaves_another_team_alone(store: Store, tmp_path: Path) -> None:
    apply_file(store, write(tmp_path, TWO_TEAMS, "all.yaml"))
    platform_only = """\
teams:
  - {key: platform}
services:
  - {key: api, name: Public API, group: Core, team: platform}
status_pages:
  - {slug: acme, name: ACME, teams: [platform], services: [api]}
"""
    plan = apply_file(store, write(tmp_path, platform_only, "platform.yaml"), prune=True)
    assert [(c.action, c.key) for c in plan.changes if c.action == "delete"] == [
        ("delete", "platform/db")
    ]
    assert service_keys(store) == {("platform", "api"), ("acme", "portal")}
    assert count(store, teams) == 2


def test_prune_leaves_kinds_the_file_does_not_declare(store: Store, tmp_path: Path) -> None:
    apply_file(store, write(tmp_path, TWO_TEAMS, "all.yaml"))
    only_teams = "teams:\n  - {key: platform}\n  - {key: acme, private: true}\n"
    plan = apply_file(store, write(tmp_path, only_teams, "teams.yaml"), prune=True)
    assert not plan.changed
    assert len(service_keys(store)) == 3


def test_a_reference_to_another_teams_service_is_an_error(store: Store, tmp_path: Path) -> None:
    text = TWO_TEAMS + (
        "incident_templates:\n"
        "  - {key: down, team: acme, title: Down, services: {api: major_outage}}\n"
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        apply_file(store, path)
    assert "service 'api' is not in team 'acme'" in str(caught.value)
    assert f"{path}:11:53:" in str(caught.value)
    assert count(store, teams) == 0


def test_an_unknown_service_reference_is_an_error(store: Store, tmp_path: Path) -> None:
    text = TWO_TEAMS.replace("services: [api, db]", "services: [api, cache]")
    with pytest.raises(ConfigError, match="unknown service 'cache' in team 'platform'"):
        apply_file(store, write(tmp_path, text))


def test_component_ids_stay_the_same_across_applies(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, TWO_TEAMS)
    apply_file(store, path)
    with store.read() as conn:
        before = dict(
            conn.execute(sa.select(page_services.c.service_id, page_services.c.public_id)).all()
        )
    reordered = TWO_TEAMS.replace("services: [api, db]", "services: [db, api]").replace(
        "group: Core, team: platform}\n  - {key: db", "group: Edge, team: platform}\n  - {key: db"
    )
    plan = apply_file(store, write(tmp_path, reordered))
    assert plan.changed
    with store.read() as conn:
        after = dict(
            conn.execute(sa.select(page_services.c.service_id, page_services.c.public_id)).all()
        )
        positions = conn.execute(
            sa.select(services.c.key, page_services.c.position).join(
                services, services.c.id == page_services.c.service_id
            )
        ).all()
    assert before == after
    assert dict(positions) == {"db": 0, "api": 1}


def test_a_generated_integration_key_is_printed_and_kept(store: Store, tmp_path: Path) -> None:
    text = (
        TWO_TEAMS + "alert_sources:\n  - {key: am, name: AM, type: alertmanager, team: platform}\n"
    )
    path = write(tmp_path, text)
    first = apply_file(store, path, base_url="http://beacon.test")
    found = re.search(r"http://beacon\.test/api/v1/events/(\S+)", first.render())
    assert found is not None
    key = found[1]
    assert len(key) >= 32
    second = apply_file(store, path)
    assert not second.changed
    # Printed once: the store keeps the key's digest, and a second apply cannot show it.
    assert key not in second.render()
    with store.read() as conn:
        source = sources.find_by_integration_key(conn, key)
        assert source is not None and source.key == "am"
        assert key not in str(conn.execute(sa.select(alert_sources)).one())


def test_an_unknown_alert_source_type_is_an_error(store: Store, tmp_path: Path) -> None:
    text = TWO_TEAMS + "alert_sources:\n  - {key: x, name: X, type: nagios, team: platform}\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=r":11:23: unknown alert source type 'nagios'"):
        apply_file(store, path)


def test_a_rate_limit_above_a_million_events_is_an_error(store: Store, tmp_path: Path) -> None:
    text = TWO_TEAMS + (
        "alert_sources:\n  - {key: am, name: AM, type: alertmanager, team: platform, "
        "rate_limit: 1000001/s}\n"
    )
    with pytest.raises(
        ConfigError,
        match=r":11:61: alert_sources.0.rate_limit: '1000001/s' is not a rate limit: N/s, N/m "
        r"or N/h with N from 1 to 1000000, such as 50/s",
    ):
        apply_file(store, write(tmp_path, text))
    apply_file(store, write(tmp_path, text.replace("1000001/s", "1000000/s")))


def test_secrets_are_never_printed(store: Store, tmp_path: Path) -> None:
    text = TWO_TEAMS + (
        "alert_sources:\n  - {key: g, name: G, type: grafana, team: platform, "
        "signing_secret: first-secret}\n"
    )
    path = write(tmp_path, text)
    apply_file(store, path)
    plan = apply_file(store, write(tmp_path, text.replace("first-secret", "second-secret")))
    rendered = plan.render()
    assert "signing_secret: changed" in rendered
    assert "first-secret" not in rendered and "second-secret" not in rendered


def test_logo_and_favicon_are_checked_and_stored_once(store: Store, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples" / "assets", tmp_path / "assets")
    text = TWO_TEAMS.replace(
        "services: [api, db]}",
        "services: [api, db], logo: assets/logo.png, favicon: assets/favicon.ico}",
    )
    text += "  - {slug: other, name: O, teams: [platform], logo: assets/logo.png}\n"
    apply_file(store, write(tmp_path, text))
    assert count(store, assets) == 2
    (tmp_path / "assets" / "bad.png").write_text("not a picture")
    bad = text.replace("logo: assets/logo.png, favicon", "logo: assets/bad.png, favicon")
    path = write(tmp_path, bad)
    with pytest.raises(ConfigError, match=r":9:70: logo file is not a known image type"):
        apply_file(store, path)
    with pytest.raises(ConfigError, match="cannot read logo file"):
        apply_file(
            store, write(tmp_path, text.replace("assets/logo.png, favicon", "missing.png, favicon"))
        )


def test_page_type_is_fixed_once_activated(store: Store, tmp_path: Path) -> None:
    apply_file(store, write(tmp_path, TWO_TEAMS))
    changed = TWO_TEAMS.replace(
        "teams: [platform], services", "type: private, teams: [platform], services"
    )
    with pytest.raises(ConfigError, match="type is fixed once activated"):
        apply_file(store, write(tmp_path, changed))


def test_duplicate_keys_in_the_yaml_are_errors(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "teams:\n  - key: a\n    key: b\n")
    with pytest.raises(ConfigError, match=rf"{path}:3:5: duplicate key 'key'"):
        apply_file(store, path)


def test_a_rule_change_stores_a_new_rule_set_version(store: Store, tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yaml").write_text("version: 1\nrules: []\n")
    path = write(tmp_path, TWO_TEAMS + "rules: [rules/*.yaml]\n")
    plan = apply_file(store, path)
    assert ("create", "rule set", "version 1") in [(c.action, c.kind, c.key) for c in plan.changes]
    assert not apply_file(store, path).changed
    (tmp_path / "rules" / "b.yaml").write_text("version: 1\nrules: []\n")
    apply_file(store, path)
    with store.read() as conn:
        rows = conn.execute(sa.select(rule_sets).order_by(rule_sets.c.version)).all()
        kinds = conn.execute(sa.select(outbox.c.kind, outbox.c.payload)).all()
    assert [r.version for r in rows] == [1, 2]
    assert rows[1].files == {
        "rules/a.yaml": "version: 1\nrules: []\n",
        "rules/b.yaml": "version: 1\nrules: []\n",
    }
    assert ("rules.changed", {"version": 2}) in [(k, p) for k, p in kinds]


def test_every_change_is_audited_and_marks_pages_dirty(store: Store, tmp_path: Path) -> None:
    plan = apply_file(store, write(tmp_path, TWO_TEAMS))
    with store.read() as conn:
        actors = conn.execute(sa.select(audit_log.c.actor, audit_log.c.object_key)).all()
        dirty = (
            conn.execute(sa.select(outbox.c.payload).where(outbox.c.kind == "pages.dirty"))
            .scalars()
            .all()
        )
        page_id = conn.execute(sa.select(status_pages.c.id)).scalar_one()
    assert len(actors) == len(plan.changes)
    assert {a for a, _ in actors} == {"apply:beacon.yaml"}
    assert any(page_id in p.get("page_ids", []) for p in dirty)


def test_the_cli_applies_twice_and_prints_no_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    monkeypatch.setenv("BEACON_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("BEACON_DATABASE_URL", raising=False)
    assert main(["apply", str(EXAMPLE)]) == 0
    first = capsys.readouterr().out
    assert "/p/northwind/" in first and "/api/v1/events/" in first
    assert main(["apply", str(EXAMPLE)]) == 0
    assert "no changes" in capsys.readouterr().out
    bad = write(tmp_path, "teams:\n  - {key: x, nmae: y}\n")
    assert main(["apply", str(bad)]) == 2
    assert f"{bad}:2:14: unknown field 'nmae'" in capsys.readouterr().err


def test_a_maintenance_window_is_scheduled_changed_and_pruned(store: Store, tmp_path: Path) -> None:
    window = (
        "maintenance_windows:\n"
        "  - {key: upgrade, team: platform, services: [db], start: 2099-01-01T22:00:00Z,\n"
        "     end: 2099-01-02T01:00:00Z, message: Upgrade}\n"
    )
    path = write(tmp_path, TWO_TEAMS + window)
    apply_file(store, path)
    with store.read() as conn:
        due = conn.execute(sa.select(deadlines.c.kind, deadlines.c.due_at)).all()
    assert [(k, d.year) for k, d in due] == [("maintenance.start", 2099)]
    moved = apply_file(store, write(tmp_path, TWO_TEAMS + window.replace("01T22", "01T23")))
    assert [c.fields.get("start", ("", ""))[1] for c in moved.changes] == [
        datetime(2099, 1, 1, 23, tzinfo=UTC)
    ]
    pruned = apply_file(store, write(tmp_path, TWO_TEAMS + "maintenance_windows: []\n"), prune=True)
    assert [(c.action, c.kind) for c in pruned.changes] == [("delete", "maintenance window")]
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(deadlines)).scalar_one() == 0


def test_bad_yaml_is_reported_with_its_position(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "teams:\n  - {key: a\n")
    with pytest.raises(ConfigError, match=rf"{path}:3:1: invalid YAML"):
        apply_file(store, path)


def test_inserting_a_service_reports_only_that_service(store: Store, tmp_path: Path) -> None:
    apply_file(store, write(tmp_path, TWO_TEAMS))
    inserted = TWO_TEAMS.replace(
        "services:\n", "services:\n  - {key: cdn, name: CDN, team: platform}\n", 1
    )
    plan = apply_file(store, write(tmp_path, inserted))
    assert [(c.action, c.key) for c in plan.changes] == [("create", "platform/cdn")]
    moved = inserted.replace("name: CDN, team", "name: CDN, position: 7, team")
    plan = apply_file(store, write(tmp_path, moved))
    assert plan.changes[0].fields == {"position": (0, 7)}


def test_a_broken_rule_file_is_an_error_and_nothing_is_written(
    store: Store, tmp_path: Path
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bad.yaml").write_text("version: 1\nrules: [\n")
    path = write(tmp_path, TWO_TEAMS + "rules: [rules/*.yaml]\n")
    with pytest.raises(ConfigError, match=r"rules/bad\.yaml:\d+:\d+"):
        apply_file(store, path)
    assert count(store, teams) == 0
    assert count(store, rule_sets) == 0


def test_a_rules_glob_outside_the_config_directory_is_an_error(
    store: Store, tmp_path: Path
) -> None:
    path = write(tmp_path, TWO_TEAMS + "rules: [../*.yaml]\n")
    with pytest.raises(ConfigError, match="must stay inside the config file's directory"):
        apply_file(store, path)


DESIGN_SAMPLE = """\
teams:
  - {key: platform}
  - {key: acme, private: true}
services:
  - {key: api, name: Public API, group: Core, team: platform, description: REST and GraphQL}
  - {key: db, name: Database, group: Core, team: platform}
alert_sources:
  - {key: kuma, name: Uptime Kuma, type: uptime-kuma, team: platform,
     integration_key: kuma-secret-123}
  - {key: am, name: Prometheus Alertmanager, type: alertmanager, team: platform, rate_limit: 50/s}
  - {key: graf, name: Grafana, type: grafana, team: platform, signing_secret: s3cret,
     settings: {timestamp_header: X-Grafana-Alerting-Timestamp}}
  - key: legacy
    name: In-house monitor
    type: generic
    team: platform
    enabled: true
    settings:                   # JMESPath over the JSON body
      alerts: "checks[]"        # optional: one event per element
      status: "state == 'DOWN' && 'firing' || 'resolved'"
      dedup_key: "id"
      severity: "'critical'"
      summary: "message"
      labels: "{host: host, check: name}"
channels:
  - {key: platform-slack, team: platform, type: slack, url: https://hooks.slack.example/T000/B000/hook}
incident_templates:
  - key: db-outage
    team: platform
    title: "Database degraded: {{ event.summary }}"
    message: "We are investigating elevated errors on {{ service.name }}."
    resolve_message: "The database has recovered."
    status: investigating
    services: {db: major_outage}
maintenance_windows:
  - {key: db-upgrade, team: platform, services: [db], start: 2026-12-01T22:00:00Z,
     end: 2026-12-02T02:00:00Z, message: "Database upgrade", notify: true, on_end: replay}
status_pages:
  - slug: acme
    name: ACME Status
    type: public
    teams: [platform]
    services: [api, db]
    time_zone: Europe/Berlin
    custom_domain: status.acme.test
    logo: assets/logo.png
    favicon: assets/favicon.ico
    active: true
"""


def test_the_design_documents_sample_applies_twice(store: Store, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples" / "assets", tmp_path / "assets")
    path = write(tmp_path, DESIGN_SAMPLE)
    first = apply_file(store, path)
    assert len(first.changes) == 12
    assert "kuma-secret-123" in first.render()  # the webhook URL, printed on purpose
    assert not apply_file(store, path).changed


def test_generic_adapter_settings_are_checked_where_they_are(store: Store, tmp_path: Path) -> None:
    text = TWO_TEAMS + (
        "alert_sources:\n"
        "  - key: legacy\n"
        "    name: Legacy\n"
        "    type: generic\n"
        "    team: platform\n"
        "    settings:\n"
        '      status: "state =="\n'
        "      dedup: id\n"
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        apply_file(store, path)
    message = str(caught.value)
    assert f"{path}:16:7: settings.status: " in message and "JMESPath" in message
    assert f"{path}:17:7: settings.dedup: unknown field" in message
    assert f"{path}:15:5: settings.dedup_key: Field required" in message


def test_anchors_and_merge_keys_shorten_a_file(store: Store, tmp_path: Path) -> None:
    text = (
        "x-core: &core {team: platform, group: Core}\n"
        "teams: [{key: platform}]\n"
        "services:\n"
        "  - {<<: *core, key: api, name: API}\n"
        "  - {<<: *core, key: cdn, name: CDN, group: Edge}\n"
    )
    apply_file(store, write(tmp_path, text))
    with store.read() as conn:
        groups = dict(conn.execute(sa.select(services.c.key, services.c.group_name)).all())
    assert groups == {"api": "Core", "cdn": "Edge"}


def test_team_members_are_declared_by_email(store: Store, tmp_path: Path) -> None:
    from engine.accounts import create_user

    create_user(store, "ana@example.com", role="stakeholder")
    create_user(store, "bo@example.com", role="responder")
    text = "teams:\n  - {key: acme, private: true, members: [Ana@example.com]}\n"
    apply_file(store, write(tmp_path, text))
    assert not apply_file(store, write(tmp_path, text)).changed
    both = text.replace("[Ana@example.com]", "[ana@example.com, bo@example.com]")
    plan = apply_file(store, write(tmp_path, both))
    assert plan.changes[0].fields == {
        "members": (["ana@example.com"], ["ana@example.com", "bo@example.com"])
    }
    path = write(tmp_path, text.replace("Ana@", "nobody@"))
    with pytest.raises(ConfigError, match=rf"{path}:2:42: no user 'nobody@example.com'"):
        apply_file(store, path)


def test_pruning_a_source_takes_its_firing_alerts_out_of_their_activations_count(
    store: Store, tmp_path: Path
) -> None:
    sources = {
        "am": "  - {key: am, name: AM, type: alertmanager, team: platform}\n",
        "kuma": "  - {key: kuma, name: Kuma, type: uptime-kuma, team: platform}\n",
    }
    head = "teams:\n  - {key: platform}\nalert_sources:\n"
    path = write(tmp_path, head + "".join(sources.values()))
    apply_file(store, path)
    with store.read() as conn:
        team = conn.execute(sa.select(teams.c.id)).scalar_one()
        ids = dict(conn.execute(sa.select(alert_sources.c.key, alert_sources.c.id)).all())
    alerts = [(ids["am"], "a", True), (ids["kuma"], "k", True), (ids["kuma"], "gone", False)]
    act = stored_activation(store, team, alerts, firing=2)
    orphan = stored_activation(store, team, [(ids["kuma"], "o", True)], firing=1)
    path.write_text(head + sources["am"])
    apply_file(store, path, prune=True)
    assert firing_count(store, act) == 1
    assert firing_count(store, orphan) == 0
    with store.read() as conn:
        due = conn.execute(sa.select(deadlines.c.kind, deadlines.c.key)).all()
    assert [tuple(d) for d in due] == [("rules.tick", f"activation:{orphan}")]
