"""Managing a page's subscribers over the admin API: list and search, remove, import and
export CSV, the delivery log, the "who will hear" preview; and who may do any of it."""

from __future__ import annotations

import csv
import io
import re

import sqlalchemy as sa
from starlette.testclient import TestClient

from engine import subscribers as subs
from engine import vault
from engine.accounts import create_api_key
from engine.runtime import Runtime
from engine.security import new_token
from engine.tables import audit_log, outbox, subscribers
from tests.support import RecordingServer

from .conftest import (
    BASE_URL,
    Site,
    drain,
    emails,
    make_site,
    make_user,
    open_incident,
    sign_in,
    subscriber_rows,
)

CSV = {"content-type": "text/csv"}


def _admin(rt: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_api_key(rt.store, name='root', admin=True)}"}


def _add(
    rt: Runtime,
    site: Site,
    channel: str,
    address: str,
    *,
    confirmed: bool = True,
    services: list[str] | None = None,
    disabled: str | None = None,
) -> int:
    with rt.store.begin() as conn:
        # A webhook as the store keeps one: its URL sealed, found by a lookup digest.
        stored = (
            subs.webhook_columns(vault.of(conn), site.page_id, address)
            if channel == "webhook"
            else {"address": address}
        )
        inserted = conn.execute(
            subscribers.insert().values(
                page_id=site.page_id,
                channel=channel,
                **stored,
                services=services,
                confirmed=confirmed,
                confirm_selector=None if confirmed else new_token(16),
                link_selector=new_token(16),
                webhook_secret="whsec_dGVzdA==" if channel == "webhook" else None,
                disabled_reason=disabled,
            )
        ).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def _addresses(answer: dict[str, object]) -> list[str]:
    found = answer["subscribers"]
    assert isinstance(found, list)
    return [s["address"] for s in found]


def test_managers_list_and_search_subscribers_by_address_channel_and_state(
    rt: Runtime, client: TestClient
) -> None:
    site = make_site(rt)
    _add(rt, site, "email", "ann@example.com")
    _add(rt, site, "email", "bob@example.org", confirmed=False)
    _add(rt, site, "sms", "+4915112345678", services=["db"])
    _add(rt, site, "webhook", "https://hooks.example.com/very-secret-path")
    _add(rt, site, "email", "cat@example.com", disabled="bounced (3 permanent failures)")
    url = f"/api/v1/pages/{site.page_id}/subscribers"
    admin = _admin(rt)

    everyone = client.get(url, headers=admin).json()
    assert everyone["total"] == 5 and everyone["next_before"] is None
    assert _addresses(everyone) == [
        "cat@example.com",
        "https://hooks.example.com/…",  # a webhook's URL is its receiver's secret
        "+4915112345678",
        "bob@example.org",
        "ann@example.com",
    ]
    states = {s["address"]: s["state"] for s in everyone["subscribers"]}
    assert states["bob@example.org"] == "pending" and states["cat@example.com"] == "disabled"
    assert states["ann@example.com"] == "confirmed"
    assert "very-secret-path" not in client.get(url, headers=admin).text

    def search(**params: str) -> list[str]:
        answer = client.get(url, params=params, headers=admin)
        assert answer.status_code == 200, answer.text
        return _addresses(answer.json())

    assert search(q="ANN@") == ["ann@example.com"]
    assert search(q="+49 151 1234") == ["+4915112345678"]  # typed with spaces
    # A webhook is found by what managers see of it (its host), never by its hidden path.
    assert search(q="secret-path") == []
    assert search(q="hooks.example") == ["https://hooks.example.com/…"]
    assert search(q="50%") == []  # LIKE's wildcards are literal
    assert search(channel="email") == ["cat@example.com", "bob@example.org", "ann@example.com"]
    assert search(state="pending") == ["bob@example.org"]
    assert search(state="confirmed", channel="email") == ["ann@example.com"]
    assert search(state="disabled") == ["cat@example.com"]

    first = client.get(url, params={"limit": 2}, headers=admin).json()
    assert len(first["subscribers"]) == 2 and first["total"] == 5
    second = client.get(
        url, params={"limit": 2, "before": first["next_before"]}, headers=admin
    ).json()
    third = client.get(
        url, params={"limit": 2, "before": second["next_before"]}, headers=admin
    ).json()
    assert third["next_before"] is None
    paged = _addresses(first) + _addresses(second) + _addresses(third)
    assert paged == _addresses(everyone)

    for bad in ({"state": "happy"}, {"channel": "fax"}, {"limit": "0"}, {"before": "x"}):
        answer = client.get(url, params=bad, headers=admin)
        assert answer.status_code == 422, bad
        assert answer.json()["error"]["fields"][0]["field"] == next(iter(bad))


def test_removing_a_subscriber_stops_it_and_is_audited(rt: Runtime, client: TestClient) -> None:
    site = make_site(rt)
    other = make_site(rt, slug="other", team_key="other")
    ann = _add(rt, site, "email", "ann@example.com")
    elsewhere = _add(rt, other, "email", "ann@example.com")
    admin = _admin(rt)
    url = f"/api/v1/pages/{site.page_id}/subscribers"
    assert client.get(f"{url}/{ann}", headers=admin).json()["address"] == "ann@example.com"
    # Another page's subscriber is not this page's to remove.
    assert client.delete(f"{url}/{elsewhere}", headers=admin).status_code == 404
    assert client.delete(f"{url}/{ann}", headers=admin).status_code == 204
    assert client.delete(f"{url}/{ann}", headers=admin).status_code == 404
    assert [r.id for r in subscriber_rows(rt)] == [elsewhere]
    with rt.store.read() as conn:
        entry = conn.execute(
            sa.select(audit_log).where(audit_log.c.object_kind == "subscriber")
        ).one()
    assert entry.action == "delete" and entry.object_key == "acme: ann@example.com"


def test_an_import_sends_each_new_subscriber_a_confirmation(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    site = make_site(rt)
    admin = _admin(rt)
    body = "address,channel,services\nEve@Example.com,,api\n+49 151 1234 5678,sms,api db\n"
    answer = client.post(
        f"/api/v1/pages/{site.page_id}/subscribers/import",
        content=body.encode(),
        headers={**admin, **CSV},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "imported": 2,
        "already_subscribed": 0,
        "confirmed_now": 0,
        "confirmation": "sent",
        "confirmations_sent": 2,
    }
    rows = subscriber_rows(rt)
    assert [(r.channel, r.address, r.services) for r in rows] == [
        ("email", "eve@example.com", ["api"]),
        ("sms", "+4915112345678", ["api", "db"]),
    ]
    for row in rows:
        assert not row.confirmed and not row.confirmation_skipped
        assert row.imported_by == "api-key:root" and row.imported_at is not None

    drain(rt)
    (mail,) = emails(server)
    assert mail.to == "eve@example.com"
    match = re.search(re.escape(BASE_URL) + r"(/p/acme/subscriptions/confirm/[\w-]+)", mail.text)
    assert match, mail.text
    assert client.post(match.group(1)).status_code == 200
    assert subscriber_rows(rt)[0].confirmed
    sms = [r for r in server.requests if "/Messages.json" in str(r["path"])]
    assert len(sms) == 1


def test_an_import_skips_confirmation_only_when_told_and_records_it(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    site = make_site(rt)
    admin = _admin(rt)
    waiting = _add(rt, site, "email", "wait@example.com", confirmed=False)
    kept = _add(rt, site, "email", "kept@example.com", services=["db"])
    url = f"/api/v1/pages/{site.page_id}/subscribers/import"
    body = b"address\nnew@example.com\nwait@example.com\nkept@example.com\n"
    assert (
        client.post(url + "?skip_confirmation=yes", content=body, headers=admin).status_code == 422
    )
    answer = client.post(url + "?skip_confirmation=true", content=body, headers={**admin, **CSV})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "imported": 1,
        "already_subscribed": 2,
        "confirmed_now": 1,
        "confirmation": "skipped",
        "confirmations_sent": 0,
    }
    rows = {r.address: r for r in subscriber_rows(rt)}
    new = rows["new@example.com"]
    assert new.confirmed and new.confirmation_skipped and new.imported_by == "api-key:root"
    assert rows["wait@example.com"].id == waiting and rows["wait@example.com"].confirmed
    assert rows["wait@example.com"].confirmation_skipped
    # A confirmed subscriber is left as it was: its filter, no import recorded.
    assert rows["kept@example.com"].id == kept and rows["kept@example.com"].services == ["db"]
    assert rows["kept@example.com"].imported_by is None
    with rt.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar() == 0
    drain(rt)
    assert server.requests == []


def test_a_bad_csv_is_refused_with_row_and_column_and_nothing_is_imported(
    rt: Runtime, client: TestClient
) -> None:
    site = make_site(rt)
    private = make_site(rt, slug="inside", team_key="inside", private=True)
    admin = _admin(rt)
    url = f"/api/v1/pages/{site.page_id}/subscribers/import"

    def refused(body: bytes, page_url: str = url) -> list[dict[str, str]]:
        answer = client.post(page_url, content=body, headers={**admin, **CSV})
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["message"].startswith("nothing was imported: ")
        return [f"{f['field']}: {f['message']}" for f in error["fields"]]

    body = (
        b"address,channel,services\n"
        b"ok@example.com,email,\n"
        b"not an address,email,\n"
        b"x@example.com,email,api nope\n"
        b"https://hooks.example.com/h,webhook,\n"
        b"ok@example.com,,\n"
        b"y@example.com,fax,\n"
        b"z@example.com,email\n"
    )
    problems = refused(body)
    assert problems[0] == "row 3, column address: 'not an address' is not an email address"
    assert problems[1] == "row 4, column services: not services of this page: nope"
    assert problems[2].startswith("row 5, column channel: webhooks subscribe themselves")
    assert problems[3] == "row 6, column address: ok@example.com is on row 2 already"
    assert problems[4].startswith("row 7, column channel: unknown channel 'fax'")
    assert problems[5] == "row 8: 2 cells where the header has 3"
    assert subscriber_rows(rt) == []  # not even row 2

    assert refused(b"email\nx@example.com\n") == [
        "row 1, column email: unknown column (known: channel, address, services)",
        "row 1, column address: the address column is missing",
    ]
    assert refused(b"address\nx@example.com\n\xff\xfe\n") == [
        "row 3: the file is not UTF-8 text (save it as CSV UTF-8)"
    ]
    empty = client.post(url, content=b"", headers={**admin, **CSV})
    assert empty.status_code == 422 and "bytes are required" in empty.text
    assert refused(b"\n") == ["row 1: the file is empty: the first line names the columns"]
    assert refused(b"address\n") == ["row 1: the file has no subscribers, only its header"]
    assert refused(b'address\n"x@example.com\n')[0].startswith("row 2")  # a quote left open
    assert refused(b"address\nok@example.com\nx\x00@example.com\n") == [
        "row 3: the file holds a NUL character"
    ]
    inside = f"/api/v1/pages/{private.page_id}/subscribers/import"
    assert "private page" in refused(b"address\nx@example.com\n", inside)[0]
    # A spreadsheet's BOM and CRLF lines are read as they are.
    answer = client.post(
        url, content="\ufeffaddress\r\nok@example.com\r\n".encode(), headers={**admin, **CSV}
    )
    assert answer.status_code == 200 and answer.json()["imported"] == 1


def test_large_imports_are_bounded_with_a_clear_error(rt: Runtime, client: TestClient) -> None:
    site = make_site(rt)
    admin = _admin(rt)
    url = f"/api/v1/pages/{site.page_id}/subscribers/import"
    rows = "".join(f"user{n}@example.com\n" for n in range(10_001))
    answer = client.post(url, content=("address\n" + rows).encode(), headers={**admin, **CSV})
    assert answer.status_code == 422
    assert "more than 10000 subscribers: split the file" in answer.json()["error"]["message"]
    big = b"address\n" + b"a" * 1_000_000
    answer = client.post(url, content=big, headers={**admin, **CSV})
    assert answer.status_code == 413
    assert subscriber_rows(rt) == []


def test_an_export_is_csv_that_imports_again(rt: Runtime, client: TestClient) -> None:
    site = make_site(rt)
    copy = make_site(rt, slug="copy", team_key="copies")
    admin = _admin(rt)
    _add(rt, site, "email", "=cmd@example.com", services=["api"])
    _add(rt, site, "sms", "+4915112345678")
    _add(rt, site, "email", "wait@example.com", confirmed=False)
    exported = client.get(f"/api/v1/pages/{site.page_id}/subscribers.csv", headers=admin)
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert "no-store" in exported.headers["cache-control"]
    assert 'filename="acme-subscribers.csv"' in exported.headers["content-disposition"]
    lines = list(csv.reader(io.StringIO(exported.text)))
    assert lines[0] == [
        "channel",
        "address",
        "services",
        "state",
        "created_at",
        "imported_by",
        "confirmation_skipped",
    ]
    assert lines[1][:4] == ["email", "'=cmd@example.com", "api", "confirmed"]  # no formula
    assert lines[2][:4] == ["sms", "+4915112345678", "", "confirmed"]
    # The quote that kept a spreadsheet from running it is not part of the address: an
    # export of people (not webhooks) imports into another page as it is, once that
    # leading quote is taken off by whoever edits the file.
    fixed = exported.text.replace("'=cmd", "cmd")
    answer = client.post(
        f"/api/v1/pages/{copy.page_id}/subscribers/import?skip_confirmation=true",
        content=fixed.encode(),
        headers={**admin, **CSV},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["imported"] == 3


def test_the_delivery_log_shows_who_channel_state_reason_and_attempts(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    site = make_site(rt)
    admin = _admin(rt)
    _add(rt, site, "email", "ann@example.com")
    _add(rt, site, "webhook", "http://127.0.0.1:1/closed")  # nobody listens: a retry
    _add(rt, site, "email", "db-only@example.com", services=["db"])
    open_incident(rt, site, message="Looking.")
    drain(rt)
    page = f"/api/v1/pages/{site.page_id}"
    found = client.get(f"{page}/notifications", headers=admin).json()
    (notification,) = [n for n in found["notifications"] if n["kind"] == "incident-update"]
    assert notification["total"] == 2
    assert notification["by_state"]["sent"] == 1 and notification["by_state"]["pending"] == 1
    key = notification["key"]
    log = client.get(f"{page}/deliveries", params={"notification": key}, headers=admin).json()
    assert log["total"] == 2
    by_channel = {d["channel"]: d for d in log["deliveries"]}
    assert by_channel["email"]["address"] == "ann@example.com"
    assert by_channel["email"]["state"] == "sent" and by_channel["email"]["attempts"] == 1
    hook = by_channel["webhook"]
    assert hook["address"] == "http://127.0.0.1/…" and hook["state"] == "pending"
    assert hook["attempts"] == 1 and hook["reason"] and hook["next_attempt_at"]
    failing = client.get(
        f"{page}/deliveries", params={"state": "pending", "channel": "webhook"}, headers=admin
    ).json()
    # The webhook is also owed the component change (webhooks hear those), the email not.
    assert failing["total"] == 2 and hook["id"] in [d["id"] for d in failing["deliveries"]]
    assert {d["channel"] for d in failing["deliveries"]} == {"webhook"}
    narrowed = client.get(
        f"{page}/deliveries",
        params={"state": "pending", "channel": "webhook", "notification": key},
        headers=admin,
    ).json()
    assert [d["id"] for d in narrowed["deliveries"]] == [hook["id"]]
    assert client.get(f"{page}/deliveries", params={"q": "ann"}, headers=admin).json()["total"] == 1
    one = client.get(f"{page}/deliveries", params={"limit": 1}, headers=admin).json()
    assert one["next_before"] is not None
    assert (
        client.get(f"{page}/deliveries", params={"state": "lost"}, headers=admin).status_code == 422
    )


def test_the_preview_counts_confirmed_followers_per_channel_and_page(
    rt: Runtime, client: TestClient
) -> None:
    site = make_site(rt)
    with rt.store.begin() as conn:
        from engine.tables import page_services, page_teams, status_pages

        second = conn.execute(
            status_pages.insert().values(
                team_id=site.team_id, slug="db", name="DB Status", type="public", active=True
            )
        ).inserted_primary_key[0]
        conn.execute(page_teams.insert().values(page_id=second, team_id=site.team_id))
        conn.execute(
            page_services.insert().values(
                page_id=second, service_id=site.service_ids["db"], position=0
            )
        )
    _add(rt, site, "email", "all@example.com")
    _add(rt, site, "email", "api@example.com", services=["api"])
    _add(rt, site, "sms", "+4915112345678", services=["db"])
    _add(rt, site, "webhook", "https://hooks.example.com/h")
    _add(rt, site, "email", "wait@example.com", confirmed=False)
    _add(rt, site, "email", "gone@example.com", disabled="bounced")
    with rt.store.begin() as conn:
        conn.execute(
            subscribers.insert().values(
                page_id=second,
                channel="email",
                address="db@example.com",
                confirmed=True,
                link_selector=new_token(16),
            )
        )
    admin = _admin(rt)
    answer = client.get(
        "/api/v1/incidents/audience", params={"team": "platform", "services": "api"}, headers=admin
    ).json()
    assert answer["sentence"] == "3 subscribers on 1 page will be notified."
    assert answer["by_channel"] == {"email": 2, "sms": 0, "webhook": 1, "user": 0}
    assert [(p["slug"], p["subscribers"]) for p in answer["pages"]] == [("acme", 3)]
    both = client.get(
        "/api/v1/incidents/audience",
        params={"team": "platform", "services": f"api,{site.service_ids['db']}"},
        headers=admin,
    ).json()
    assert both["sentence"] == "5 subscribers on 2 pages will be notified."
    assert both["by_channel"] == {"email": 3, "sms": 1, "webhook": 1, "user": 0}
    unknown = client.get(
        "/api/v1/incidents/audience", params={"team": "platform", "services": "nope"}, headers=admin
    )
    assert unknown.status_code == 422
    huge = client.get(
        "/api/v1/incidents/audience",
        params={"team": "platform", "services": "9" * 30},
        headers=admin,
    )
    assert huge.status_code == 422  # not a service id the store could hold: no such service
    incident_id = open_incident(rt, site, "db", title="DB slow", impact="degraded", message="")
    update = client.get(f"/api/v1/incidents/{incident_id}/audience", headers=admin).json()
    assert update["sentence"] == "4 subscribers on 2 pages will be notified."
    assert update["by_channel"]["sms"] == 1


def test_only_the_pages_managers_see_or_change_its_subscribers(
    rt: Runtime, client: TestClient
) -> None:
    site = make_site(rt)  # team platform, not private
    hidden = make_site(rt, slug="hidden", team_key="hidden", private=True)
    make_site(rt, slug="b", team_key="teamb")
    ann = _add(rt, site, "email", "ann@example.com")
    own = {"Authorization": f"Bearer {create_api_key(rt.store, name='a', team='platform')}"}
    other = {"Authorization": f"Bearer {create_api_key(rt.store, name='b', team='teamb')}"}
    page = f"/api/v1/pages/{site.page_id}"
    urls = [
        f"{page}/subscribers",
        f"{page}/subscribers.csv",
        f"{page}/subscribers/{ann}",
        f"{page}/notifications",
        f"{page}/deliveries",
    ]
    for url in urls:
        assert client.get(url, headers=own).status_code == 200, url
        # Team B's responders read team A's pages (not private), never its subscribers.
        answer = client.get(url, headers=other)
        assert answer.status_code == 403, url
        assert "ann@example.com" not in answer.text
        hidden_url = url.replace(f"/pages/{site.page_id}/", f"/pages/{hidden.page_id}/")
        assert client.get(hidden_url, headers=own).status_code == 404, hidden_url
    assert client.get(page, headers=other).status_code == 200  # the page itself: read
    assert client.delete(f"{page}/subscribers/{ann}", headers=other).status_code == 403
    imported = client.post(
        f"{page}/subscribers/import", content=b"address\nx@example.com\n", headers=other
    )
    assert imported.status_code == 403
    assert len(subscriber_rows(rt)) == 1

    # A stakeholder of the page's team: the page, never its subscribers.
    make_user(rt, "sam@acme.test", teams=("platform",), role="stakeholder")
    sign_in(client, "sam@acme.test")
    for url in urls:
        assert client.get(url).status_code == 403, url
    assert client.get(f"/api/v1/incidents/{1}/audience").status_code == 403


def test_managers_add_subscribers_by_the_options_the_page_type_allows(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    site = make_site(rt)
    inside = make_site(rt, slug="inside", team_key="inside", private=True)
    make_user(rt, "ann@acme.test", teams=("inside",))
    make_user(rt, "outsider@acme.test", teams=("platform",))
    admin = _admin(rt)
    url = f"/api/v1/pages/{site.page_id}/subscribers"

    def add(page_url: str, **body: object) -> dict[str, object]:
        answer = client.post(page_url, json=body, headers=admin)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    email = add(url, channel="email", address="Eve@example.com", services=["api"])
    assert email["state"] == "pending" and email["confirmation"] == "sent"
    assert email["imported_by"] == "api-key:root" and email["confirmation_skipped"] is False
    vouched = add(url, channel="sms", address="+49 151 1234 5678", skip_confirmation=True)
    assert vouched["state"] == "confirmed" and vouched["confirmation"] == "skipped"
    assert vouched["confirmation_skipped"] is True
    hook = add(url, channel="webhook", address="https://hooks.example.com/h")
    assert str(hook["signing_secret"]).startswith("whsec_")
    assert hook["confirmation"] == "not needed" and hook["address"] == "https://hooks.example.com/…"
    # A public page's managers add account users too (iLert's option), by their email.
    user = add(url, channel="user", user="outsider@acme.test")
    assert user["state"] == "confirmed" and user["address"] == "outsider@acme.test"
    again = client.post(url, json={"channel": "email", "address": "eve@example.com"}, headers=admin)
    assert again.status_code == 409
    nobody = client.post(url, json={"channel": "user", "user": "who@acme.test"}, headers=admin)
    assert nobody.status_code == 422 and "no active user" in nobody.text

    # A private page: account users only, and only its teams' members.
    private_url = f"/api/v1/pages/{inside.page_id}/subscribers"
    refused = client.post(
        private_url, json={"channel": "email", "address": "x@example.com"}, headers=admin
    )
    assert refused.status_code == 422
    assert "a private page has no email subscribers (it offers: user)" in refused.text
    stranger = client.post(
        private_url, json={"channel": "user", "user": "outsider@acme.test"}, headers=admin
    )
    assert stranger.status_code == 422 and "not a member" in stranger.text
    assert add(private_url, channel="user", user="ann@acme.test")["state"] == "confirmed"

    # The account user on the public page hears the page's incidents at their address.
    open_incident(rt, site, message="")
    drain(rt)
    assert "outsider@acme.test" in {m.to for m in emails(server)}


def test_a_channel_the_installation_cannot_send_is_refused_for_adding_and_import(
    tmp_path: object, make_runtime: object, server: RecordingServer
) -> None:
    from pathlib import Path

    from pages.app import create_app

    from .conftest import settings_for

    assert isinstance(tmp_path, Path) and callable(make_runtime)
    rt = make_runtime(settings_for(tmp_path, server, BEACON_TWILIO_ACCOUNT_SID=""))
    site = make_site(rt)
    admin = _admin(rt)
    with TestClient(create_app(rt)) as client:
        url = f"/api/v1/pages/{site.page_id}/subscribers"
        answer = client.post(
            url, json={"channel": "sms", "address": "+4915112345678"}, headers=admin
        )
        assert answer.status_code == 422 and "Twilio is not set" in answer.text
        answer = client.post(
            url + "/import", content=b"address,channel\n+4915112345678,sms\n", headers=admin
        )
        assert answer.status_code == 422 and "Twilio is not set" in answer.text
    assert subscriber_rows(rt) == []
