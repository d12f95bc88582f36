"""Every registered adapter is the `AlertSource` it claims to be, and mypy sees each one."""

from __future__ import annotations

import ast
from pathlib import Path

import adapters.alert_sources as registry
from adapters.alert_sources import ADAPTERS, AlertSource, get_adapter, signed, sns

SIGNED = {"checkly", "grafana", "pagerduty", "sentry"}
THROUGH_SNS = {"cloudwatch"}


def test_every_registered_adapter_is_an_alert_source_of_its_own_type() -> None:
    for source_type in ADAPTERS:
        adapter = get_adapter(source_type)
        assert isinstance(adapter, AlertSource), source_type
        assert adapter.SOURCE_TYPE == source_type


def test_the_adapters_that_sign_are_exactly_the_signed_alert_sources() -> None:
    assert {t for t in ADAPTERS if signed(get_adapter(t)) is not None} == SIGNED
    assert {t for t in ADAPTERS if sns(get_adapter(t)) is not None} == THROUGH_SNS


def test_mypy_checks_every_registered_adapter_against_its_protocol() -> None:
    # The registry imports lazily, so mypy sees a module only where the package's
    # TYPE_CHECKING block assigns it to a protocol: a new adapter must be listed there.
    tree = ast.parse(Path(registry.__file__).read_text())
    checked: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            checked[node.target.id] = {n.id for n in names if isinstance(n, ast.Name)}
    modules = {path.rsplit(".", 1)[1]: t for t, path in ADAPTERS.items()}
    assert set().union(*checked.values()) == set(modules)
    assert {modules[m] for m in checked["_SIGNED"]} == SIGNED
    assert {modules[m] for m in checked["_SNS"]} == THROUGH_SNS
