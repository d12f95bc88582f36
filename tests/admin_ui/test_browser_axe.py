"""axe-core on every admin page, light and dark: each GET route of /admin/ is visited (a
new route without a visit here fails the test), with objects behind the routes that show
one, and a stakeholder's home."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from config import apply_file
from pages.admin_ui import routes

from .browser import Steps, sign_in
from .conftest import Served

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

#: Routes that are fragments for htmx or files, not pages.
NOT_PAGES = {
    "/admin/static/{name}",
    "/admin/pages/addresses",
    "/admin/pages/{id:int}/domain/check",
    "/admin/sources/notes",
    "/admin/pages/{id:int}/subscribers.csv",
    "/admin",
}


def made(served: Served, path: str, body: dict[str, Any]) -> int:
    answer = httpx.post(f"{served.base}{path}", json=body, headers=served.auth)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def test_no_admin_page_has_a_serious_accessibility_violation(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    base = served.base
    # A config file declares a service and a page: their badge and notes are checked too.
    declared = tmp_path / "beacon.yaml"
    declared.write_text(
        "services:\n  - {key: api, name: Public API, group: Core, team: platform}\n"
        "status_pages:\n  - {slug: shop, name: Shop Status, teams: [platform], services: [api],"
        " active: false}\n"
    )
    apply_file(served.store, declared)
    pages = httpx.get(f"{base}/api/v1/pages", headers=served.auth).json()
    page_id = next(p["id"] for p in pages if p["slug"] == "shop")
    start = datetime.now(UTC) + timedelta(days=2)
    ids = {
        "/admin/pages/{id:int}": page_id,
        "/admin/pages/{id:int}/domain": page_id,
        "/admin/pages/{id:int}/subscribers": page_id,
        "/admin/incidents/{id:int}": made(
            served,
            "/api/v1/incidents",
            {"team": "platform", "title": "Slow API", "impacts": {"api": "degraded"}},
        ),
        "/admin/maintenance/{id:int}": made(
            served,
            "/api/v1/maintenance-windows",
            {
                "team": "platform",
                "title": "Upgrade",
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=1)).isoformat(),
                "services": ["db"],
            },
        ),
        "/admin/services/{id:int}": served.world.service_ids["api"],
        "/admin/sources/{id:int}": made(
            served,
            "/api/v1/alert-sources",
            {"key": "kuma", "name": "Kuma", "type": "uptime-kuma", "team": "platform"},
        ),
        "/admin/users/{id:int}": 2,
    }
    gets = sorted(
        r.path
        for r in routes
        if isinstance(r, Route) and "GET" in (r.methods or set()) and r.path not in NOT_PAGES
    )
    missing = [p for p in gets if "{" in p and p not in ids]
    assert missing == [], f"routes without an object to show here: {missing}"

    steps = Steps("axe")
    page = browser.new_page()
    sign_in(page, base, "admin@example.test")
    for template in gets:
        path = template.replace("{id:int}", str(ids.get(template, "")))
        answer = page.goto(f"{base}{path}")
        assert answer is not None and answer.status == 200, (path, answer and answer.status)
        if path in ("/admin/services", f"/admin/pages/{page_id}"):
            assert "managed by config: beacon.yaml" in page.content(), path
        steps.axe(page, path)
    page.goto(f"{base}/admin/sources/new?type=generic")
    steps.axe(page, "/admin/sources/new with notes")
    assert page.goto(f"{base}/admin/pages/999999").status == 404
    steps.axe(page, "not found")
    page.close()

    stakeholder = browser.new_page()
    sign_in(stakeholder, base, "viewer@example.test")
    steps.axe(stakeholder, "stakeholder home")
    stakeholder.close()
    steps.assert_accessible()
