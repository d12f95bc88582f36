"""The status page over HTTP: content, size, validators, archive, permalinks, assets."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from starlette.testclient import TestClient

from engine.accounts import create_api_key
from engine.tables import assets, status_pages
from workers.runtime import Runtime

from . import factory

NOW = datetime.now(UTC)


def seed(rt: Runtime, **options: object) -> dict[str, object]:
    with rt.store.begin() as conn:
        return factory.big_page(conn, NOW, **options)  # type: ignore[arg-type]


def test_the_page_shows_status_groups_services_and_incidents(
    rt: Runtime, client: TestClient
) -> None:
    seed(rt, services_count=10)
    response = client.get("/p/acme/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    html = response.text
    assert "Partial System Outage" in html  # the open incident's impact (major)
    assert "Group 0" in html and "Service 9" in html
    assert "Elevated errors on Service 0" in html and "A faulty deploy" in html
    assert 'id="subscribe"' in html and 'href="history.rss"' in html
    assert "<main" in html and "<header" in html and "<footer" in html
    # No external assets: nothing loads from another host.
    assert "http://" not in html.replace('xmlns="http://', "") and "https://" not in html


def test_fifty_services_with_ninety_day_bars_stay_under_60_kb(
    rt: Runtime, client: TestClient
) -> None:
    seed(rt, services_count=50, incidents_count=3)
    body = client.get("/p/acme/").content
    assert body.count(b'class="bar"') == 50
    assert body.count(b"data-s=") == 50
    assert len(body) < 60 * 1024


def test_a_matching_etag_gets_304(rt: Runtime, client: TestClient) -> None:
    seed(rt, services_count=3)
    first = client.get("/p/acme/")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert first.headers["cache-control"].startswith("public, max-age=")
    again = client.get("/p/acme/", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert client.get("/p/acme/", headers={"If-Modified-Since": modified}).status_code == 304
    assert client.get("/p/acme/", headers={"If-None-Match": '"other"'}).status_code == 200


def test_private_and_inactive_pages_go_through_the_access_check(
    rt: Runtime, client: TestClient
) -> None:
    seed(rt, services_count=1)
    with rt.store.begin() as conn:
        team = factory.team(conn, "second")
        factory.page(conn, team, "draft", active=False)
        factory.page(conn, team, "inside", type="private")
    key = create_api_key(rt.store, name="member", team="second")
    member = {"Authorization": f"Bearer {key}"}
    assert client.get("/p/draft/").status_code == 404
    assert client.get("/p/nope/").status_code == 404
    login = client.get("/p/inside/", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"].startswith("/login?next=")
    assert client.get("/p/inside/live").status_code == 401
    # Members see the draft, with a preview banner, never cached by anyone else.
    draft = client.get("/p/draft/", headers=member)
    assert draft.status_code == 200 and "Preview: this page is not active" in draft.text
    assert draft.headers["cache-control"] == "private, no-store"
    assert "Authorization" in draft.headers["vary"]
    inside = client.get("/p/inside/", headers=member)
    assert inside.status_code == 200 and "Preview" not in inside.text
    # A cached private page is still not served to anonymous visitors.
    assert client.get("/p/inside/", follow_redirects=False).status_code == 303
    assert client.get("/p/acme", follow_redirects=False).headers["location"] == "/p/acme/"


def test_hidden_uptime_shows_no_bars(rt: Runtime, client: TestClient) -> None:
    seed(rt, services_count=2)
    with rt.store.begin() as conn:
        conn.execute(status_pages.update().values(hide_uptime=True))
    main = client.get("/p/acme/").text.split("<main")[1].split("</main>")[0]
    assert "Service 1" in main and 'class="bar"' not in main and "uptime" not in main


def test_user_text_is_escaped(rt: Runtime, client: TestClient) -> None:
    ids = seed(rt, services_count=1, incidents_count=0)
    with rt.store.begin() as conn:
        factory.incident(
            conn,
            ids["team"],  # type: ignore[arg-type]
            "<script>alert(1)</script></script>",
            started_at=NOW - timedelta(minutes=5),
            impacts={ids["services"][0]: "major_outage"},  # type: ignore[index]
        )
    html = client.get("/p/acme/").text
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("</script>") == 2  # the titles JSON and the page's own script


def test_history_archive_pages_back(rt: Runtime, client: TestClient) -> None:
    ids = seed(rt, services_count=1, incidents_count=0)
    with rt.store.begin() as conn:
        for n in range(30):
            started = NOW - timedelta(days=10 * n + 1)
            factory.incident(
                conn,
                ids["team"],  # type: ignore[arg-type]
                f"Outage number {n}",
                started_at=started,
                resolved_at=started + timedelta(hours=1),
                status="resolved",
                impacts={ids["services"][0]: "major_outage"},  # type: ignore[index]
            )
    first = client.get("/p/acme/history")
    assert first.status_code == 200 and "Outage number 0<" in first.text
    assert "Outage number 24<" in first.text and "Outage number 25<" not in first.text
    older = first.text.split('href="history?before=')[1].split('"')[0]
    second = client.get(f"/p/acme/history?before={older.replace('+', '%2B')}")
    assert second.status_code == 200
    assert "Outage number 25<" in second.text and "Outage number 29<" in second.text
    assert client.get("/p/acme/history?before=yesterday").status_code == 400


def test_an_incident_has_a_permalink(rt: Runtime, client: TestClient) -> None:
    seed(rt, services_count=2)
    html = client.get("/p/acme/").text
    link = html.split('href="incidents/')[1].split('"')[0]
    page = client.get(f"/p/acme/incidents/{link}")
    assert page.status_code == 200
    assert "<h1>Elevated errors on Service 0</h1>" in page.text
    assert "We are investigating" in page.text and "A faulty deploy" in page.text
    assert client.get("/p/acme/incidents/unknown").status_code == 404


def test_logo_and_favicon_are_served_by_content_hash(rt: Runtime, client: TestClient) -> None:
    seed(rt, services_count=1)
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    icon = b"\x00\x00\x01\x00" + b"\x01" * 16
    with rt.store.begin() as conn:
        ids = []
        for data, ctype in ((png, "image/png"), (icon, "image/x-icon")):
            digest = hashlib.sha256(data).hexdigest()
            result = conn.execute(
                assets.insert().values(sha256=digest, content_type=ctype, data=data)
            )
            ids.append(result.inserted_primary_key[0])  # type: ignore[index]
        conn.execute(status_pages.update().values(logo_asset_id=ids[0], favicon_asset_id=ids[1]))
    html = client.get("/p/acme/").text
    logo_hash = hashlib.sha256(png).hexdigest()
    assert f'src="assets/{logo_hash}"' in html
    logo = client.get(f"/p/acme/assets/{logo_hash}")
    assert logo.status_code == 200 and logo.content == png
    assert logo.headers["content-type"] == "image/png"
    assert "immutable" in logo.headers["cache-control"]
    favicon = client.get(f"/p/acme/assets/{hashlib.sha256(icon).hexdigest()}")
    assert favicon.headers["content-type"] == "image/x-icon"
    assert client.get(f"/p/acme/assets/{'0' * 64}").status_code == 404


def test_cached_pages_are_answered_before_routing(rt: Runtime, client: TestClient) -> None:
    seed(rt, services_count=2)
    cold = client.get("/p/acme/")  # a cold miss: routed, rendered, cached
    hot = client.get("/p/acme/")  # answered by the fast path
    assert hot.content == cold.content
    assert hot.headers["etag"] == cold.headers["etag"]
    assert hot.headers["content-type"] == "text/html; charset=utf-8"
    assert hot.headers["cache-control"] == cold.headers["cache-control"]
    assert (
        client.get("/p/acme/", headers={"If-None-Match": cold.headers["etag"]}).status_code == 304
    )
    head = client.head("/p/acme/")
    assert head.content == b"" and head.headers["content-length"] == str(len(cold.content))
    assert client.get("/p/acme/history").status_code == 200
