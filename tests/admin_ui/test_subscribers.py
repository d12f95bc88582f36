"""A page's subscribers in the admin UI: listed and searched, a webhook shown by its host
only (its URL is a secret), exported as CSV, removed; another team cannot see them."""

from __future__ import annotations

import sqlalchemy as sa
from starlette.testclient import TestClient

from engine.accounts import create_api_key
from engine.runtime import Runtime
from engine.tables import subscribers

from .conftest import World, csrf_of, sign_in


def test_subscribers_are_listed_searched_exported_and_removed(
    client: TestClient, rt: Runtime, world: World
) -> None:
    key = create_api_key(rt.store, name="seed", admin=True)
    auth = {"Authorization": f"Bearer {key}"}
    body = {"slug": "shop", "name": "Shop", "teams": ["platform"], "services": ["api"]}
    page = client.post("/api/v1/pages", json=body, headers=auth).json()
    client.patch(f"/api/v1/pages/{page['id']}", json={"active": True}, headers=auth)
    client.cookies.clear()
    for channel, address in (
        ("email", "ann@example.com"),
        ("webhook", "https://hooks.example.com/very-secret-path"),
        ("email", "=cmd@example.com"),
    ):
        answer = client.post("/p/shop/subscribe", json={"channel": channel, "address": address})
        assert answer.status_code < 300, answer.text
    url = f"/admin/pages/{page['id']}/subscribers"

    sign_in(client, "acme-ops@example.test")
    assert client.get(url).status_code == 404
    assert client.get(url + ".csv").status_code == 404
    client.cookies.clear()

    sign_in(client, "ops@example.test")
    listing = client.get(url).text
    assert "ann@example.com" in listing and "webhook to hooks.example.com" in listing
    assert "very-secret-path" not in listing
    found = client.get(url, params={"q": "ann"}).text
    assert "ann@example.com" in found and "hooks.example.com" not in found
    exported = client.get(url + ".csv")
    assert exported.headers["content-type"].startswith("text/csv")
    lines = exported.text.splitlines()
    assert lines[0] == "channel,address,services,confirmed,created_at"
    assert any(line.startswith("email,'=cmd@example.com,") for line in lines)  # no formula
    assert "very-secret-path" not in exported.text

    with rt.store.read() as conn:
        ann = conn.execute(
            sa.select(subscribers.c.id).where(subscribers.c.address == "ann@example.com")
        ).scalar()
    token = csrf_of(listing)
    answer = client.post(f"{url}/{ann}/remove", data={"csrf": token}, follow_redirects=False)
    assert answer.status_code == 303
    after = client.get(url).text
    assert "Removed ann@example.com." in after
    assert "ann@example.com" not in after.split('id="subscribers"', 1)[1]
    gone = client.post(f"{url}/{ann}/remove", data={"csrf": token})
    assert gone.status_code == 404
