"""Sentry integration-platform webhooks: issue alerts, issues, metric alerts, signatures."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from adapters.alert_sources import AdapterError, Delivery, SignatureError
from adapters.alert_sources.sentry import parse, verify
from tests.adapters import ALERT_SOURCES, RECEIVED, Ev, Expect, check_fixture, parse_fixture

FIXTURE_ISSUE_RESOLVED = ALERT_SOURCES / "sentry/issue_resolved_real.json"
FIXTURE_METRIC_RESOLVED = ALERT_SOURCES / "sentry/metric_alert_resolved_docs.json"


def hook(resource: str) -> dict[str, str]:
    """The headers Sentry sends (meta: AppPlatformEvent), for one resource."""
    return {
        "content-type": "application/json",
        "request-id": "8b3bdb9f5f2a4f52a3e6f47b2a1c0d9e",
        "sentry-hook-resource": resource,
        "sentry-hook-timestamp": str(int(RECEIVED.timestamp())),
    }


EXPECTATIONS: dict[str, Expect] = {
    "sentry/event_alert_triggered_docs.json": Expect(
        headers=hook("event_alert"),
        events=[
            Ev(
                status="firing",
                dedup_key="issue:1117540176",
                severity="high",  # level error
                summary="ReferenceError: heck is not defined",
                labels={
                    "resource": "event_alert",
                    "action": "triggered",
                    "rule": "Very Important Alert Rule!",
                    "issue_id": "1117540176",
                    "level": "error",
                    "platform": "javascript",
                    "project_id": "1",
                    "tag.browser": "Chrome 75.0.3770",
                    "tag.browser.name": "Chrome",
                    "tag.handled": "no",
                    "tag.level": "error",
                    "tag.mechanism": "onerror",
                    "tag.os": "Mac OS X 10.14.0",
                    "tag.os.name": "Mac OS X",
                    "tag.user": "ip:162.217.75.90",
                    "tag.url": "https://null.jsbin.com/runner",
                },
                occurred_at="2019-08-19T21:06:17.677Z",
                links=[
                    "https://sentry.io/organizations/test-org/issues/1117540176/events/"
                    "e4874d664c3540c1a32eab185f12c5ab/"
                ],
            )
        ],
    ),
    "sentry/issue_created_docs.json": Expect(
        headers=hook("issue"),
        events=[
            Ev(
                status="firing",
                dedup_key="issue:1170820242",
                severity="high",
                summary="ReferenceError: blooopy is not defined",
                labels={
                    "resource": "issue",
                    "action": "created",
                    "issue_id": "1170820242",
                    "short_id": "FRONT-END-9",
                    "level": "error",
                    "issue_status": "unresolved",
                    "platform": "javascript",
                    "project": "front-end",
                    "project_id": "1",
                },
                occurred_at="2019-08-19T20:58:37.391Z",  # firstSeen
                links=[],
            )
        ],
    ),
    "sentry/issue_resolved_real.json": Expect(
        headers=hook("issue"),
        events=[
            Ev(
                status="resolved",
                dedup_key="issue:1638821441",
                severity="high",
                summary="Exception: program has entered an invalid state.",
                labels={
                    "resource": "issue",
                    "action": "resolved",
                    "issue_id": "1638821441",
                    "short_id": "ZULIP-INTEGRATION-TESTING-E",
                    "level": "error",
                    "issue_status": "resolved",
                    "platform": "python",
                    "project": "zulip-integration-testing",
                    "project_id": "5216640",
                },
                occurred_at="received",  # Sentry does not say when it was resolved
            )
        ],
    ),
    "sentry/metric_alert_resolved_docs.json": Expect(
        headers=hook("metric_alert"),
        events=[
            Ev(
                status="resolved",
                dedup_key="metric_alert:4",
                severity="info",
                summary="Resolved: Too many errors",
                labels={
                    "resource": "metric_alert",
                    "action": "resolved",
                    "metric_alert_id": "4",
                    "alert_rule": "Too many errors",
                    "alert_rule_id": "7",
                    "projects": "bar",
                },
                occurred_at="received",  # date_closed is null
                links=["https://sentry.io/organizations/baz/alerts/1/"],
            )
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_in_its_meta(name: str) -> None:
    check_fixture("sentry", name, EXPECTATIONS[name])


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_tells_the_resource_from_the_body_when_the_header_is_missing(name: str) -> None:
    without = Expect(events=EXPECTATIONS[name].events)
    check_fixture("sentry", name, without)


def test_an_issue_alert_and_the_issues_resolve_share_the_dedup_key() -> None:
    (alert,) = parse_fixture("sentry", "sentry/event_alert_triggered_docs.json", Expect())
    document = orjson.loads(FIXTURE_ISSUE_RESOLVED.read_bytes())
    document["data"]["issue"]["id"] = "1117540176"
    (resolved,) = parse(
        Delivery(body=orjson.dumps(document), received_at=RECEIVED, headers=hook("issue")), {}
    )
    assert (alert.status, resolved.status) == ("firing", "resolved")
    assert alert.dedup_key == resolved.dedup_key


def test_metric_alert_firing_and_resolved_share_the_dedup_key() -> None:
    document = orjson.loads(FIXTURE_METRIC_RESOLVED.read_bytes())
    (end,) = parse(Delivery(body=orjson.dumps(document), received_at=RECEIVED), {})
    document["action"] = "critical"
    document["data"]["description_title"] = "Critical: Too many errors"
    (fire,) = parse(Delivery(body=orjson.dumps(document), received_at=RECEIVED), {})
    assert (fire.status, fire.severity, end.status) == ("firing", "critical", "resolved")
    assert fire.dedup_key == end.dedup_key
    assert fire.occurred_at.isoformat() == "2020-09-13T12:26:40+00:00"  # date_started


def test_assignment_and_other_resources_give_no_event() -> None:
    document = orjson.loads(FIXTURE_ISSUE_RESOLVED.read_bytes())
    document["action"] = "assigned"
    body = orjson.dumps(document)
    assert parse(Delivery(body=body, received_at=RECEIVED, headers=hook("issue")), {}) == []
    assert parse(Delivery(body=body, received_at=RECEIVED, headers=hook("comment")), {}) == []


def test_it_names_a_bad_metric_alert_action() -> None:
    document = orjson.loads(FIXTURE_METRIC_RESOLVED.read_bytes())
    document["action"] = "exploded"
    with pytest.raises(AdapterError, match="action: expected critical, warning or resolved"):
        parse(Delivery(body=orjson.dumps(document), received_at=RECEIVED), {})


# --- signatures -------------------------------------------------------------------------

SECRET = "client-secret-123"


def signed(signature: str | None, body: bytes) -> Delivery:
    headers = hook("issue")
    if signature is not None:
        headers["sentry-hook-signature"] = signature
    return Delivery(body=body, received_at=RECEIVED, headers=headers)


def digest(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_it_accepts_a_valid_signature_over_the_raw_body() -> None:
    body = FIXTURE_ISSUE_RESOLVED.read_bytes()  # as sent: pretty-printed, not re-serialised
    verify(signed(digest(body), body), SECRET, {}, RECEIVED)


def test_it_rejects_an_invalid_signature() -> None:
    body = FIXTURE_ISSUE_RESOLVED.read_bytes()
    with pytest.raises(SignatureError, match="signature in Sentry-Hook-Signature does not match"):
        verify(signed(digest(body, "wrong"), body), SECRET, {}, RECEIVED)


def test_it_rejects_a_signature_over_the_reserialised_body() -> None:
    body = FIXTURE_ISSUE_RESOLVED.read_bytes()
    compact = orjson.dumps(orjson.loads(body))
    with pytest.raises(SignatureError):
        verify(signed(digest(compact), body), SECRET, {}, RECEIVED)


def test_it_rejects_a_missing_signature() -> None:
    with pytest.raises(SignatureError, match="missing signature header Sentry-Hook-Signature"):
        verify(signed(None, b"{}"), SECRET, {}, RECEIVED)


def stamped(stamp: str, body: bytes) -> Delivery:
    delivery = signed(digest(body), body)
    return Delivery(
        body=body,
        received_at=RECEIVED,
        headers={**delivery.headers, "sentry-hook-timestamp": stamp},
    )


def test_it_accepts_a_fresh_timestamp() -> None:
    stamp = str(int(RECEIVED.timestamp()) - 20)
    verify(stamped(stamp, b"{}"), SECRET, {}, RECEIVED)


def test_it_rejects_a_stale_timestamp_even_with_a_valid_signature() -> None:
    stamp = str(int(RECEIVED.timestamp()) - 3600)
    with pytest.raises(SignatureError, match="stale or replayed"):
        verify(stamped(stamp, b"{}"), SECRET, {}, RECEIVED)


def test_the_timestamp_check_can_be_turned_off() -> None:
    stamp = str(int(RECEIVED.timestamp()) - 3600)
    verify(stamped(stamp, b"{}"), SECRET, {"max_skew_seconds": None}, RECEIVED)


def test_it_rejects_a_malformed_timestamp() -> None:
    for stamp in ("yesterday", "nan", "١٢٣"):
        with pytest.raises(SignatureError, match="Sentry-Hook-Timestamp"):
            verify(stamped(stamp, b"{}"), SECRET, {}, RECEIVED)


def reopened(headers: dict[str, str]) -> Delivery:
    """The created fixture as Sentry sends a reopen: action unresolved, lastSeen unchanged."""
    document = orjson.loads((ALERT_SOURCES / "sentry/issue_created_docs.json").read_bytes())
    document["action"] = "unresolved"
    return Delivery(body=orjson.dumps(document), received_at=RECEIVED, headers=headers)


def test_a_reopened_issue_is_dated_when_sentry_sent_it_not_by_last_seen() -> None:
    # Dated by lastSeen (2019 here), a reopen would be older than the resolve before it,
    # be ignored as a late firing, and the issue could never turn its service red again.
    headers = {**hook("issue"), "sentry-hook-timestamp": str(int(RECEIVED.timestamp()) - 5)}
    (event,) = parse(reopened(headers), {})
    assert event.status == "firing"
    assert (RECEIVED - event.occurred_at).total_seconds() == 5
    without = {k: v for k, v in hook("issue").items() if k != "sentry-hook-timestamp"}
    (event,) = parse(reopened(without), {})
    assert event.occurred_at == RECEIVED
