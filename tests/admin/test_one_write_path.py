"""One write path (issue 13): the admin API and `beacon apply` change each kind of object
through the same function of `engine`, with the same effect and the same audit rows.

Each kind is created, changed and deleted twice, once over the API (in team `viaapi`) and
once by applying a file (in team `viafile`, deleted by `--prune`), with the engine's write
functions wrapped to record that they ran (they still run: nothing is mocked). Effects that
only the engine function produces are asserted too, so a caller that writes the tables
itself fails here even if it copied the function's audit row. Last, a guard reads the
source: `pages/admin` and `config` hold no INSERT, UPDATE or DELETE of their own.
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
from engine import channels, sources, templates
from engine.errors import ConfigError
from engine.tables import activations, alert_sources, audit_log, teams
from tests.rules.store_helpers import firing_count, stored_activation

from .conftest import Api

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
teams:
  - {key: viaapi}
  - {key: viafile}
services:
  - {key: api, name: API, team: viaapi}
  - {key: api, name: API, team: viafile}
"""


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

    for kind in KINDS.values():
        for name in ("create", "update", "delete"):
            wrap(kind.module, name)
    yield ran


def apply(api: Api, tmp_path: Path, text: str, *, prune: bool = False) -> None:
    path = tmp_path / "beacon.yaml"
    path.write_text(text)
    apply_file(api.store, path, prune=prune, actor="apply")


def audits(api: Api, team: str) -> list[tuple[str, str, str]]:
    """The team's audit rows after the setup, without their actor."""
    with api.store.read() as conn:
        team_id = conn.execute(sa.select(teams.c.id).where(teams.c.key == team)).scalar_one()
        rows = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.object_kind, audit_log.c.object_key)
            .where(audit_log.c.team_id == team_id, audit_log.c.object_kind != "team")
            .where(audit_log.c.object_kind != "service")
            .order_by(audit_log.c.id)
        )
        return [(a, k, key) for a, k, key in rows]


def through_api(api: Api, kind: Kind) -> None:
    made = api.client.post(kind.path, json={**kind.created, "team": "viaapi"}, headers=api.admin)
    assert made.status_code == 201, made.text
    url = f"{kind.path}/{made.json()['id']}"
    changed = api.client.patch(url, json=kind.changed, headers=api.admin)
    assert changed.status_code == 200, changed.text
    assert api.client.delete(url, headers=api.admin).status_code == 204


def through_apply(api: Api, tmp_path: Path, kind: Kind) -> None:
    apply(api, tmp_path, f"{BASE}{kind.section}:\n{kind.yaml_created}")
    apply(api, tmp_path, f"{BASE}{kind.section}:\n{kind.yaml_changed}")
    apply(api, tmp_path, f"{BASE}{kind.section}: []\n", prune=True)


@pytest.mark.parametrize("noun", sorted(KINDS))
def test_the_api_and_apply_write_each_kind_through_the_same_engine_functions(
    api: Api, tmp_path: Path, calls: list[str], noun: str
) -> None:
    kind = KINDS[noun]
    apply(api, tmp_path, BASE)
    expected = [f"{kind.module.__name__}.{name}" for name in ("create", "update", "delete")]

    calls.clear()
    through_api(api, kind)
    assert calls == expected
    calls.clear()
    through_apply(api, tmp_path, kind)
    assert calls == expected

    key = kind.created["key"]
    assert audits(api, "viaapi") == [
        (action, noun, key) for action in ("create", "update", "delete")
    ]
    assert audits(api, "viafile") == audits(api, "viaapi")


def _source_with_a_firing_alert(api: Api, tmp_path: Path, team: str) -> tuple[int, int]:
    apply(api, tmp_path, BASE + "alert_sources:\n" + KINDS["alert source"].yaml_created)
    with api.store.begin() as conn:
        team_id = conn.execute(sa.select(teams.c.id).where(teams.c.key == team)).scalar_one()
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

#: Files that still hold writes of their own, until their objects move to `engine`.
NOT_YET = {
    "pages/admin/accounts.py",
    "pages/admin/incidents.py",
    "pages/admin/rows.py",
    "pages/admin/services.py",
    "pages/admin/statuspages.py",
    "config/apply.py",
    "config/writers.py",
}
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
    for folder in ("pages/admin", "config"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_the_admin_api_and_apply_write_nothing_themselves() -> None:
    found = {
        str(path.relative_to(ROOT)): writes
        for path in callers()
        if (writes := raw_writes(path.read_text(encoding="utf-8")))
    }
    assert set(found) <= NOT_YET, {k: v for k, v in found.items() if k not in NOT_YET}


def test_the_guard_sees_each_way_of_writing() -> None:
    source = (
        "conn.execute(services.update().values(x=1))\n"
        "conn.execute(sa.delete(services))\n"
        "conn.execute(text('insert into services (key) values (1)'))\n"
        "values.update(other)\n"
        "names.insert(0, 'x')\n"
    )
    assert raw_writes(source) == [(1, "update"), (2, "delete"), (3, "SQL")]
