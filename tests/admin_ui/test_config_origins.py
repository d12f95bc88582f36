"""Config as code and the UI together (issue 16, item 12), through the real UI routes: the
objects a config file declares carry a "managed by config" badge and a warning where they
are edited; an edit made in the UI is drift to `beacon apply --dry-run` of the file; and
`beacon export` after UI edits applies back with no change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from starlette.testclient import TestClient

from config import apply_file
from config.export import export_config
from engine.accounts import create_api_key
from engine.runtime import Runtime
from engine.tables import services, status_pages
from tests.admin_ui.conftest import csrf_of, sign_in
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "beacon.yaml"


def row_id(rt: Runtime, table: sa.Table, column: sa.Column[str], key: str) -> int:
    with rt.store.read() as conn:
        return int(conn.execute(sa.select(table.c.id).where(column == key)).scalar_one())


def page_form(client: TestClient, page_id: int, **changes: object) -> dict[str, object]:
    """The page's settings form as shown, with `changes` typed in."""
    html = client.get(f"/admin/pages/{page_id}").text
    with client.app.state.store.read() as conn:  # type: ignore[attr-defined]
        shown = conn.execute(
            sa.text("SELECT service_id FROM page_services WHERE page_id = :p ORDER BY position"),
            {"p": page_id},
        ).scalars()
        picked = [str(i) for i in shown]
    form: dict[str, object] = {
        "csrf": csrf_of(html),
        "name": "",
        "teams": ["platform"],
        "services": picked,
        "time_zone": "Europe/Berlin",
        **{f"position-{sid}": str(n) for n, sid in enumerate(picked)},
    }
    form.update(changes)
    return form


def test_declared_objects_carry_the_badge_and_their_edit_forms_warn(
    client: TestClient, rt: Runtime
) -> None:
    apply_file(rt.store, EXAMPLE)
    sign_in(client, "ops@example.test")
    listed = client.get("/admin/services").text
    assert "managed by config: beacon.yaml" in listed
    api = row_id(rt, services, services.c.key, "api")
    shown = client.get(f"/admin/services/{api}").text
    assert 'id="managed-by-config"' in shown and "reports your edit as drift" in shown
    page = row_id(rt, status_pages, status_pages.c.slug, "northwind")
    assert 'id="managed-by-config"' in client.get(f"/admin/pages/{page}").text
    assert "managed by config: beacon.yaml" in client.get("/admin/pages").text
    assert "managed by config: beacon.yaml" in client.get("/admin/sources").text
    assert "managed by config: beacon.yaml" in client.get("/admin/maintenance").text


def test_the_admin_api_says_where_each_object_comes_from(client: TestClient, rt: Runtime) -> None:
    apply_file(rt.store, EXAMPLE)
    key = create_api_key(rt.store, name="reader", admin=True)
    answer = client.get("/api/v1/services", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200
    by_key = {s["key"]: s for s in answer.json()}
    assert by_key["website"]["origin"] == str(EXAMPLE.resolve())
    assert by_key["website"]["config_file"] == "beacon.yaml"
    # Made by the seed of the tests (the CLI), in a team the example does not declare.
    assert by_key["portal"]["origin"] == "cli" and by_key["portal"]["config_file"] is None


def test_a_ui_edit_is_drift_and_an_export_after_ui_edits_applies_back_unchanged(
    client: TestClient, rt: Runtime, tmp_path: Path
) -> None:
    apply_file(rt.store, EXAMPLE)
    sign_in(client, "admin@example.test")
    page = row_id(rt, status_pages, status_pages.c.slug, "northwind")
    saved = client.post(
        f"/admin/pages/{page}",
        data=page_form(client, page, name="Northwind Service Status"),
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text

    plan = apply_file(rt.store, EXAMPLE, dry_run=True)
    assert [(d.kind, d.key, d.field, d.was, d.now) for d in plan.drift] == [
        ("status page", "northwind", "name", "Northwind Status", "Northwind Service Status")
    ]
    assert "changed in the UI by admin@example.test" in plan.render()

    # A new page with a service created from the page's picker, both made in the UI.
    html = client.get("/admin/pages/new").text
    made = client.post(
        "/admin/pages/new",
        data={
            "csrf": csrf_of(html),
            "name": "Payments",
            "slug": "payments",
            "type": "public",
            "teams": ["platform"],
            "time_zone": "UTC",
            "new_service_name": "Card Payments",
            "new_service_group": "Money",
        },
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    # And a maintenance window scheduled in the UI (which asks for no key).
    start = (datetime.now(UTC) + timedelta(days=5)).strftime("%Y-%m-%dT%H:%M")
    end = (datetime.now(UTC) + timedelta(days=5, hours=1)).strftime("%Y-%m-%dT%H:%M")
    html = client.get("/admin/maintenance/new").text
    scheduled = client.post(
        "/admin/maintenance/new",
        data={
            "csrf": csrf_of(html),
            "team": "platform",
            "title": "Card network upgrade",
            "starts_at": start,
            "ends_at": end,
            "services": [str(row_id(rt, services, services.c.key, "card-payments"))],
            "on_end": "replay",
        },
        follow_redirects=False,
    )
    assert scheduled.status_code == 303, scheduled.text

    exported = export_config(rt.store)
    for name, data in exported.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    path = tmp_path / "beacon.yaml"
    path.write_text(exported.text)
    assert "key: card-payments" in exported.text and "slug: payments" in exported.text
    assert "key: card-network-upgrade-" in exported.text
    again = apply_file(rt.store, path, dry_run=True)
    assert not again.changed and again.drift == [], again.render()
