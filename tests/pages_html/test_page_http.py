"""The status page over HTTP: content, size, validators, archive, permalinks, assets."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from starlette.testclient import TestClient

from engine.accounts import create_api_key
from engine.runtime import Runtime
from engine.tables import assets, incidents, status_pages
from tests import factories as factory

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
    assert body.count(b"class=bar ") == 50
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
    assert "Service 1" in main and "class=bar" not in main and "uptime" not in main


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
    head = client.head("/p/acme/", headers={"Accept-Encoding": "identity"})
    assert head.content == b"" and head.headers["content-length"] == str(len(cold.content))
    assert client.get("/p/acme/history").status_code == 200


def test_the_outermost_fast_path_answers_only_on_beacons_own_hosts(rt: Runtime) -> None:
    from pages.app import create_app
    from pages.fastpath import outermost

    seed(rt, services_count=1)
    with rt.store.begin() as conn:
        team = factory.team(conn, "second")
        other = factory.page(conn, team, "other")
        conn.execute(
            status_pages.update()
            .where(status_pages.c.id == other)
            .values(custom_domain="status.other.test", domain_verified_at=datetime.now(UTC))
        )
    with TestClient(outermost(create_app(rt), rt)) as client:
        warm = client.get("/p/acme/")
        assert warm.status_code == 200
        assert client.get("/p/acme/").content == warm.content  # from the fast path
        # On another page's own host, /p/acme/ is not that host's page: 404, never acme.
        foreign = client.get("/p/acme/", headers={"Host": "status.other.test"})
        assert foreign.status_code == 404


def test_public_documents_are_gzipped_for_clients_that_take_it(
    rt: Runtime, client: TestClient
) -> None:

    seed(rt, services_count=5)
    for attempt in ("routed", "fast path"):
        plain = client.get("/p/acme/", headers={"Accept-Encoding": "identity"})
        packed = client.get("/p/acme/", headers={"Accept-Encoding": "br, gzip;q=0.8"})
        assert "content-encoding" not in plain.headers, attempt
        assert packed.headers["content-encoding"] == "gzip", attempt
        assert packed.content == plain.content  # httpx undoes the gzip
        assert packed.headers["etag"] != plain.headers["etag"]
        assert packed.headers["vary"] == "Accept-Encoding"
        assert int(packed.headers["content-length"]) < len(plain.content) / 3
        assert (
            client.get(
                "/p/acme/",
                headers={"Accept-Encoding": "gzip", "If-None-Match": packed.headers["etag"]},
            ).status_code
            == 304
        )
    raw = client.get("/p/acme/", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in raw.headers


def test_maintenance_in_progress_and_upcoming_is_shown(rt: Runtime, client: TestClient) -> None:
    ids = seed(rt, services_count=2, incidents_count=0)
    services: list[int] = ids["services"]  # type: ignore[assignment]
    with rt.store.begin() as conn:
        factory.maintenance(
            conn,
            ids["team"],  # type: ignore[arg-type]
            "Network switch swap",
            starts_at=NOW - timedelta(minutes=30),
            ends_at=NOW + timedelta(minutes=30),
            service_ids=[services[0]],
            status="in_progress",
            message="Brief packet loss is expected.",
        )
        factory.maintenance(
            conn,
            ids["team"],  # type: ignore[arg-type]
            "Database upgrade",
            starts_at=NOW + timedelta(days=3),
            ends_at=NOW + timedelta(days=3, hours=2),
            service_ids=[services[1]],
        )
    main = client.get("/p/acme/").text.split("<main")[1]
    section = main.split('id="h-maint"')[1].split("</section>")[0]
    assert section.index("Network switch swap") < section.index("Database upgrade")
    assert "In progress" in section and "Scheduled" in section
    assert "Brief packet loss is expected." in section
    assert "affects Service 0" in section


# --- issue 19: what a visitor reads -----------------------------------------------------------


def one_service_page(rt: Runtime, created_at: datetime) -> dict[str, int]:
    with rt.store.begin() as conn:
        team = factory.team(conn)
        api = factory.service(conn, team, "api", name="Public API", created_at=created_at)
        web = factory.service(conn, team, "web", name="Web App", created_at=created_at)
        page = factory.page(conn, team)
        factory.add_service(conn, page, api, 0)
        factory.add_service(conn, page, web, 1)
    return {"team": team, "api": api, "web": web, "page": page}


def test_a_service_created_today_with_a_short_outage_shows_over_99_8_percent(
    rt: Runtime, client: TestClient
) -> None:
    """Issue 19, acceptance: minutes after creation, a 2.5-minute outage weighs against
    the whole day, as on Statuspage (it read 43.3 %)."""
    now = datetime.now(UTC)
    ids = one_service_page(rt, now - timedelta(minutes=6))
    with rt.store.begin() as conn:
        factory.change(conn, ids["api"], "operational", "major_outage", now - timedelta(minutes=5))
        factory.change(
            conn, ids["api"], "major_outage", "operational", now - timedelta(minutes=2.5)
        )
    html = client.get("/p/acme/").text
    api = html.split(">Public API<")[1].split(">Web App<")[0]
    figures = [float(f) for f in re.findall(r">([\d.]+)% uptime<", api)]
    assert len(figures) == 2  # over 90 days, and over the 30 a phone shows
    assert all(99.8 <= f < 100 for f in figures), figures


def test_the_day_of_an_open_incident_lists_it_under_past_incidents(
    rt: Runtime, client: TestClient
) -> None:
    now = datetime.now(UTC)
    ids = one_service_page(rt, now - timedelta(days=30))
    with rt.store.begin() as conn:
        factory.incident(
            conn,
            ids["team"],
            "Checkout errors",
            started_at=now - min(timedelta(minutes=20), now - now.replace(hour=0, minute=0)),
            impacts={ids["api"]: "major_outage"},
            updates=[("investigating", "We are looking into it.", now)],
        )
    html = client.get("/p/acme/").text
    past = html.split('id="h-past"')[1].split("</section>")[0]
    today = past.split('<div class="day">')[1]
    assert "Checkout errors" in today
    assert "No incidents reported" not in today


def test_the_permalink_says_the_pages_impact_words_and_its_title_once(
    rt: Runtime, client: TestClient
) -> None:
    now = datetime.now(UTC)
    ids = one_service_page(rt, now - timedelta(days=30))
    with rt.store.begin() as conn:
        incident = factory.incident(
            conn,
            ids["team"],
            "Checkout errors",
            started_at=now - timedelta(hours=3),
            resolved_at=now - timedelta(hours=2),
            status="resolved",
            impact="critical",
            impacts={ids["api"]: "major_outage", ids["web"]: "partial_outage"},
            updates=[("resolved", "All good again.", now - timedelta(hours=2))],
        )
        public_id = conn.execute(
            sa.select(incidents.c.public_id).where(incidents.c.id == incident)
        ).scalar_one()
    page = client.get(f"/p/acme/incidents/{public_id}")
    main = page.text.split("<main")[1].split("</main>")[0]
    assert main.count("Checkout errors") == 1
    assert "critical" not in main.lower()
    assert "This incident affected: Public API (Major Outage) and Web App (Partial Outage)." in main
    # The page says the same of the same incident.
    index = client.get("/p/acme/").text
    assert "Public API (Major Outage) and Web App (Partial Outage)" in index


def test_with_a_logo_the_page_name_is_its_alt_text_and_shows_on_the_page(
    rt: Runtime, client: TestClient
) -> None:
    ids = one_service_page(rt, datetime.now(UTC) - timedelta(days=3))
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    with rt.store.begin() as conn:
        logo = conn.execute(
            assets.insert().values(
                sha256=hashlib.sha256(png).hexdigest(), content_type="image/png", data=png
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        conn.execute(
            status_pages.update()
            .where(status_pages.c.id == ids["page"])
            .values(logo_asset_id=logo, name="Northwind Status")
        )
    html = client.get("/p/acme/").text
    assert 'alt="Northwind Status"' in html
    body = re.sub(r"<[^>]+>", " ", html.split("<body")[1])  # the text a visitor reads
    assert body.count("Northwind Status") >= 2  # the subscribe form and the footer


def test_a_phone_gets_the_last_30_days_without_javascript_too(
    rt: Runtime, client: TestClient
) -> None:
    ids = one_service_page(rt, datetime.now(UTC) - timedelta(days=200))
    with rt.store.begin() as conn:
        # Down 40 days ago: outside what a phone shows.
        start = datetime.now(UTC) - timedelta(days=40)
        factory.change(conn, ids["api"], "operational", "major_outage", start)
        factory.change(conn, ids["api"], "major_outage", "operational", start + timedelta(hours=2))
    html = client.get("/p/acme/").text
    api = html.split(">Public API<")[1].split(">Web App<")[0]
    bar = re.search(r"<div class=bar [^>]*>(.*?)</div>", api)
    assert bar is not None
    runs = re.findall(r'<i class="(\w) f(\d+)( old)?"></i>', bar.group(1))
    assert sum(int(n) for _, n, _ in runs) == 90
    assert sum(int(n) for _, n, old in runs if not old) == 30
    assert {code for code, _, old in runs if not old} == {"o"}
    assert re.search(r"class=u30>100% uptime<", api)
    assert re.search(r"class=u90>99\.9\d*% uptime<", api)
    # No style attributes (the page's Content-Security-Policy has no 'unsafe-inline').
    assert " style=" not in html
