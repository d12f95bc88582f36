"""Pingdom state-change webhooks."""

from __future__ import annotations

import orjson
import pytest

from adapters.alert_sources import AdapterError, Delivery
from adapters.alert_sources.pingdom import parse
from tests.adapters import RECEIVED, Ev, Expect, check_fixture, parse_fixture

JSON = {"content-type": "application/json"}
ALERTA = {
    "check_id": "803318",
    "check_name": "Alerta API on OpenShift",
    "check_type": "HTTP",
    "host": "api.alerta.io",
    "port": "80",
    "check_url": "http://api.alerta.io/",
    "importance_level": "HIGH",
}

EXPECTATIONS: dict[str, Expect] = {
    "pingdom/http_down_with_importance_level_2017.json": Expect(
        headers=JSON,
        events=[
            Ev(
                status="firing",
                dedup_key="check:803318",
                severity="critical",  # importance_level HIGH
                summary="Alerta API on OpenShift: HTTP Error 503",
                labels={**ALERTA, "previous_state": "UP", "current_state": "DOWN"},
                occurred_at="2017-06-30T22:25:43Z",
                links=["http://api.alerta.io/"],
            )
        ],
    ),
    "pingdom/http_up_to_down.json": Expect(
        headers=JSON,
        events=[
            Ev(
                status="firing",
                dedup_key="check:2048467",
                severity="critical",  # older payload: no importance_level
                summary="Test check: DNS error",
                labels={
                    "check_id": "2048467",
                    "check_name": "Test check",
                    "check_type": "HTTP",
                    "host": "someurl.com",
                    "port": "80",
                    "check_url": "http://someurl.com/",
                    "previous_state": "UP",
                    "current_state": "DOWN",
                },
                occurred_at="2016-03-14T07:10:34Z",
                links=["http://someurl.com/"],
            )
        ],
    ),
    "pingdom/http_up_with_importance_level_2017.json": Expect(
        headers=JSON,
        events=[
            Ev(
                status="resolved",
                dedup_key="check:803318",
                severity="critical",
                summary="Alerta API on OpenShift: OK",
                labels={**ALERTA, "previous_state": "DOWN", "current_state": "UP"},
                occurred_at="2017-06-30T22:30:43Z",
            )
        ],
    ),
    "pingdom/imap_down_to_up.json": Expect(
        headers=JSON,
        events=[
            Ev(
                status="resolved",
                dedup_key="check:2051859",
                severity="critical",
                summary="IMAP check: OK",
                labels={
                    "check_id": "2051859",
                    "check_name": "IMAP check",
                    "check_type": "IMAP",
                    "host": "imap.someurl.com",
                    "port": "993",
                    "previous_state": "DOWN",
                    "current_state": "UP",
                },
                occurred_at="2016-03-15T19:33:00Z",
                links=[],
            )
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_in_its_meta(name: str) -> None:
    check_fixture("pingdom", name, EXPECTATIONS[name])


def test_down_and_up_of_one_check_share_the_dedup_key() -> None:
    down = "pingdom/http_down_with_importance_level_2017.json"
    up = "pingdom/http_up_with_importance_level_2017.json"
    (fire,) = parse_fixture("pingdom", down, Expect())
    (end,) = parse_fixture("pingdom", up, Expect())
    assert fire.dedup_key == end.dedup_key


def change(**fields: object) -> Delivery:
    document = {"check_id": 1, "check_name": "Shop", "current_state": "FAILING", **fields}
    return Delivery(body=orjson.dumps(document), received_at=RECEIVED)


def test_transaction_checks_fail_and_succeed() -> None:
    (fail,) = parse(change(importance_level="LOW"), {})
    (ok,) = parse(change(current_state="SUCCESSFUL"), {})
    assert (fail.status, fail.severity, ok.status) == ("firing", "warning", "resolved")


def test_it_names_an_unknown_state() -> None:
    with pytest.raises(AdapterError, match="current_state: expected one of DOWN.*'MAYBE'"):
        parse(change(current_state="MAYBE"), {})


def test_it_names_a_missing_check_id() -> None:
    body = orjson.dumps({"current_state": "DOWN"})
    with pytest.raises(AdapterError, match="check_id: field required"):
        parse(Delivery(body=body, received_at=RECEIVED), {})
