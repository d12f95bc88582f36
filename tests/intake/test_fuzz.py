"""Property: whatever arrives at the intake, the answer is 2xx, or 4xx with a message that
says what was wrong; never a 500. Random bodies and mutated real fixtures, for every tool
whose adapter is installed."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st

from adapters.alert_sources import ADAPTERS
from engine.settings import Settings
from engine.tables import alert_events
from tests.conftest import FIXTURES
from tests.intake.conftest import Env, add_source

# Fixture folder -> source type.
FOLDERS = {
    "alertmanager": "alertmanager",
    "grafana": "grafana",
    "uptime-kuma": "uptime-kuma",
    "uptimerobot": "uptimerobot",
    "datadog": "datadog",
    "healthchecks": "healthchecks",
    "pagerduty": "pagerduty",
    "pingdom": "pingdom",
    "sentry": "sentry",
    "zabbix": "zabbix",
    "aws-cloudwatch-sns": "cloudwatch",
    "azure-monitor": "azure-monitor",
    "newrelic": "newrelic",
    "gatus": "gatus",
    "checkly": "checkly",
    "betterstack": "betterstack",
}


def installed(source_type: str) -> bool:
    try:
        importlib.import_module(ADAPTERS[source_type])
    except ImportError:
        return False
    return True


TYPES = sorted(t for t in set(FOLDERS.values()) | {"generic"} if installed(t))
SAMPLES: list[tuple[str, bytes]] = sorted(
    (FOLDERS[path.parent.name], path.read_bytes())
    for path in FIXTURES.glob("alert_sources/*/*")
    if path.suffix in (".json", ".txt")
    and path.parent.name in FOLDERS
    and installed(FOLDERS[path.parent.name])
)
CONTENT_TYPES = [
    "",
    "application/json",
    "application/json; charset=utf-8",
    "text/plain; charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "multipart/form-data",
    "application/octet-stream",
    "application/vnd.api+json",
    "application/xml",
    "image/png",
    "text/html",
    "garbage;;;",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def mutate(document: Any, path: list[int], replacement: Any) -> Any:
    """`document` with the node that `path` picks (indices into containers) replaced."""
    if not path or not isinstance(document, (dict, list)) or not document:
        return replacement
    if isinstance(document, dict):
        keys = sorted(document, key=str)
        key = keys[path[0] % len(keys)]
        return {**document, key: mutate(document[key], path[1:], replacement)}
    index = path[0] % len(document)
    copy = list(document)
    copy[index] = mutate(copy[index], path[1:], replacement)
    return copy


@st.composite
def mutated_fixture(draw: st.DrawFn) -> tuple[str, bytes]:
    source_type, body = draw(st.sampled_from(SAMPLES))
    how = draw(st.sampled_from(["tree", "truncate", "flip", "splice"]))
    if how == "tree":
        try:
            document = json.loads(body)
        except ValueError:
            how = "flip"
        else:
            path = draw(st.lists(st.integers(0, 50), max_size=6))
            return source_type, json.dumps(mutate(document, path, draw(json_values))).encode()
    if how == "truncate":
        return source_type, body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    position = draw(st.integers(0, max(len(body) - 1, 0)))
    if how == "flip":
        return source_type, body[:position] + bytes([draw(st.integers(0, 255))]) + body[
            position + 1 :
        ]
    return source_type, body[:position] + draw(st.binary(max_size=40)) + body[position:]


def check(env: Env, response: Any) -> None:
    """A 4xx says why; a 202's events read back (every column through SQLAlchemy, as the
    evaluator and the events API read them): an accepted event must never be unreadable."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        message = response.json()["error"]["message"]
        assert isinstance(message, str) and len(message) > 5
        # The intake's net for an adapter that raised something other than AdapterError:
        # the tool still gets its 400, but the adapter has a bug to fix.
        assert "details are logged" not in message, message
    elif response.status_code == 202:
        ids = [int(i) for i in response.json()["events"]]
        with env.store.read() as conn:
            rows = conn.execute(sa.select(alert_events).where(alert_events.c.id.in_(ids))).all()
        assert len(rows) == len(set(ids))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Signed SNS envelopes would send the intake to fetch their certificates from AWS; here
    the operator's setting makes no host SNS's, so they are refused (401) before any fetch.
    tests/intake/test_sns.py covers the fetching."""
    env = {"BEACON_DATA_DIR": str(tmp_path / "data"), "BEACON_SNS_HOST_PATTERN": r"sns\.invalid"}
    return Settings.from_env(env)


class Keys:
    def __init__(self, env: Env) -> None:
        self.by_type = {}
        for t in TYPES:
            _, key = add_source(env.store, env.team_id, f"fz-{t}", type=t)
            self.by_type[t] = key


@pytest.fixture
def keys(env: Env) -> Keys:
    return Keys(env)


FUZZ = fuzz_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(
    source_type=st.sampled_from(TYPES),
    body=st.binary(max_size=300),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_random_bytes_never_cause_a_500(
    env: Env, keys: Keys, source_type: str, body: bytes, content_type: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    check(
        env,
        env.client.post(
            f"/api/v1/events/{keys.by_type[source_type]}", content=body, headers=headers
        ),
    )


@FUZZ
@given(source_type=st.sampled_from(TYPES), document=json_values)
def test_random_json_never_causes_a_500(
    env: Env, keys: Keys, source_type: str, document: Any
) -> None:
    check(env, env.client.post(f"/api/v1/events/{keys.by_type[source_type]}", json=document))


@FUZZ
@given(sample=mutated_fixture(), content_type=st.sampled_from(CONTENT_TYPES[:5]))
def test_mutated_real_deliveries_never_cause_a_500(
    env: Env, keys: Keys, sample: tuple[str, bytes], content_type: str
) -> None:
    source_type, body = sample
    headers = {"Content-Type": content_type} if content_type else {}
    check(
        env,
        env.client.post(
            f"/api/v1/events/{keys.by_type[source_type]}", content=body, headers=headers
        ),
    )


@FUZZ
@given(
    source_type=st.sampled_from(TYPES),
    query=st.dictionaries(st.text(max_size=12), st.text(max_size=30), max_size=6),
)
def test_random_query_strings_never_cause_a_500(
    env: Env, keys: Keys, source_type: str, query: dict[str, str]
) -> None:
    check(env, env.client.get(f"/api/v1/events/{keys.by_type[source_type]}", params=query))


def test_every_fixture_of_an_installed_adapter_is_answered_without_a_500(
    env: Env, keys: Keys
) -> None:
    assert SAMPLES, "no fixtures found: is BEACON_SHARED_DIR right?"
    answers = {}
    for source_type, body in SAMPLES:
        response = env.client.post(f"/api/v1/events/{keys.by_type[source_type]}", content=body)
        check(env, response)
        answers.setdefault(response.status_code, 0)
        answers[response.status_code] += 1
    assert answers.get(202, 0) > len(SAMPLES) // 2, answers


def test_the_fixture_folder_is_where_the_tests_look() -> None:
    assert Path(FIXTURES, "alert_sources").is_dir()
