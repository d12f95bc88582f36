"""Property-based tests: whatever arrives, an adapter answers with events or an AdapterError.

Random bytes, random JSON, random form and query fields, and mutations of every fixture are
fed to every adapter in `ADAPTERS` whose module exists yet. The only allowed outcomes are a
list of `AlertEvent`s (with JSON-serialisable `raw`) or an `AdapterError` with a message;
`verify` may only pass or raise `SignatureError`. Example counts are kept small so the
module runs in seconds.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.alert_sources import (
    ADAPTERS,
    AdapterError,
    AlertSource,
    Delivery,
    SignatureError,
    signed,
)
from engine.models import AlertEvent
from tests.adapters import ALERT_SOURCES, RECEIVED, delivery_from_file


def importable_adapters() -> dict[str, ModuleType]:
    """The registered adapters whose modules exist on this branch."""
    modules = {}
    for source_type, path in ADAPTERS.items():
        try:
            modules[source_type] = importlib.import_module(path)
        except ModuleNotFoundError as exc:
            if exc.name != path:
                raise  # a broken import inside an adapter is a bug, not "not written yet"
    return modules


MODULES = importable_adapters()
TYPES = sorted(MODULES)
FIXTURE_FILES = sorted(p for p in ALERT_SOURCES.glob("*/*") if p.suffix in (".json", ".txt"))
FAST = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# Field names the adapters look for, so random fields sometimes reach deeper code.
FIELD_NAMES = st.sampled_from(
    [
        "data",
        "msg",
        "heartbeat",
        "monitor",
        "monitorID",
        "alertType",
        "alert_type",
        "monitorFriendlyName",
        "alertDateTime",
        "status",
        "code",
        "name",
        "now",
        "title",
        "alert_transition",
        "date",
        "event",
        "alerts",
        "state",
    ]
) | st.text(max_size=12)
SMALL_INTS = st.integers(min_value=-(2**53), max_value=2**53)
# Now and then a value longer than any limit of AlertEvent (dedup key 512, summary 2000).
LONG_TEXT = st.sampled_from(["x" * 3000, "é" * 600, "1" * 40])
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | SMALL_INTS
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | LONG_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(FIELD_NAMES, children, max_size=5)
    ),
    max_leaves=20,
)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "x-grafana-alerting-signature",
            "x-pagerduty-signature",
            "sentry-hook-signature",
            "sentry-hook-resource",
            "x-webhook-id",
            "content-type",
            "x-grafana-alerting-timestamp",
        ]
    ),
    st.text(max_size=70),
    max_size=4,
)
FIELDS = st.dictionaries(FIELD_NAMES, st.text(max_size=40) | LONG_TEXT, max_size=5)


def check_outcome(module: ModuleType, delivery: Delivery) -> None:
    """The adapter returns events or raises an AdapterError with a message; nothing else."""
    try:
        events = module.parse(delivery, {})
    except AdapterError as exc:
        assert str(exc).strip(), "an AdapterError must say what was wrong"
    else:
        assert isinstance(events, list)
        for event in events:
            assert isinstance(event, AlertEvent)
            orjson.dumps(event.raw)
    signer = signed(cast(AlertSource, module))
    if signer is not None:
        try:
            signer.verify(delivery, "fuzz-secret", {}, RECEIVED)
        except SignatureError as exc:
            assert str(exc).strip()


def test_every_adapter_of_this_branch_imports() -> None:
    mine = {
        "alertmanager",
        "grafana",
        "uptime-kuma",
        "uptimerobot",
        "datadog",
        "healthchecks",
        "pagerduty",
        "pingdom",
        "sentry",
    }
    assert mine <= set(MODULES)


@pytest.mark.parametrize("source_type", TYPES)
@FAST
@given(body=st.binary(max_size=300), headers=HEADERS, query=FIELDS, form=st.none() | FIELDS)
def test_random_bytes_and_fields_give_events_or_an_adapter_error(
    source_type: str,
    body: bytes,
    headers: dict[str, str],
    query: dict[str, str],
    form: dict[str, str] | None,
) -> None:
    delivery = Delivery(body=body, received_at=RECEIVED, headers=headers, query=query, form=form)
    check_outcome(MODULES[source_type], delivery)


@pytest.mark.parametrize("source_type", TYPES)
@FAST
@given(document=JSON_VALUES, headers=HEADERS)
def test_random_json_gives_events_or_an_adapter_error(
    source_type: str, document: Any, headers: dict[str, str]
) -> None:
    delivery = Delivery(body=orjson.dumps(document), received_at=RECEIVED, headers=headers)
    check_outcome(MODULES[source_type], delivery)


@pytest.mark.parametrize("source_type", TYPES)
def test_every_fixture_of_every_tool_gives_events_or_an_adapter_error(source_type: str) -> None:
    for path in FIXTURE_FILES:
        check_outcome(MODULES[source_type], delivery_from_file(path))


def node_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            paths += node_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths += node_paths(child, (*prefix, index))
    return paths


@st.composite
def mutations(draw: st.DrawFn, document: Any) -> Any:
    """`document` with one to three nodes replaced by random JSON, nulled or removed."""
    result = copy.deepcopy(document)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(node_paths(result)))
        if not path:
            return draw(JSON_VALUES)
        parent = result
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "null", "remove"]))
        if action == "remove":
            del parent[path[-1]]
        else:
            parent[path[-1]] = None if action == "null" else draw(JSON_VALUES)
    return result


def fixture_document(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return None


MUTABLE = [(p.parent.name, p) for p in FIXTURE_FILES if fixture_document(p) is not None]
# Fixture directories named differently from their adapter's registry type.
TOOL_OF_DIR = {"aws-cloudwatch-sns": "cloudwatch"}


@pytest.mark.parametrize(("tool_dir", "path"), MUTABLE, ids=[str(p.name) for _, p in MUTABLE])
@settings(max_examples=15, deadline=None, database=None)
@given(data=st.data())
def test_mutated_fixtures_give_events_or_an_adapter_error(
    tool_dir: str, path: Path, data: st.DataObject
) -> None:
    source_type = TOOL_OF_DIR.get(tool_dir, tool_dir)
    if source_type not in MODULES:
        source_type = data.draw(st.sampled_from(TYPES))
    document = data.draw(mutations(fixture_document(path)))
    delivery = Delivery(body=orjson.dumps(document), received_at=RECEIVED)
    check_outcome(MODULES[source_type], delivery)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.name for p in FIXTURE_FILES])
@settings(max_examples=10, deadline=None, database=None)
@given(data=st.data())
def test_byte_flipped_fixtures_give_events_or_an_adapter_error(
    path: Path, data: st.DataObject
) -> None:
    body = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        index = data.draw(st.integers(min_value=0, max_value=max(len(body) - 1, 0)))
        if body:
            body[index] = data.draw(st.integers(min_value=0, max_value=255))
    source_type = data.draw(st.sampled_from(TYPES))
    check_outcome(MODULES[source_type], Delivery(body=bytes(body), received_at=RECEIVED))
