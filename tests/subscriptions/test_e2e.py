"""End to end on a real `beacon serve`: the confirmation travels outbox -> embedded worker ->
SendGrid stand-in, and its link confirms; a user made with `beacon user create` signs in."""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from engine import migrate
from tests.support import (
    RecordingServer,
    beacon,
    beacon_env,
    data_store,
    deliver_alertmanager,
    serve,
    serve_config,
    wait_for,
)

from .conftest import make_site, sent_json


@pytest.mark.e2e
def test_a_subscription_is_confirmed_through_a_running_server(
    tmp_path: Path, server: RecordingServer
) -> None:
    data_dir = tmp_path / "data"
    with data_store(data_dir, upgrade=True) as store:
        make_site(SimpleNamespace(store=store))  # type: ignore[arg-type]
    env = {
        "BEACON_SENDGRID_API_KEY": "SG.test",
        "BEACON_SENDGRID_API_URL": server.url,
        "BEACON_BASE_URL": "http://status.test",
    }
    with serve(data_dir, env=env) as base:
        answer = httpx.post(
            f"{base}/p/acme/subscribe",
            data={"channel": "email", "address": "eve@example.com"},
            timeout=10,
        )
        assert answer.status_code == 202
        mails = _wait_for_mail(server)
        text = mails[0]["content"][0]["value"]
        match = re.search(r"http://status\.test(/p/acme/subscriptions/confirm/[\w-]+)", text)
        assert match, text
        shown = httpx.get(base + match.group(1), timeout=10)
        assert shown.status_code == 200 and "Confirm subscription" in shown.text
        confirmed = httpx.post(base + match.group(1), timeout=10)
        assert confirmed.status_code == 200 and "Subscription confirmed" in confirmed.text


def _wait_for_mail(server: RecordingServer, timeout: float = 30) -> list[dict[str, Any]]:
    # Waiting for the worker, not timing it: the deadline only bounds a broken run.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mails = sent_json(server)
        if mails:
            return mails
        time.sleep(0.1)
    raise AssertionError("no confirmation mail reached the SendGrid stand-in")


@pytest.mark.e2e
def test_a_user_made_with_the_cli_signs_in_on_a_running_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = beacon_env(data_dir, {"BEACON_USER_PASSWORD": "s3cret-enough"})
    with data_store(data_dir) as store:
        migrate.upgrade(store)
    made = beacon(["user", "create", "ana@acme.test", "--role", "stakeholder"], env)
    assert made.returncode == 0, made.stderr
    with serve(data_dir) as base, httpx.Client(base_url=base, timeout=10) as client:
        form = client.get("/login").text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        answer = client.post(
            "/login",
            data={"email": "ana@acme.test", "password": "s3cret-enough", "csrf": csrf},
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        assert "ana@acme.test" in client.get("/login").text


CONFIG = """
teams:
  - {key: platform}
services:
  - {key: api, name: Public API, team: platform}
  - {key: db, name: Database, team: platform}
status_pages:
  - slug: acme
    name: ACME Status
    type: public
    teams: [platform]
    services: [api, db]
    active: true
"""


@pytest.mark.e2e
def test_an_incident_opened_over_the_admin_api_reaches_a_webhook_subscriber(
    tmp_path: Path, server: RecordingServer
) -> None:
    import json

    import sqlalchemy as sa
    from standardwebhooks import Webhook

    from engine.tables import services

    data_dir = tmp_path / "data"
    config = tmp_path / "beacon.yaml"
    config.write_text(CONFIG)
    env = beacon_env(data_dir)
    applied = beacon(["apply", str(config)], env)
    assert applied.returncode == 0, applied.stderr
    made = beacon(["apikey", "create", "--admin", "--name", "e2e"], env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[0]
    with data_store(data_dir) as store, store.read() as conn:
        api_id = conn.execute(sa.select(services.c.id).where(services.c.key == "api")).scalar()

    extra = {"BEACON_WEBHOOK_ALLOW_PRIVATE": "true"}
    with serve(data_dir, env=extra) as base, httpx.Client(base_url=base, timeout=10) as client:
        subscribed = client.post(
            "/p/acme/subscribe", json={"channel": "webhook", "address": f"{server.url}/hook"}
        )
        assert subscribed.status_code == 201, subscribed.text
        secret = subscribed.json()["signing_secret"]
        opened = client.post(
            "/api/v1/incidents",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "team": "platform",
                "title": "API down",
                "message": "We are investigating.",
                "impacts": {str(api_id): "major_outage"},
            },
        )
        assert opened.status_code in (200, 201), opened.text
        request = _wait_for(server, b'"incident"')
    body = json.loads(request["body"])  # type: ignore[arg-type]
    assert body["incident"]["name"] == "API down"
    assert body["page"]["status_indicator"] == "critical"
    headers = request["headers"]
    assert isinstance(headers, dict)
    # What docs/subscriptions.md shows a receiver doing, with the same library.
    assert Webhook(secret).verify(request["body"], headers)["incident"]["name"] == "API down"  # type: ignore[arg-type]


def _wait_for(server: RecordingServer, marker: bytes, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request in list(server.requests):
            if marker in request["body"]:  # type: ignore[operator]
                return request
        time.sleep(0.1)
    raise AssertionError(f"nothing with {marker!r} reached the stand-in")


# --- an alert's incident, told once opened and once resolved ----------------------------------

ALERTS_CONFIG = """
teams:
  - {key: platform}
services:
  - {key: api, name: Public API, team: platform}
  - {key: db, name: Database, team: platform}
alert_sources:
  - {key: am, name: Alertmanager, type: alertmanager, team: platform,
     integration_key: am-e2e-0123456789}
incident_templates:
  - key: api-outage
    team: platform
    title: "{{ services[0].name }} is unavailable"
    message: "We are investigating errors on the API."
    resolve_message: "The API is back."
    services: {api: major_outage}
status_pages:
  - {slug: acme, name: ACME Status, type: public, teams: [platform], services: [api, db]}
  - {slug: beta, name: Beta Status, type: public, teams: [platform], services: [db]}
rules: [rules.yaml]
"""

ALERTS_RULES = """
version: 1
rules:
  - id: fire-opens-an-incident
    match: {source: am, labels.alertname: Fire}
    services: [api]
    then:
      - set_status: major_outage
      - open_incident: {template: api-outage, notify: true}
  - id: ping-sets-a-status
    match: {source: am, labels.alertname: ICMP ping failed}
    services: [db]
    then:
      - set_status: partial_outage
"""


class Receiver:
    """A subscriber's webhook endpoint: every request must verify with the `standardwebhooks`
    library under the secret Beacon gave at subscribe time, as docs/subscriptions.md shows a
    receiver doing; keeps the payloads that verified."""

    def __init__(self, server: RecordingServer) -> None:
        self.server = server
        self.secret = ""

    def payloads(self) -> list[dict[str, Any]]:
        from standardwebhooks import Webhook

        out = []
        for request in list(self.server.requests):
            headers = request["headers"]
            assert isinstance(headers, dict) and isinstance(request["body"], bytes)
            out.append(Webhook(self.secret).verify(request["body"], headers))
        return out

    def incident_statuses(self) -> list[str]:
        return [p["incident"]["status"] for p in self.payloads() if "incident" in p]


def _messages(sendgrid: Any, twilio: Any) -> dict[str, list[str]]:
    """Each recipient's messages (email: subject and text; SMS: body), in order."""
    out: dict[str, list[str]] = {}
    for address, subject, text in sendgrid.rendered():
        out.setdefault(address, []).append(f"{subject}\n{text}")
    for form in list(twilio.messages):
        out.setdefault(form["To"], []).append(form["Body"])
    return out


def _link(text: str, kind: str) -> str:
    match = re.search(rf"http://status\.test(/p/\w+/subscriptions/{kind}/[\w-]+)", text)
    assert match, text
    return match.group(1)


def _settled(data_dir: Path) -> bool:
    """No delivery is waiting to be sent or retried (nothing more can arrive)."""
    import sqlalchemy as sa

    from engine.tables import deliveries

    with data_store(data_dir) as store, store.read() as conn:
        return not conn.execute(
            sa.select(sa.func.count()).where(deliveries.c.status.in_(["pending", "sending"]))
        ).scalar_one()


@pytest.mark.e2e
@pytest.mark.slow
def test_an_alerts_incident_reaches_each_confirmed_subscriber_once_opened_and_once_resolved(
    tmp_path: Path, server: RecordingServer
) -> None:
    """Through a running `beacon serve` (embedded) and stand-ins that check requests as
    SendGrid and Twilio do, answer slowly, and refuse the first two tries of the opening
    and of the resolution (429 with Retry-After, then 503): people
    subscribe on every channel through the public routes and confirm with the button the
    captured link shows; an Alertmanager alert opens an incident with notify, its resolve
    resolves it. Each confirmed subscriber hears the opening once and the resolution once;
    the unconfirmed, the unsubscribed, one who follows only another service and another
    page's subscriber hear nothing; a rule that only sets a status tells people nothing."""
    from tests.standins import SendGrid, Twilio

    data_dir = tmp_path / "data"
    receiver = Receiver(server)
    with (
        SendGrid(delay=0.2) as sendgrid,
        Twilio(delay=0.2) as twilio,
    ):
        env = {
            "BEACON_BASE_URL": "http://status.test",
            "BEACON_SENDGRID_API_KEY": "SG.test",
            "BEACON_SENDGRID_API_URL": sendgrid.url,
            "BEACON_EMAIL_FROM": "status@acme.test",
            "BEACON_TWILIO_ACCOUNT_SID": "AC123",
            "BEACON_TWILIO_AUTH_TOKEN": "token",
            "BEACON_TWILIO_FROM": "+15550001111",
            "BEACON_TWILIO_API_URL": twilio.url,
            "BEACON_WEBHOOK_ALLOW_PRIVATE": "true",
        }
        with serve_config(tmp_path, ALERTS_CONFIG, ALERTS_RULES, env) as client:
            people = {
                # address: (page, services followed)
                "ana@example.com": ("acme", None),
                "+15550002222": ("acme", None),
                "una@example.com": ("acme", None),  # never confirms
                "ulf@example.com": ("acme", None),  # confirms, then unsubscribes
                "fay@example.com": ("acme", ["db"]),  # follows the other service only
                "bob@example.com": ("beta", None),  # another page
            }
            for address, (slug, services) in people.items():
                form: dict[str, Any] = {
                    "channel": "sms" if address.startswith("+") else "email",
                    "address": address,
                }
                if services:
                    form["services"] = services
                answer = client.post(f"/p/{slug}/subscribe", data=form)
                assert answer.status_code == 202, answer.text
            hook = client.post(
                "/p/acme/subscribe", json={"channel": "webhook", "address": f"{server.url}/hook"}
            )
            assert hook.status_code == 201, hook.text
            receiver.secret = hook.json()["signing_secret"]

            # Confirm through the link each confirmation carries: GET shows a button, the
            # button POSTs.
            wait_for(
                lambda: set(_messages(sendgrid, twilio)) >= set(people),
                60,
                "every confirmation at its stand-in",
            )
            for address in people:
                if address == "una@example.com":
                    continue
                [confirmation] = _messages(sendgrid, twilio)[address]
                path = _link(confirmation, "confirm")
                shown = client.get(path)
                assert shown.status_code == 200 and 'method="post"' in shown.text
                confirmed = client.post(path)
                assert "Subscription confirmed" in confirmed.text, confirmed.text
                if address == "ulf@example.com":
                    unsubscribe = _link(confirmed.text.replace("&amp;", "&"), "unsubscribe")
                    gone = client.post(unsubscribe)
                    assert gone.status_code == 200, gone.text

            def alert(fixture: str) -> None:
                deliver_alertmanager(client, "am-e2e-0123456789", fixture)

            # A rule that only sets a status: webhooks hear the component, people nothing.
            alert("firing_grouped_nested_route.json")
            wait_for(
                lambda: any("component" in p for p in receiver.payloads()),
                60,
                "the component update at the webhook",
            )
            wait_for(lambda: _settled(data_dir), 60, "the deliveries to settle")
            assert all(len(m) == 1 for m in _messages(sendgrid, twilio).values())

            told = ["ana@example.com", "+15550002222"]
            for standin in (sendgrid, twilio):  # the opening's first two tries fail
                standin.fail_first = standin.requests + 2
            alert("firing_single.json")
            wait_for(
                lambda: (
                    all(len(_messages(sendgrid, twilio)[a]) == 2 for a in told)
                    and receiver.incident_statuses()
                ),
                90,
                "the opening at every confirmed subscriber",
            )
            for standin in (sendgrid, twilio):  # and so do the resolution's
                standin.fail_first = standin.requests + 2
            alert("resolved_single.json")
            wait_for(
                lambda: (
                    all(len(_messages(sendgrid, twilio)[a]) >= 3 for a in told)
                    and "resolved" in receiver.incident_statuses()
                ),
                90,
                "the resolution at every confirmed subscriber",
            )
            wait_for(lambda: _settled(data_dir), 60, "the deliveries to settle")
            time.sleep(2)  # anything still on its way arrives
            messages = _messages(sendgrid, twilio)

    assert sendgrid.failed == twilio.failed == 4  # the retries were real
    for address in told:
        _confirmation, opening, resolution = messages[address]
        assert "Public API is unavailable" in opening and "Investigating" in opening
        assert "Public API is unavailable" in resolution and "Resolved" in resolution
    opened, resolved = receiver.incident_statuses()
    assert (opened, resolved) == ("investigating", "resolved")
    for address in ("una@example.com", "ulf@example.com", "fay@example.com", "bob@example.com"):
        assert len(messages[address]) == 1, (address, messages[address])  # the confirmation
