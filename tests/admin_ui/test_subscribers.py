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
    assert lines[0] == "channel,address,services,state,created_at,imported_by,confirmation_skipped"
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


def _pages(client: TestClient, rt: Runtime) -> dict[str, int]:
    key = create_api_key(rt.store, name="seed2", admin=True)
    auth = {"Authorization": f"Bearer {key}"}
    ids = {}
    for body in (
        {"slug": "shop", "name": "Shop", "teams": ["platform"], "services": ["api"]},
        {"slug": "inside", "name": "Inside", "type": "private", "teams": ["acme"]},
    ):
        answer = client.post("/api/v1/pages", json=body, headers=auth)
        assert answer.status_code == 201, answer.text
        ids[body["slug"]] = answer.json()["id"]
    client.cookies.clear()
    return ids


def test_the_tab_offers_the_options_of_the_page_type_and_imports_all_or_nothing(
    client: TestClient, rt: Runtime, world: World
) -> None:
    ids = _pages(client, rt)
    sign_in(client, "ops@example.test")
    url = f"/admin/pages/{ids['shop']}/subscribers"
    tab = client.get(url).text
    options = tab.split('id="options"', 1)[1].split("</ul>", 1)[0]
    for label in ("Email", "SMS", "Webhook", "Account users"):
        assert f"<strong>{label}</strong>" in options
    token = csrf_of(tab)

    bad = client.post(
        f"{url}/import",
        data={"csrf": token},
        files={"file": ("list.csv", b"address\nann@example.com\nnot-an-address\n", "text/csv")},
    )
    assert bad.status_code == 422 and "Nothing was imported." in bad.text
    assert "row 3, column address: &#39;not-an-address&#39; is not an email address" in bad.text
    with rt.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(subscribers)).scalar() == 0

    done = client.post(
        f"{url}/import",
        data={"csrf": token, "skip_confirmation": "1"},
        files={"file": ("list.csv", b"address\nann@example.com\nbob@example.com\n", "text/csv")},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    after = client.get(url).text
    assert "Imported 2 subscribers (confirmation skipped" in after
    with rt.store.read() as conn:
        rows = list(conn.execute(sa.select(subscribers)))
    assert all(r.confirmed and r.confirmation_skipped for r in rows)
    assert {r.imported_by for r in rows} == {"user:ops@example.test"}
    assert "by user:ops@example.test, confirmation skipped" in after

    added = client.post(
        url, data={"csrf": token, "channel": "webhook", "address": "https://hooks.example.com/x"}
    )
    assert added.status_code == 201 and 'id="signing-secret">whsec_' in added.text
    refused = client.post(url, data={"csrf": token, "channel": "user", "user": "nobody@x.test"})
    assert refused.status_code == 422 and "no active user" in refused.text

    # A private page: account users only, no import.
    client.cookies.clear()
    sign_in(client, "acme-ops@example.test")
    inside = client.get(f"/admin/pages/{ids['inside']}/subscribers").text
    options = inside.split('id="options"', 1)[1].split("</ul>", 1)[0]
    assert "<strong>Account users</strong>" in options and "Email" not in options
    assert "Import CSV" not in inside
    token = csrf_of(inside)
    me = client.post(
        f"/admin/pages/{ids['inside']}/subscribers",
        data={"csrf": token, "channel": "user", "user": "acme-ops@example.test"},
        follow_redirects=False,
    )
    assert me.status_code == 303
    email = client.post(
        f"/admin/pages/{ids['inside']}/subscribers",
        data={"csrf": token, "channel": "email", "address": "x@example.com"},
    )
    assert email.status_code == 422 and "a private page has no email subscribers" in email.text


def test_the_update_form_says_who_will_hear_per_channel(
    client: TestClient, rt: Runtime, world: World
) -> None:
    key = create_api_key(rt.store, name="seed3", admin=True)
    auth = {"Authorization": f"Bearer {key}"}
    body = {"slug": "shop", "name": "Shop", "teams": ["platform"], "services": ["api"]}
    page = client.post("/api/v1/pages", json=body, headers=auth).json()
    client.patch(f"/api/v1/pages/{page['id']}", json={"active": True}, headers=auth)
    url = f"/api/v1/pages/{page['id']}/subscribers"
    for sub in (
        {"channel": "email", "address": "ann@example.com", "skip_confirmation": True},
        {"channel": "webhook", "address": "https://hooks.example.com/h"},
        {"channel": "email", "address": "wait@example.com"},  # not confirmed: not counted
    ):
        assert client.post(url, json=sub, headers=auth).status_code == 201
    incident = client.post(
        "/api/v1/incidents",
        json={"team": "platform", "title": "Slow", "impacts": {"api": "degraded"}},
        headers=auth,
    ).json()
    client.cookies.clear()
    sign_in(client, "ops@example.test")
    shown = client.get(f"/admin/incidents/{incident['id']}").text
    assert '<p id="reach"><strong>2 subscribers on 1 page will be notified.</strong></p>' in shown
    assert '<p class="hint" id="reach-channels">1 by email, 1 by webhook; Shop: 2.</p>' in shown
