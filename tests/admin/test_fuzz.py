"""Schemathesis over the admin API's own OpenAPI document, in-process: no request, however
odd, gets a 500. Examples are bounded so the run stays short."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.core.result import Ok

from .conftest import Api

EXAMPLES = 12


def seed(api: Api) -> dict[str, str]:
    """A team with a few objects, so generated ids sometimes hit real rows."""
    api.client.post("/api/v1/teams", json={"key": "platform"}, headers=api.admin)
    key = api.key_for("platform")
    svc = api.client.post("/api/v1/services", json={"key": "db", "name": "DB"}, headers=key)
    api.client.post(
        "/api/v1/incidents",
        json={"title": "Slow", "impacts": {str(svc.json()["id"]): "degraded"}},
        headers=key,
    )
    return key


def test_fuzzing_the_openapi_document_finds_no_server_error(api: Api) -> None:
    team_key = seed(api)
    schema = schemathesis.openapi.from_asgi(
        "/api/v1/openapi.json", api.client.app, headers=api.admin
    )
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        # An operation the document describes badly is itself a failure.
        assert isinstance(result, Ok), result.err()
        operation = result.ok()
        operations += 1
        for headers in (api.admin, team_key):
            fuzz(operation, headers, failures)
    assert operations >= 40
    assert not failures, "\n".join(failures[:20])


def fuzz(operation: Any, headers: dict[str, str], failures: list[str]) -> None:
    """Call `operation` with generated requests, recording each answer of 500 or more."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} {case.body!r}: "
                f"{response.status_code} {response.text[:200]}"
            )

    run()
