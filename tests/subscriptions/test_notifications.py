"""What subscribers receive: Statuspage's webhook envelope (signed), emails with one-click
unsubscribe, SMS; who receives what; failures retried or disabling the subscriber."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import jinja2
import pytest
import sqlalchemy as sa
from standardwebhooks import Webhook
from starlette.testclient import TestClient

from engine import deadlines, incidents, maintenance, status
from engine.runtime import Runtime
from engine.security import new_token
from engine.tables import deliveries, incident_updates, services, subscribers, utcnow
from tests.support import RecordingServer
from workers import fanout, messages
from workers.fanout import handle_incident_update

from .conftest import (
    BASE_URL,
    Site,
    body_of,
    drain,
    emails,
    make_site,
    open_incident,
    sent_json,
    sms_sent,
    subscriber_rows,
)


def subscribe(
    rt: Runtime, site: Site, channel: str, address: str, services_filter: list[str] | None = None
) -> int:
    with rt.store.begin() as conn:
        inserted = conn.execute(
            subscribers.insert().values(
                page_id=site.page_id,
                channel=channel,
                address=address,
                services=services_filter,
                confirmed=True,
                link_selector=new_token(16),
                webhook_secret="whsec_test" if channel == "webhook" else None,
            )
        ).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def hook_bodies(server: RecordingServer) -> list[dict[str, Any]]:
    return [
        json.loads(r["body"])  # type: ignore[arg-type]
        for r in server.requests
        if str(r["path"]).startswith("/hook")
    ]


def test_webhooks_get_statuspages_envelope_signed_with_their_secret(
    rt: Runtime, server: RecordingServer
) -> None:
    site = make_site(rt)
    subscribe(rt, site, "webhook", f"{server.url}/hook")
    open_incident(rt, site)
    drain(rt)
    request = next(r for r in server.requests if b'"incident"' in r["body"])  # type: ignore[operator]
    body = json.loads(request["body"])  # type: ignore[arg-type]
    assert list(body) == ["meta", "page", "incident"]
    assert set(body["meta"]) == {"unsubscribe", "documentation", "generated_at"}
    assert body["meta"]["unsubscribe"].startswith(f"{BASE_URL}/p/acme/subscriptions/unsubscribe/")
    assert body["page"]["status_indicator"] == "critical"
    assert body["page"]["status_description"] == "Major System Outage"
    incident = body["incident"]
    for name in (
        "id",
        "name",
        "status",
        "created_at",
        "updated_at",
        "monitoring_at",
        "resolved_at",
        "impact",
        "shortlink",
        "started_at",
        "page_id",
        "incident_updates",
        "components",
    ):
        assert name in incident, name
    assert incident["name"] == "API errors" and incident["impact"] == "critical"
    (update,) = incident["incident_updates"]
    assert update["body"] == "We are investigating." and update["deliver_notifications"]
    assert update["affected_components"][0]["new_status"] == "major_outage"
    assert incident["components"][0]["status"] == "major_outage"

    headers = request["headers"]
    assert isinstance(headers, dict)
    assert Webhook("whsec_test").verify(body_of(request), headers) == body
    with rt.store.read() as conn:
        delivery_ids = set(conn.execute(sa.select(deliveries.c.id)).scalars())
    assert headers["webhook-id"] in {f"msg_{i}" for i in delivery_ids}


def _override(rt: Runtime, service_id: int, status_: str = "degraded") -> None:
    with rt.store.begin() as conn:
        conn.execute(
            services.update()
            .where(services.c.id == service_id)
            .values(override_status=status_, override_until=utcnow() + timedelta(hours=1))
        )
        status.recompute(conn, [service_id], cause_kind="override")


def test_a_bare_status_change_reaches_webhooks_and_people_on_a_page_that_opts_in(
    rt_each_step: Runtime, server: RecordingServer
) -> None:
    rt = rt_each_step
    site = make_site(rt, notify_component_changes=True)
    subscribe(rt, site, "webhook", f"{server.url}/hook")
    subscribe(rt, site, "email", "eve@example.com")
    _override(rt, site.service_ids["db"])
    drain(rt)
    (hook,) = hook_bodies(server)
    assert list(hook) == ["meta", "page", "component", "component_update"]
    assert hook["component"]["name"] == "DB service"
    assert hook["component"]["status"] == "degraded_performance"
    update = hook["component_update"]
    assert (update["old_status"], update["new_status"]) == ("operational", "degraded_performance")
    assert update["component_type"] == "Component"
    assert update["component_id"] == hook["component"]["id"]
    (mail,) = [m for m in sent_json(server) if "personalizations" in m]
    assert mail["subject"] == "[Acme Status] DB service: Degraded Performance"


def test_a_bare_status_change_tells_people_nothing_by_default(
    rt: Runtime, server: RecordingServer
) -> None:
    site = make_site(rt)
    subscribe(rt, site, "webhook", f"{server.url}/hook")
    subscribe(rt, site, "email", "eve@example.com")
    subscribe(rt, site, "sms", "+4915112345678")
    _override(rt, site.service_ids["db"])
    drain(rt)
    assert [list(b)[-1] for b in hook_bodies(server)] == ["component_update"]
    assert [m for m in sent_json(server) if "personalizations" in m] == []
    assert sms_sent(server) == []


def test_a_rule_claim_that_comes_with_an_incident_tells_people_once_even_when_opted_in(
    rt: Runtime, server: RecordingServer
) -> None:
    """The rule's claim and its incident are one step: people hear the incident only."""
    site = make_site(rt, notify_component_changes=True)
    subscribe(rt, site, "email", "eve@example.com")
    subscribe(rt, site, "webhook", f"{server.url}/hook")
    api = site.service_ids["api"]
    with rt.store.begin() as conn:
        conn.execute(
            services.update().where(services.c.id == api).values(override_status="major_outage")
        )
        status.recompute(conn, [api], cause_kind="rule")
        incidents.create(
            conn,
            team_id=site.team_id,
            title="API errors",
            message="We are investigating.",
            impacts={api: "major_outage"},
        )
    drain(rt)
    mails = [m for m in sent_json(server) if "personalizations" in m]
    assert [m["subject"] for m in mails] == ["[Acme Status] API errors"]
    # Webhooks still hear both, as Statuspage sends them.
    assert sorted(list(b)[-1] for b in hook_bodies(server)) == ["component_update", "incident"]


def test_an_incidents_component_change_goes_to_webhooks_only(
    rt: Runtime, server: RecordingServer
) -> None:
    site = make_site(rt)
    subscribe(rt, site, "webhook", f"{server.url}/hook")
    subscribe(rt, site, "email", "eve@example.com")
    open_incident(rt, site)
    drain(rt)
    assert sorted(list(b)[-1] for b in hook_bodies(server)) == ["component_update", "incident"]
    mails = [m for m in sent_json(server) if "personalizations" in m]
    assert [m["subject"] for m in mails] == ["[Acme Status] API errors"]


def test_emails_have_text_html_and_one_click_unsubscribe(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    site = make_site(rt)
    subscribe(rt, site, "email", "eve@example.com")
    open_incident(rt, site, title="API <b>errors</b>")
    drain(rt)
    (mail,) = emails(server)
    text, html = mail.text, mail.html
    assert "API <b>errors</b>" in text and "Investigating - We are investigating." in text
    assert "API &lt;b&gt;errors&lt;/b&gt;" in html  # user text is escaped in HTML
    assert f"{BASE_URL}/p/acme/incidents/" in text
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = mail.headers["List-Unsubscribe"].strip("<>")
    assert url in text and f'href="{url}"' in html
    manage = url.replace("/unsubscribe/", "/manage/")  # the subscriber's own page
    assert f"Change what you follow: {manage}" in text and f'href="{manage}"' in html
    response = client.post(
        url.removeprefix(BASE_URL),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert subscriber_rows(rt) == []


def test_sms_subscribers_get_a_short_text(rt: Runtime, server: RecordingServer) -> None:
    site = make_site(rt)
    subscribe(rt, site, "sms", "+4915112345678")
    open_incident(rt, site)
    drain(rt)
    (sms,) = sms_sent(server)
    assert sms["To"] == "+4915112345678"
    assert sms["Body"].startswith("Acme Status: API errors - Investigating: We are investigating.")
    assert len(sms["Body"]) <= 320


def test_a_service_filter_limits_what_a_subscriber_hears(
    rt: Runtime, server: RecordingServer
) -> None:
    site = make_site(rt)
    subscribe(rt, site, "email", "api-only@example.com", ["api"])
    subscribe(rt, site, "email", "db-only@example.com", ["db"])
    subscribe(rt, site, "email", "all@example.com")
    open_incident(rt, site, key="db")
    drain(rt)
    to = sorted(e.to for e in emails(server))
    assert to == ["all@example.com", "db-only@example.com"]


def test_nothing_is_sent_without_deliver_notifications_or_confirmation(
    rt: Runtime, server: RecordingServer
) -> None:
    site = make_site(rt)
    subscribe(rt, site, "email", "eve@example.com")
    with rt.store.begin() as conn:
        conn.execute(
            subscribers.insert().values(
                page_id=site.page_id,
                channel="email",
                address="unconfirmed@example.com",
                confirmed=False,
                confirm_selector=new_token(16),
                link_selector=new_token(16),
            )
        )
    incident_id = open_incident(rt, site, notify=False)
    drain(rt)
    assert server.requests == []
    with rt.store.begin() as conn:
        incidents.resolve(conn, incident_id, message="Fixed.")
    drain(rt)
    to = [m["personalizations"][0]["to"][0]["email"] for m in sent_json(server)]
    assert to == ["eve@example.com"]


def test_maintenance_steps_are_sent_when_the_window_notifies(
    rt_each_step: Runtime, server: RecordingServer
) -> None:
    rt = rt_each_step
    site = make_site(rt)
    subscribe(rt, site, "email", "eve@example.com")
    now = utcnow()
    with rt.store.begin() as conn:
        window = maintenance.create(
            conn,
            team_id=site.team_id,
            title="Database upgrade",
            starts_at=now + timedelta(hours=1),
            ends_at=now + timedelta(hours=2),
            service_ids=[site.service_ids["db"]],
            message="Upgrading to 17.",
            notify=True,
        )
        maintenance.create(
            conn,
            team_id=site.team_id,
            title="Quiet window",
            starts_at=now + timedelta(hours=1),
            ends_at=now + timedelta(hours=2),
            service_ids=[site.service_ids["db"]],
        )
    drain(rt)
    with rt.store.begin() as conn:
        maintenance.start(conn, window)
    drain(rt)
    subjects = [m["subject"] for m in sent_json(server)]
    assert subjects == [
        "[Acme Status] Scheduled: Database upgrade",
        "[Acme Status] In progress: Database upgrade",
    ]


def test_three_permanent_failures_in_a_row_disable_the_subscriber_with_the_reason(
    rt: Runtime, server: RecordingServer
) -> None:
    site = make_site(rt)
    subscriber_id = subscribe(rt, site, "webhook", f"{server.url}/hook")
    # The incident and its component change: two permanent failures, still enabled.
    server.answer(410, {"error": "gone"})
    server.answer(410, {"error": "gone"})
    incident_id = open_incident(rt, site, impact="degraded")
    drain(rt)
    (row,) = subscriber_rows(rt)
    assert row.disabled_reason is None and row.permanent_failures == 2
    with rt.store.read() as conn:
        statuses = set(conn.execute(sa.select(deliveries.c.status)).scalars())
    assert statuses == {"failed"}
    # The third in a row disables it, with the reason.
    server.answer(410, {"error": "gone"})
    with rt.store.begin() as conn:
        incidents.post_update(conn, incident_id, status="identified", message="Found it.")
    drain(rt)
    (row,) = subscriber_rows(rt)
    assert row.id == subscriber_id and "410" in (row.disabled_reason or "")
    assert "3 permanent failures in a row" in (row.disabled_reason or "")
    before = len(server.requests)
    with rt.store.begin() as conn:
        incidents.resolve(conn, incident_id, message="Fixed.")
    drain(rt)
    assert len(server.requests) == before  # a disabled subscriber gets nothing more


def test_a_success_between_permanent_failures_starts_the_count_again(
    rt: Runtime, server: RecordingServer
) -> None:
    site = make_site(rt)
    subscribe(rt, site, "email", "eve@example.com")
    for answers in ([400, 400], [202], [400, 400]):
        for code in answers:
            server.answer(code, {"errors": [{"message": "bad"}]} if code == 400 else {})
        for _ in answers:
            open_incident(rt, site, notify=True)
        drain(rt)
    (row,) = subscriber_rows(rt)
    assert row.disabled_reason is None and row.permanent_failures == 2


def test_a_temporary_failure_is_retried_and_sent_once(rt: Runtime, server: RecordingServer) -> None:
    site = make_site(rt)
    subscribe(rt, site, "email", "eve@example.com")
    open_incident(rt, site, notify=True)
    with rt.store.read() as conn:
        update_id = conn.execute(sa.select(sa.func.max(incident_updates.c.id))).scalar_one()
    server.answer(503, {"errors": [{"message": "busy"}]})
    handle_incident_update(rt, [{"update_id": update_id}])
    with rt.store.read() as conn:
        (delivery,) = conn.execute(sa.select(deliveries)).all()
        key = f"incident-update:{update_id}:page:{site.page_id}"
        resume = deadlines.get(conn, fanout.RESUME, key)
    assert delivery.status == "pending" and "503" in (delivery.last_error or "")
    assert delivery.attempts == 1 and delivery.next_attempt_at is not None
    assert resume is not None and resume.due_at == delivery.next_attempt_at
    handle_incident_update(rt, [{"update_id": update_id}])  # not due yet: nothing sent
    assert len(server.requests) == 1
    with rt.store.begin() as conn:  # its time comes
        conn.execute(deliveries.update().values(next_attempt_at=utcnow()))
        deadlines.schedule(conn, fanout.RESUME, resume.key, utcnow(), resume.payload)
    drain(rt)
    handle_incident_update(rt, [{"update_id": update_id}])
    with rt.store.read() as conn:
        (delivery,) = conn.execute(sa.select(deliveries)).all()
    assert delivery.status == "sent" and delivery.attempts == 2
    assert len(server.requests) == 2
    assert subscriber_rows(rt)[0].disabled_reason is None


def test_message_templates_refuse_missing_values() -> None:
    with pytest.raises(jinja2.UndefinedError):
        messages.email("incident", {"page": {"name": "x", "url": "u"}})
    with pytest.raises(ValueError, match="unknown message kind"):
        messages.sms("nope", {})


def test_a_delivery_stuck_in_sending_is_retried_only_after_its_lease(
    rt: Runtime, server: RecordingServer
) -> None:
    from workers import fanout

    site = make_site(rt)
    subscribe(rt, site, "email", "eve@example.com")
    open_incident(rt, site, notify=True)
    with rt.store.read() as conn:
        update_id = conn.execute(sa.select(sa.func.max(incident_updates.c.id))).scalar_one()
        (notice,) = fanout.incident_notices(conn, rt.settings, update_id)
    fanout.expand(rt, notice)
    with rt.store.begin() as conn:  # another worker claimed it just now and is sending
        conn.execute(deliveries.update().values(status="sending", updated_at=utcnow()))
    handle_incident_update(rt, [{"update_id": update_id}])
    assert server.requests == []
    with rt.store.begin() as conn:  # that worker died mid-send long ago
        conn.execute(deliveries.update().values(updated_at=utcnow() - timedelta(minutes=3)))
    handle_incident_update(rt, [{"update_id": update_id}])
    assert len(server.requests) == 1
    with rt.store.read() as conn:
        assert conn.execute(sa.select(deliveries.c.status)).scalar_one() == "sent"
