"""The helpers every adapter shares: one way to build an event, to turn fields into labels
and to refuse a template posted as a delivery."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from adapters.alert_sources import AdapterError, Delivery
from adapters.alert_sources.common import (
    labels_of,
    make_event,
    parse_time,
    refuse_dollar_variable,
    refuse_placeholder,
)
from engine.models import AlertEvent, EventStatus
from tests.adapters import RECEIVED

ADAPTERS = Path(__file__).resolve().parents[2] / "adapters" / "alert_sources"


def _event(**fields: Any) -> AlertEvent:
    base: dict[str, Any] = {
        "source_type": "test",
        "dedup_key": "k",
        "status": EventStatus.FIRING,
        "occurred_at": RECEIVED,
        "received_at": RECEIVED,
    }
    return make_event(expected="Test webhook", **{**base, **fields})


def test_no_adapter_builds_an_alert_event_by_hand() -> None:
    # Bounding, cutting and error reporting live in make_event only if every adapter uses it.
    by_hand = [
        path.name
        for path in sorted(ADAPTERS.glob("*.py"))
        if path.name != "common.py" and "AlertEvent(" in path.read_text()
    ]
    assert by_hand == []


def test_an_over_long_key_stays_distinct_and_a_long_summary_is_cut() -> None:
    first = _event(dedup_key="x" * 600 + "a", summary="s" * 2500)
    second = _event(dedup_key="x" * 600 + "b")
    assert len(first.dedup_key) <= 512
    assert first.dedup_key != second.dedup_key
    assert first.summary == "s" * 2000


def test_a_refused_field_is_named_with_the_expected_format() -> None:
    with pytest.raises(AdapterError, match=r"occurred_at: .*\(Test webhook\)$"):
        _event(occurred_at="not a time")


def test_labels_leave_out_nulls_and_empty_strings_and_read_as_alert_event_spells_them() -> None:
    values: dict[str, Any] = {
        "none": None,
        "empty": "",
        "text": "a",
        "zero": 0,
        "flag": False,
        "ratio": 1e-05,
        "big": 2**70,
        "list": [1, "b"],
    }
    given_raw = _event(labels={k: v for k, v in values.items() if v not in (None, "")}).labels
    assert labels_of(values) == given_raw
    assert labels_of(values) == {
        "text": "a",
        "zero": "0",
        "flag": "false",
        "ratio": "1e-05",
        "big": str(2**70),
        "list": '[1,"b"]',
    }


def test_a_dollar_variable_is_refused_wherever_it_is_nested() -> None:
    document = {"title": "CPU on web-1", "check": {"tags": ["prod", " $TAGS "]}}
    with pytest.raises(AdapterError, match=r"check\.tags\[1\]: unrendered template variable"):
        refuse_dollar_variable(document, template="body template", expected="Test webhook")


def test_a_dollar_inside_text_is_not_a_variable() -> None:
    refuse_dollar_variable({"desc": "costs $USD 5"}, template="body template", expected="T")


def test_a_placeholder_is_refused_with_where_it_is_and_why() -> None:
    pattern = re.compile(r"\{\{[^}]*\}\}")
    with pytest.raises(
        AdapterError, match=r"^id: unrendered placeholder \{\{id\}\}: this is the template, not"
    ):
        refuse_placeholder("{{id}}", pattern, "id", expected="Test webhook")


def test_times_past_the_ends_of_the_calendar_are_a_clear_adapter_error() -> None:
    # Valid RFC 3339 text, but in UTC before year 1 or after year 9999.
    for text in ("0001-01-01T00:00:00+02:00", "9999-12-31T23:00:00-05:00"):
        with pytest.raises(AdapterError, match="out of range"):
            parse_time(text, field="startsAt")
    assert parse_time("0001-01-01T00:00:00Z", field="startsAt").year == 1


@pytest.mark.parametrize(
    ("body", "placeholder"),
    [
        (b'{"title": {{ .CommonLabels.alertname }}}', "{{ .CommonLabels.alertname }}"),
        (b'{"check": $JSON}', "$JSON"),
        (b'{"subject": {ALERT.SUBJECT}}', "{ALERT.SUBJECT}"),
        (b'{"url": *monitorURL*}', "*monitorURL*"),
        (b'{"name": ${name}}', "${name}"),
        # Characters before it that take several bytes: the position counts characters.
        ('{"msg": "[API] [🔴 Down] café", "check": $JSON}'.encode(), "$JSON"),
    ],
)
def test_a_template_posted_unrendered_is_named_as_one(body: bytes, placeholder: str) -> None:
    with pytest.raises(AdapterError) as raised:
        Delivery(body=body, received_at=RECEIVED).json(expected="X")
    assert f"{placeholder!r} at character" in str(raised.value)
    assert "unrendered template placeholder" in str(raised.value)


def test_a_placeholder_away_from_where_the_json_breaks_is_not_blamed() -> None:
    # A truncated body whose text mentions $USD: the break is the truncation.
    with pytest.raises(AdapterError) as raised:
        Delivery(body=b'{"msg": "costs $USD 5", "a": [1,', received_at=RECEIVED).json(expected="X")
    assert "placeholder" not in str(raised.value)
