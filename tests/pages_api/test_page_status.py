"""The page indicator and description: one test per row of DESIGN.md's table, plus the
incident rules under it."""

from __future__ import annotations

from engine.models import Impact
from engine.models import ServiceStatus as S
from engine.status import page_status


def test_all_operational_or_no_services_is_none() -> None:
    for statuses in ([], [S.OPERATIONAL], [S.OPERATIONAL, S.OPERATIONAL]):
        got = page_status(statuses)
        assert (got.indicator, got.description) == (Impact.NONE, "All Systems Operational")


def test_some_under_maintenance_none_worse_is_maintenance() -> None:
    for statuses in ([S.UNDER_MAINTENANCE], [S.UNDER_MAINTENANCE, S.OPERATIONAL]):
        got = page_status(statuses)
        assert (got.indicator, got.description) == (Impact.MAINTENANCE, "Service Under Maintenance")


def test_some_degraded_none_worse_is_partially_degraded() -> None:
    got = page_status([S.DEGRADED, S.OPERATIONAL, S.UNDER_MAINTENANCE])
    assert (got.indicator, got.description) == (Impact.MINOR, "Partially Degraded Service")


def test_single_degraded_service_is_partially_degraded() -> None:
    got = page_status([S.DEGRADED])
    assert (got.indicator, got.description) == (Impact.MINOR, "Partially Degraded Service")


def test_all_of_two_or_more_degraded_is_degraded_system_service() -> None:
    got = page_status([S.DEGRADED, S.DEGRADED])
    assert (got.indicator, got.description) == (Impact.MINOR, "Degraded System Service")


def test_some_but_not_all_partial_none_major_is_minor_service_outage() -> None:
    got = page_status([S.PARTIAL_OUTAGE, S.OPERATIONAL, S.DEGRADED])
    assert (got.indicator, got.description) == (Impact.MINOR, "Minor Service Outage")


def test_all_partial_outage_is_partial_system_outage() -> None:
    for statuses in ([S.PARTIAL_OUTAGE], [S.PARTIAL_OUTAGE, S.PARTIAL_OUTAGE]):
        got = page_status(statuses)
        assert (got.indicator, got.description) == (Impact.MAJOR, "Partial System Outage")


def test_some_but_not_all_major_is_partial_system_outage() -> None:
    got = page_status([S.MAJOR_OUTAGE, S.OPERATIONAL])
    assert (got.indicator, got.description) == (Impact.MAJOR, "Partial System Outage")


def test_github_outage_capture_gives_major_partial_system_outage() -> None:
    # summary__githubstatus-rapid7-2020-04-02-outage.json: 5 major, 1 partial, 3 operational.
    statuses = [S.MAJOR_OUTAGE] * 5 + [S.PARTIAL_OUTAGE] + [S.OPERATIONAL] * 3
    got = page_status(statuses)
    assert (got.indicator, got.description) == (Impact.MAJOR, "Partial System Outage")


def test_all_major_outage_is_major_system_outage() -> None:
    for statuses in ([S.MAJOR_OUTAGE], [S.MAJOR_OUTAGE, S.MAJOR_OUTAGE]):
        got = page_status(statuses)
        assert (got.indicator, got.description) == (Impact.CRITICAL, "Major System Outage")


def test_open_incident_raises_indicator_with_its_levels_description() -> None:
    cases = [
        (Impact.MINOR, "Minor Service Outage"),
        (Impact.MAJOR, "Partial System Outage"),
        (Impact.CRITICAL, "Major System Outage"),
    ]
    for impact, description in cases:
        got = page_status([S.OPERATIONAL, S.OPERATIONAL], [impact])
        assert (got.indicator, got.description) == (impact, description)


def test_lower_incident_impact_leaves_service_status_alone() -> None:
    got = page_status([S.MAJOR_OUTAGE], [Impact.MINOR])
    assert (got.indicator, got.description) == (Impact.CRITICAL, "Major System Outage")
    got = page_status([S.DEGRADED, S.DEGRADED], [Impact.MINOR, Impact.NONE])
    assert (got.indicator, got.description) == (Impact.MINOR, "Degraded System Service")


def test_maintenance_or_none_impact_incident_does_not_raise() -> None:
    got = page_status([S.OPERATIONAL], [Impact.NONE, Impact.MAINTENANCE])
    assert (got.indicator, got.description) == (Impact.NONE, "All Systems Operational")
