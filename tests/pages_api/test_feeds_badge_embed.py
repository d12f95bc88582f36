"""Feeds, maintenance calendar, badge and embed script: they parse with the tools their
readers use (feedparser, icalendar, an XML parser)."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import feedparser
import icalendar

from engine.tables import utcnow
from pages.feeds import fold, ical_escape

from . import seed
from .conftest import App


def test_rss_parses_cleanly_with_one_item_per_incident(app: App) -> None:
    rich = seed.rich_page(app.store)
    response = app.client.get("/p/acme/history.rss")
    assert response.headers["content-type"] == "application/rss+xml; charset=utf-8"
    feed = feedparser.parse(response.content)
    assert feed.bozo == 0, feed.get("bozo_exception")
    assert feed.version == "rss20"
    assert [e.title for e in feed.entries] == ["Elevated API errors", "Website slow"]
    assert feed.feed.title == "Acme Status - Incident History"
    assert feed.entries[0].link.endswith(f"/p/acme/incidents/{rich.open_incident}")
    assert "A bad deploy; rolling back." in feed.entries[0].summary


def test_atom_parses_cleanly_with_one_entry_per_incident(app: App) -> None:
    rich = seed.rich_page(app.store)
    response = app.client.get("/p/acme/history.atom")
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    feed = feedparser.parse(response.content)
    assert feed.bozo == 0, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title == "Acme Status - Incident History"
    assert [e.id for e in feed.entries] == [
        f"http://127.0.0.1:8000/p/acme/incidents/{rich.open_incident}",
        f"http://127.0.0.1:8000/p/acme/incidents/{rich.resolved_incident}",
    ]
    assert "Fixed." in feed.entries[1].content[0].value


def test_feeds_stay_well_formed_whatever_titles_hold(app: App) -> None:
    from engine import incidents

    page = seed.page(app.store, "acme")
    with app.store.begin() as conn:
        incidents.create(
            conn,
            team_id=page.team_id,
            title='<b>Broken</b> & "quoted" ]]> \u2603',
            message="<script>alert(1)</script>",
            impacts={page.service_ids["api"]: "degraded"},
        )
    for path in ("/p/acme/history.rss", "/p/acme/history.atom"):
        feed = feedparser.parse(app.client.get(path).content)
        assert feed.bozo == 0
        assert feed.entries[0].title == '<b>Broken</b> & "quoted" ]]> \u2603'


def test_maintenance_calendar_is_rfc5545_with_one_event_per_window(app: App) -> None:
    rich = seed.rich_page(app.store)
    response = app.client.get("/p/acme/maintenance.ics")
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    assert b"\r\n" in response.content and b"\n\n" not in response.content
    cal = icalendar.Calendar.from_ical(response.content)
    assert str(cal["VERSION"]) == "2.0" and "PRODID" in cal
    events = {str(e["UID"]).split("@")[0]: e for e in cal.walk("VEVENT")}
    assert set(events) == {rich.upcoming, rich.active, rich.completed}
    upcoming = events[rich.upcoming]
    assert str(upcoming["SUMMARY"]) == "Database upgrade"
    assert "Affected: Database" in str(upcoming["DESCRIPTION"])
    assert upcoming.decoded("DTSTART") > utcnow()
    assert upcoming.decoded("DTEND") > upcoming.decoded("DTSTART")
    assert str(upcoming["STATUS"]) == "TENTATIVE"


def test_calendar_text_is_escaped_and_long_lines_folded() -> None:
    assert ical_escape("a;b,c\\d\ne") == "a\\;b\\,c\\\\d\\ne"
    line = "DESCRIPTION:" + "\u00e9" * 100
    folded = fold(line)
    assert all(len(part.encode()) <= 75 for part in folded.split("\r\n"))
    assert folded.replace("\r\n ", "") == line


def test_badge_is_svg_coloured_by_the_indicator(app: App) -> None:
    seed.rich_page(app.store)
    response = app.client.get("/p/acme/badge.svg")
    assert response.headers["content-type"] == "image/svg+xml"
    root = ET.fromstring(response.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == ["status", "Partial System Outage"]
    fills = [r.get("fill") for r in root.iter("{http://www.w3.org/2000/svg}rect")]
    assert fills == ["#555", "#a3360a"]


def contrast(foreground: str, background: str) -> float:
    """WCAG 2's contrast ratio of two #rgb or #rrggbb colours."""

    def luminance(colour: str) -> float:
        hex_ = colour.lstrip("#")
        if len(hex_) == 3:
            hex_ = "".join(c * 2 for c in hex_)
        channels = [int(hex_[i : i + 2], 16) / 255 for i in (0, 2, 4)]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_badge_text_keeps_wcag_aa_contrast_on_every_colour() -> None:
    """Issue 19: white on light green read 2:1. Small text needs 4.5:1 (WCAG AA)."""
    from engine.models import Impact
    from engine.status import PageStatus
    from pages.badge import badge

    for impact in Impact:
        svg = ET.fromstring(badge(PageStatus(impact, "Some description")))
        text = svg.find("{http://www.w3.org/2000/svg}g")
        assert text is not None
        rects = [r.get("fill") for r in svg.iter("{http://www.w3.org/2000/svg}rect")]
        for fill in rects:
            assert contrast(text.get("fill") or "", fill or "") >= 4.5, (impact, fill)


def test_badge_of_a_quiet_page_is_green(app: App) -> None:
    seed.page(app.store, "acme")
    root = ET.fromstring(app.client.get("/p/acme/badge.svg").content)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == ["status", "All Systems Operational"]


def test_embed_script_reads_the_pages_status_json(app: App) -> None:
    seed.page(app.store, "acme")
    response = app.client.get("/p/acme/embed.js")
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["access-control-allow-origin"] == "*"
    body = response.text
    assert 'var STATUS_URL = "http://testserver/p/acme/api/v2/status.json";' in body
    assert 'status.indicator === "none"' in body


def test_embed_script_on_a_custom_domain_points_at_its_root(app: App) -> None:
    seed.page(app.store, "acme", custom_domain="status.acme.test")
    body = app.client.get("/embed.js", headers={"Host": "status.acme.test"}).text
    assert 'var STATUS_URL = "http://status.acme.test/api/v2/status.json";' in body


def test_feed_titles_add_status_only_where_the_name_lacks_it() -> None:
    from pages.feeds import feed_title

    assert feed_title("Northwind Status") == "Northwind Status - Incident History"
    assert feed_title("ACME") == "ACME Status - Incident History"
