"""Healthchecks.io webhooks: bodies without a content type, GET URLs, templates."""

from __future__ import annotations

import orjson
import pytest

from adapters.alert_sources import AdapterError, Delivery
from adapters.alert_sources.healthchecks import parse
from tests.adapters import RECEIVED, Ev, Expect, check_fixture, parse_fixture

# Healthchecks adds no Content-Type to raw bodies (meta: hc/lib/curl.py).
NO_CONTENT_TYPE = {"user-agent": "healthchecks.io"}
UUID = "803f680d-e89b-492b-82ef-2be7b774a92d"

EXPECTATIONS: dict[str, Expect] = {
    "healthchecks/down_rendered_now_check_json.json": Expect(
        headers=NO_CONTENT_TYPE,
        events=[
            Ev(
                status="firing",
                dedup_key=f"check:{UUID}",
                severity="critical",
                summary="Database Backup is down",
                labels={
                    "check_id": UUID,
                    "check_name": "Database Backup",
                    "check_slug": "database-backup",
                    "tags": "production db",
                    "tag.production": "true",
                    "tag.db": "true",
                },
                occurred_at="2020-03-23T10:39:32+00:00",  # $NOW
                links=[],
            )
        ],
    ),
    # The URL template puts $CODE and $STATUS in the path, which Beacon's intake URL cannot
    # carry: only ?name= arrives, so the delivery is refused naming the missing status.
    "healthchecks/get_url_only_down.txt": Expect(error="status: expected 'down' or 'up', got ''"),
    "healthchecks/template_docs_now_check_json.txt": Expect(
        headers=NO_CONTENT_TYPE,
        error="'$JSON' at character 25 is an unrendered template placeholder",
    ),
    "healthchecks/template_zenduty_fields.txt": Expect(
        headers=NO_CONTENT_TYPE, error="name: unrendered template variable '$NAME'"
    ),
    "healthchecks/up_rendered_zenduty_fields.json": Expect(
        headers=NO_CONTENT_TYPE,
        events=[
            Ev(
                status="resolved",
                dedup_key=f"check:{UUID}",
                severity="critical",
                summary="Database Backup is up",
                labels={"check_id": UUID, "check_name": "Database Backup"},
                occurred_at="2020-03-23T10:45:03+00:00",  # "current time"
            )
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_in_its_meta(name: str) -> None:
    check_fixture("healthchecks", name, EXPECTATIONS[name])


def test_down_and_up_of_one_check_share_the_dedup_key() -> None:
    (down,) = parse_fixture(
        "healthchecks", "healthchecks/down_rendered_now_check_json.json", Expect()
    )
    (up,) = parse_fixture("healthchecks", "healthchecks/up_rendered_zenduty_fields.json", Expect())
    assert down.dedup_key == up.dedup_key


def test_it_reads_the_recommended_get_url_from_its_query_string() -> None:
    query = {"status": "down", "code": UUID, "name": "Database Backup"}
    (event,) = parse(Delivery(body=b"", received_at=RECEIVED, query=query), {})
    assert (event.status, event.dedup_key, event.occurred_at) == (
        "firing",
        f"check:{UUID}",
        RECEIVED,
    )


def test_the_test_button_check_is_a_test_event() -> None:
    body = orjson.dumps({"status": "down", "code": "0c6e3f0e", "name": "TEST"})
    (event,) = parse(Delivery(body=body, received_at=RECEIVED), {})
    assert event.test is True


def test_the_flip_status_wins_over_the_nested_check_status() -> None:
    body = orjson.dumps({"status": "up", "check": {"status": "down", "uuid": UUID}})
    (event,) = parse(Delivery(body=body, received_at=RECEIVED), {})
    assert event.status == "resolved"


def test_it_names_an_unknown_status() -> None:
    body = orjson.dumps({"status": "grace", "code": UUID})
    with pytest.raises(AdapterError, match="status: expected 'down' or 'up', got 'grace'"):
        parse(Delivery(body=body, received_at=RECEIVED), {})


def test_it_reads_a_form_style_body_sent_without_a_content_type() -> None:
    body = f"status=up&code={UUID}&name=Database+Backup".encode()
    (event,) = parse(Delivery(body=body, received_at=RECEIVED), {})
    assert (event.status, event.labels["check_name"]) == ("resolved", "Database Backup")
