"""One write path (issue 13): the admin API and `beacon apply` change each kind of object
through the same function of `engine`, with the same effect and the same audit rows.

Each kind is created, changed and deleted twice, once over the API (in team `viaapi`) and
once by applying a file (in team `viafile`, deleted by `--prune`), with the engine's write
functions wrapped to record that they ran (they still run: nothing is mocked). Effects that
only the engine function produces are asserted too, so a caller that writes the tables
itself fails here even if it copied the function's audit row. Last, a guard reads the
source: `pages/` (the admin API, the web UI and every other route) and `config` hold no
INSERT, UPDATE or DELETE of their own.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa

from config import apply_file
from engine import (
    api_keys,
    channels,
    incidents,
    maintenance,
    overrides,
    services,
    sources,
    statuspages,
    teams,
    templates,
    users,
)
from engine.errors import ConfigError
from engine.tables import (
    activations,
    alert_sources,
    audit_log,
    page_groups,
    page_services,
    status_pages,
)
from engine.tables import services as services_rows
from engine.tables import teams as team_rows
from tests.rules.store_helpers import firing_count, stored_activation

from .conftest import Api

ROOT = Path(__file__).resolve().parents[2]

TEAMS = "teams:\n  - {key: viaapi}\n  - {key: viafile}\n"
SERVICES = "  - {key: api, name: API, team: viaapi}\n  - {key: api, name: API, team: viafile}\n"
BASE = f"{TEAMS}services:\n{SERVICES}"


def config(section: str, lines: str) -> str:
    """The base file with `lines` in `section` (no lines: the section, empty)."""
    if section == "services":
        return f"{TEAMS}services:\n{SERVICES}{lines}"
    return f"{BASE}{section}:\n{lines}" if lines else f"{BASE}{section}: []\n"


@dataclass(frozen=True)
class Kind:
    """One kind of object: its engine module, its API path and bodies, and its section of
    a config file in three versions (created, changed, gone)."""

    module: ModuleType
    path: str
    created: dict[str, Any]
    changed: dict[str, Any]
    section: str
    yaml_created: str
    yaml_changed: str
    #: Whether the object names its teams (a list) rather than its team.
    teams: bool = False

    def body(self, team: str) -> dict[str, Any]:
        return {**self.created, **({"teams": [team]} if self.teams else {"team": team})}

    @property
    def key(self) -> str:
        return str(self.created.get("key") or self.created["slug"])


KINDS = {
    "alert source": Kind(
        sources,
        "/api/v1/alert-sources",
        {"key": "kuma", "name": "Kuma", "type": "uptime-kuma"},
        {"name": "Uptime Kuma"},
        "alert_sources",
        "  - {key: kuma, name: Kuma, type: uptime-kuma, team: viafile}\n",
        "  - {key: kuma, name: Uptime Kuma, type: uptime-kuma, team: viafile}\n",
    ),
    "incident template": Kind(
        templates,
        "/api/v1/incident-templates",
        {"key": "down", "title": "API down", "services": {"api": "major_outage"}},
        {"title": "The API is down"},
        "incident_templates",
        "  - {key: down, title: API down, services: {api: major_outage}, team: viafile}\n",
        "  - {key: down, title: The API is down, services: {api: major_outage}, team: viafile}\n",
    ),
    "channel": Kind(
        channels,
        "/api/v1/channels",
        {"key": "ops", "type": "webhook", "url": "https://hooks.example/a"},
        {"url": "https://hooks.example/b"},
        "channels",
        "  - {key: ops, type: webhook, url: 'https://hooks.example/a', team: viafile}\n",
        "  - {key: ops, type: webhook, url: 'https://hooks.example/b', team: viafile}\n",
    ),
    "service": Kind(
        services,
        "/api/v1/services",
        {"key": "web", "name": "Web"},
        {"group": "Edge"},
        "services",
        "  - {key: web, name: Web, team: viafile}\n",
        "  - {key: web, name: Web, group: Edge, team: viafile}\n",
    ),
    "status page": Kind(
        statuspages,
        "/api/v1/pages",
        {"slug": "status", "name": "Status", "services": ["api"]},
        {"name": "Our status"},
        "status_pages",
        "  - {slug: status, name: Status, services: [api], teams: [viafile]}\n",
        "  - {slug: status, name: Our status, services: [api], teams: [viafile]}\n",
        teams=True,
    ),
    "maintenance window": Kind(
        maintenance,
        "/api/v1/maintenance-windows",
        {
            "key": "upgrade",
            "title": "Upgrade",
            "services": ["api"],
            "starts_at": "2099-01-01T22:00:00Z",
            "ends_at": "2099-01-02T01:00:00Z",
        },
        {"title": "Database upgrade"},
        "maintenance_windows",
        "  - {key: upgrade, title: Upgrade, services: [api], team: viafile,\n"
        "     start: 2099-01-01T22:00:00Z, end: 2099-01-02T01:00:00Z}\n",
        "  - {key: upgrade, title: Database upgrade, services: [api], team: viafile,\n"
        "     start: 2099-01-01T22:00:00Z, end: 2099-01-02T01:00:00Z}\n",
    ),
}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The engine write functions that ran, as `module.function`, in order. The functions
    are wrapped, not replaced: each still does its work."""
    ran: list[str] = []

    def wrap(module: ModuleType, name: str) -> None:
        real = getattr(module, name)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            ran.append(f"{module.__name__}.{name}")
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, recorded)

    for module in {*(kind.module for kind in KINDS.values()), teams}:
        for name in ("create", "update", "delete"):
            wrap(module, name)
    for name in ("create_group", "update_group", "delete_group"):
        wrap(services, name)
    for name in ("create", "update", "delete"):
        wrap(users, name)
    wrap(api_keys, "create")
    wrap(api_keys, "revoke")
    wrap(overrides, "set_override")
    wrap(overrides, "clear_override")
    for name in ("create", "edit", "post_update", "edit_update", "delete_update"):
        wrap(incidents, name)
    for name in ("take_over", "delete"):
        wrap(incidents, name)
    yield ran


def apply(api: Api, tmp_path: Path, text: str, *, prune: bool = False) -> None:
    path = tmp_path / "beacon.yaml"
    path.write_text(text)
    apply_file(api.store, path, prune=prune, actor="apply")


def audits(api: Api, team: str, setup: int) -> list[tuple[str, str, str]]:
    """The team's audit rows after the one numbered `setup`, without their actor."""
    with api.store.read() as conn:
        team_id = conn.execute(
            sa.select(team_rows.c.id).where(team_rows.c.key == team)
        ).scalar_one()
        rows = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.object_kind, audit_log.c.object_key)
            .where(audit_log.c.team_id == team_id, audit_log.c.id > setup)
            .order_by(audit_log.c.id)
        )
        return [(a, k, key) for a, k, key in rows]


def last_audit(api: Api) -> int:
    with api.store.read() as conn:
        return int(conn.execute(sa.select(sa.func.max(audit_log.c.id))).scalar_one())


def through_api(api: Api, kind: Kind) -> None:
    made = api.client.post(kind.path, json=kind.body("viaapi"), headers=api.admin)
    assert made.status_code == 201, made.text
    url = f"{kind.path}/{made.json()['id']}"
    changed = api.client.patch(url, json=kind.changed, headers=api.admin)
    assert changed.status_code == 200, changed.text
    assert api.client.delete(url, headers=api.admin).status_code == 204


def through_apply(api: Api, tmp_path: Path, kind: Kind) -> None:
    apply(api, tmp_path, config(kind.section, kind.yaml_created))
    apply(api, tmp_path, config(kind.section, kind.yaml_changed))
    apply(api, tmp_path, config(kind.section, ""), prune=True)


@pytest.mark.parametrize("noun", sorted(KINDS))
def test_the_api_and_apply_write_each_kind_through_the_same_engine_functions(
    api: Api, tmp_path: Path, calls: list[str], noun: str
) -> None:
    kind = KINDS[noun]
    apply(api, tmp_path, BASE)
    setup = last_audit(api)
    expected = [f"{kind.module.__name__}.{name}" for name in ("create", "update", "delete")]

    calls.clear()
    through_api(api, kind)
    assert calls == expected
    calls.clear()
    through_apply(api, tmp_path, kind)
    assert calls == expected

    done = [(action, noun, kind.key) for action in ("create", "update", "delete")]
    assert audits(api, "viaapi", setup) == done
    assert audits(api, "viafile", setup) == done


def test_a_team_is_created_and_changed_through_the_same_engine_functions(
    api: Api, tmp_path: Path, calls: list[str]
) -> None:
    made = api.client.post("/api/v1/teams", json={"key": "ops"}, headers=api.admin)
    url = f"/api/v1/teams/{made.json()['id']}"
    assert api.client.patch(url, json={"name": "Ops"}, headers=api.admin).status_code == 200
    assert calls == ["engine.teams.create", "engine.teams.update"]
    calls.clear()
    apply(api, tmp_path, "teams:\n  - {key: sre}\n")
    apply(api, tmp_path, "teams:\n  - {key: sre, name: SRE}\n")
    assert calls == ["engine.teams.create", "engine.teams.update"]
    with api.store.read() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.object_key)
            .where(audit_log.c.object_kind == "team")
            .order_by(audit_log.c.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("create", "ops"),
        ("update", "ops"),
        ("create", "sre"),
        ("update", "sre"),
    ]


def layout(api: Api, page_id: int) -> list[tuple[str | None, str]]:
    """The page's services in order, each with the group it is listed under."""
    with api.store.read() as conn:
        rows = conn.execute(
            sa.select(page_groups.c.name, services_rows.c.key)
            .select_from(page_services)
            .join(services_rows, services_rows.c.id == page_services.c.service_id)
            .outerjoin(page_groups, page_groups.c.id == page_services.c.group_id)
            .where(page_services.c.page_id == page_id)
            .order_by(page_services.c.position)
        )
        return [(g, k) for g, k in rows]


GROUPED = """\
teams:
  - {key: viaapi}
  - {key: viafile}
services:
  - {key: web, name: Web, group: Core, team: viaapi}
  - {key: db, name: DB, group: Core, team: viaapi}
  - {key: web, name: Web, GROUP, team: viafile}
  - {key: db, name: DB, group: Core, team: viafile}
status_pages:
  - {slug: viaapi, name: A, teams: [viaapi], services: [web, db]}
  - {slug: viafile, name: F, teams: [viafile], services: [web, db]}
"""


@pytest.mark.parametrize("via", ["api", "apply"])
def test_changing_a_services_group_through_either_re_lays_out_its_pages(
    api: Api, tmp_path: Path, calls: list[str], via: str
) -> None:
    apply(api, tmp_path, GROUPED.replace("GROUP", "group: Core"))
    team = "viaapi" if via == "api" else "viafile"
    with api.store.read() as conn:
        pages = dict(conn.execute(sa.select(status_pages.c.slug, status_pages.c.id)).all())
        web = conn.execute(
            sa.select(services_rows.c.id)
            .join(team_rows, team_rows.c.id == services_rows.c.team_id)
            .where(services_rows.c.key == "web", team_rows.c.key == team)
        ).scalar_one()
    assert layout(api, pages[team]) == [("Core", "web"), ("Core", "db")]
    calls.clear()
    if via == "api":
        url = f"/api/v1/services/{web}"
        assert api.client.patch(url, json={"group": "Edge"}, headers=api.admin).status_code == 200
    else:
        apply(api, tmp_path, GROUPED.replace("GROUP", "group: Edge"))
    assert calls == ["engine.services.update"]
    assert layout(api, pages[team]) == [("Edge", "web"), ("Core", "db")]


def test_writes_only_the_api_makes_reach_the_engine(api: Api, calls: list[str]) -> None:
    def ok(answer: Any) -> Any:
        assert answer.status_code < 300, answer.text
        return answer.json() if answer.content else None

    post, patch, put = api.client.post, api.client.patch, api.client.put
    delete = api.client.delete
    team = ok(post("/api/v1/teams", json={"key": "ops"}, headers=api.admin))
    user = ok(
        post(
            "/api/v1/users", json={"email": "a@example.com", "role": "responder"}, headers=api.admin
        )
    )
    ok(patch(f"/api/v1/users/{user['id']}", json={"teams": ["ops"]}, headers=api.admin))
    key = ok(post("/api/v1/api-keys", json={"name": "ci", "team": "ops"}, headers=api.admin))
    ok(delete(f"/api/v1/api-keys/{key['id']}", headers=api.admin))
    ok(delete(f"/api/v1/users/{user['id']}", headers=api.admin))
    service = ok(
        post("/api/v1/services", json={"key": "w", "name": "W", "team": "ops"}, headers=api.admin)
    )
    groups = f"/api/v1/teams/{team['id']}/groups"
    ok(post(groups, json={"name": "Core", "services": [service["id"]]}, headers=api.admin))
    ok(patch(f"{groups}/Core", json={"name": "Edge"}, headers=api.admin))
    ok(delete(f"{groups}/Edge", headers=api.admin))
    override = f"/api/v1/services/{service['id']}/override"
    ok(put(override, json={"status": "degraded"}, headers=api.admin))
    ok(delete(override, headers=api.admin))
    incident = ok(
        post(
            "/api/v1/incidents",
            json={"title": "Down", "team": "ops", "impacts": {"w": "major_outage"}},
            headers=api.admin,
        )
    )
    inc = f"/api/v1/incidents/{incident['id']}"
    ok(patch(inc, json={"title": "W is down"}, headers=api.admin))
    update = ok(post(f"{inc}/updates", json={"message": "Looking"}, headers=api.admin))
    ok(patch(f"{inc}/updates/{update['id']}", json={"message": "Fixing"}, headers=api.admin))
    ok(delete(f"{inc}/updates/{update['id']}", headers=api.admin))
    ok(post(f"{inc}/take-over", headers=api.admin))
    ok(delete(inc, headers=api.admin))
    with api.store.read() as conn:
        actions = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.object_kind).order_by(audit_log.c.id)
        ).all()
    # One audit row per write, each the engine's (the admin key's own creation comes first).
    assert [tuple(a) for a in actions][1:] == [
        ("create", "team"),
        ("create", "user"),
        ("update", "user"),
        ("create", "api key"),
        ("delete", "api key"),
        ("delete", "user"),
        ("create", "service"),
        ("create", "group"),
        ("update", "group"),
        ("delete", "group"),
        ("override", "service"),
        ("clear override", "service"),
        ("create", "incident"),
        ("update", "incident"),
        ("update", "incident"),
        ("edit update", "incident"),
        ("delete update", "incident"),
        ("take over", "incident"),
        ("delete", "incident"),
    ]
    ok(delete(f"/api/v1/teams/{team['id']}", headers=api.admin))
    assert calls == [
        "engine.teams.create",
        "engine.users.create",
        "engine.users.update",
        "engine.api_keys.create",
        "engine.api_keys.revoke",
        "engine.users.delete",
        "engine.services.create",
        "engine.services.create_group",
        "engine.services.update_group",
        "engine.services.delete_group",
        "engine.overrides.set_override",
        "engine.overrides.clear_override",
        "engine.incidents.create",
        "engine.incidents.edit",
        "engine.incidents.post_update",
        "engine.incidents.edit_update",
        "engine.incidents.delete_update",
        "engine.incidents.take_over",
        "engine.incidents.delete",
        "engine.teams.delete",
    ]


def _source_with_a_firing_alert(api: Api, tmp_path: Path, team: str) -> tuple[int, int]:
    apply(api, tmp_path, BASE + "alert_sources:\n" + KINDS["alert source"].yaml_created)
    with api.store.begin() as conn:
        team_id = conn.execute(
            sa.select(team_rows.c.id).where(team_rows.c.key == team)
        ).scalar_one()
        source_id = conn.execute(
            sa.select(alert_sources.c.id).where(alert_sources.c.team_id == team_id)
        ).scalar()
        if source_id is None:
            source_id = sources.create(
                conn, team_id, sources.SourceFields("kuma", "Kuma", "uptime-kuma"), actor="t"
            )
    return source_id, stored_activation(api.store, team_id, [(source_id, "a", True)], firing=1)


@pytest.mark.parametrize("via", ["api", "apply"])
def test_deleting_an_alert_source_through_either_releases_its_alerts(
    api: Api, tmp_path: Path, via: str
) -> None:
    # The activation's only firing alert came from the source: once the source is gone no
    # resolve can end it, so the engine hands it to the clock (firing count 0, due now),
    # which releases its claims. A caller deleting the row itself would leave it at 1.
    source_id, activation_id = _source_with_a_firing_alert(
        api, tmp_path, "viaapi" if via == "api" else "viafile"
    )
    if via == "api":
        url = f"/api/v1/alert-sources/{source_id}"
        assert api.client.delete(url, headers=api.admin).status_code == 204
    else:
        apply(api, tmp_path, BASE + "alert_sources: []\n", prune=True)
    assert firing_count(api.store, activation_id) == 0
    with api.store.read() as conn:
        due = conn.execute(
            sa.select(activations.c.due_at).where(activations.c.id == activation_id)
        ).scalar()
    assert due is not None


@pytest.mark.parametrize("via", ["api", "apply"])
def test_a_template_is_checked_by_the_one_syntax_check(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    checked: list[str] = []
    real = templates.syntax_problem

    def recorded(text: str) -> str | None:
        checked.append(text)
        return real(text)

    monkeypatch.setattr(templates, "syntax_problem", recorded)
    apply(api, tmp_path, BASE)
    if via == "api":
        body = {"key": "t", "team": "viaapi", "title": "{{ oops"}
        answer = api.client.post("/api/v1/incident-templates", json=body, headers=api.admin)
        assert answer.status_code == 422
        assert "template syntax" in answer.text
    else:
        with pytest.raises(ConfigError, match="template syntax"):
            apply(
                api,
                tmp_path,
                BASE + "incident_templates:\n  - {key: t, title: '{{ oops', team: viafile}\n",
            )
    assert "{{ oops" in checked


# --- no caller writes the tables itself ----------------------------------------------------

_SQL_WRITE = re.compile(r"\s*(INSERT\s+INTO|DELETE\s+FROM|UPDATE\s+\w+\s+SET)\b", re.IGNORECASE)
_WRITES = ("insert", "update", "delete")


def raw_writes(source: str) -> list[tuple[int, str]]:
    """The lines of `source` that build a write statement: a SQLAlchemy `table.insert()`,
    `.update()` or `.delete()` (called without arguments, unlike `dict.update(x)` or
    `list.insert(i, x)`), `sa.insert(...)` and the like, or SQL text that writes."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            on_sa = isinstance(node.func.value, ast.Name) and node.func.value.id in (
                "sa",
                "sqlalchemy",
            )
            if name in _WRITES and (on_sa or not (node.args or node.keywords)):
                found.append((node.lineno, name))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _SQL_WRITE.match(node.value):
                found.append((node.lineno, "SQL"))
    return sorted(found)


def callers() -> Iterator[Path]:
    # All of pages/ (the admin API, the web UI, which calls the admin API's handlers, and
    # every other route) and config: each writes through engine, never by itself.
    for folder in ("pages", "config"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_the_admin_api_and_apply_write_nothing_themselves() -> None:
    found = {
        str(path.relative_to(ROOT)): writes
        for path in callers()
        if (writes := raw_writes(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_the_guard_sees_each_way_of_writing() -> None:
    source = (
        "conn.execute(services.update().values(x=1))\n"
        "conn.execute(sa.delete(services))\n"
        "conn.execute(text('insert into services (key) values (1)'))\n"
        "values.update(other)\n"
        "names.insert(0, 'x')\n"
    )
    assert raw_writes(source) == [(1, "update"), (2, "delete"), (3, "SQL")]
