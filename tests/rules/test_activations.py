"""The activation state machine's semantics (DESIGN.md, "Activations"), on a virtual clock."""

from __future__ import annotations

from datetime import timedelta

from config.replay import replay
from config.world import world_from_config
from rules.runtime import RuleBook
from rules.validate import check
from tests.rules.helpers import T0, event

WORLD = world_from_config(
    {
        "teams": [{"key": "platform"}],
        "services": [{"key": k, "name": k.title()} for k in ("api", "db", "web")],
        "alert_sources": [{"key": "am", "type": "alertmanager"}],
        "channels": [{"key": "slack"}],
        "incident_templates": [
            {
                "key": "outage",
                "title": "{{ service.name }} down: {{ event.summary }}",
                "resolve_message": "Recovered.",
                "services": {"api": "major_outage"},
            },
            {"key": "broken", "title": "{{ event.nonexistent.deeper }}"},
            {"key": "sneaky", "title": "{{ ''.__class__.__mro__ }}"},
        ],
        "maintenance_windows": [
            {
                "key": "mw",
                "services": ["db"],
                "start": (T0 + timedelta(minutes=10)).isoformat(),
                "end": (T0 + timedelta(minutes=20)).isoformat(),
                "on_end": "replay",
            },
            {
                "key": "mw-drop",
                "services": ["web"],
                "start": (T0 + timedelta(minutes=10)).isoformat(),
                "end": (T0 + timedelta(minutes=20)).isoformat(),
                "on_end": "drop",
            },
        ],
    },
    "test",
)


def run(rules: str, events, until_minutes: float | None = None) -> list[dict]:
    book = RuleBook(check({"r.yaml": "version: 1\nrules:\n" + rules}, WORLD.known()))
    until = T0 + timedelta(minutes=until_minutes) if until_minutes is not None else None
    stamped = [e.with_ids(id=f"e{i}", source=e.source) for i, e in enumerate(events)]
    return [i.to_json() for i in replay(book, WORLD, stamped, until)]


def kinds(lines: list[dict]) -> list[str]:
    return [line["intent"] for line in lines]


API = """
  - id: api
    match: {source: am}
    services: [api]
    then: [{set_status: major_outage}]
"""

INCIDENT = """
  - id: api
    match: {source: am}
    services: [api]
    resolve: {after: 5m}
    then:
      - set_status: major_outage
      - open_incident: {template: outage}
"""


def test_two_alerts_on_one_service_and_one_resolves_the_other_claim_stays():
    lines = run(
        API,
        [event(dedup_key="a"), event(dedup_key="b", at=1), event("resolved", dedup_key="a", at=2)],
    )
    assert kinds(lines) == ["claim", "claim", "release"]
    assert lines[2]["group"] == "am/a"


def test_ten_flaps_inside_resolve_after_give_one_incident_and_a_steady_status():
    events = []
    for flap in range(10):
        events.append(event(at=flap * 20, summary="boom"))
        events.append(event("resolved", at=flap * 20 + 10))
    lines = run(INCIDENT, events, until_minutes=30)
    assert kinds(lines) == ["claim", "open_incident", "release", "resolve_incident"]
    assert lines[1]["title"] == "Api down: boom"
    # ended 5 minutes after the last resolve (190 s), not at any earlier one
    assert lines[2]["at"] == (T0 + timedelta(seconds=190 + 300)).isoformat().replace("+00:00", "Z")
    assert lines[3]["message"] == "Recovered."


def test_duplicate_deliveries_have_one_effect():
    lines = run(API, [event(), event(), event("resolved", at=5), event("resolved", at=5)])
    assert kinds(lines) == ["claim", "release"]


def test_a_resolve_older_than_the_firing_is_ignored():
    lines = run(API, [event(at=60), event("resolved", at=61, occurred=30)])
    assert kinds(lines) == ["claim", "ignored"]
    lines = run(
        API, [event(at=60), event("resolved", at=61, occurred=30), event("resolved", at=90)]
    )
    assert kinds(lines) == ["claim", "ignored", "release"]


def test_maintenance_holds_firing_processes_resolves_and_replays_at_the_end():
    rules = """
  - id: db
    match: {source: am, labels.service: db}
    services: [db]
    then: [{set_status: major_outage}]
"""
    lines = run(
        rules,
        [
            event(dedup_key="before", labels={"service": "db"}),  # acts before the window
            event(dedup_key="held", at=11 * 60, labels={"service": "db"}),
            event("resolved", dedup_key="before", at=12 * 60),  # resolves count during it
            event(dedup_key="gone", at=13 * 60, labels={"service": "db"}),
            event("resolved", dedup_key="gone", at=14 * 60),
        ],
        until_minutes=30,
    )
    assert kinds(lines) == ["claim", "hold", "release", "hold", "claim"]
    assert lines[-1]["group"] == "am/held"
    assert lines[-1]["at"] == (T0 + timedelta(minutes=20)).isoformat().replace("+00:00", "Z")


def test_maintenance_with_on_end_drop_drops_held_alerts():
    rules = """
  - id: web
    match: {source: am}
    services: [web]
    then: [{set_status: degraded}]
"""
    lines = run(rules, [event(at=11 * 60)], until_minutes=30)
    assert kinds(lines) == ["hold"]


def test_a_template_that_fails_to_render_is_a_rule_error_and_the_claim_still_holds():
    for template in ("broken", "sneaky"):
        rules = f"""
  - id: api
    match: {{source: am}}
    services: [api]
    then:
      - set_status: major_outage
      - open_incident: {{template: {template}}}
"""
        lines = run(rules, [event()])
        assert kinds(lines) == ["claim", "rule_error"], template
        assert f"template '{template}' failed to render" in lines[1]["message"]


def test_a_service_from_value_naming_no_service_is_a_rule_error():
    rules = """
  - id: by-label
    match: {source: am}
    service_from: labels.service
    then: [{set_status: degraded}]
"""
    lines = run(rules, [event(labels={"service": "nope"}), event(dedup_key="x", at=1)])
    assert kinds(lines) == ["rule_error", "rule_error"]
    assert lines[0]["message"] == "no service 'nope' in team 'platform'"
    assert lines[1]["message"] == "service_from: the event has no labels.service"


def test_a_window_that_expires_before_its_count_does_nothing():
    rules = """
  - id: burst
    match: {source: am}
    group_by: [source]
    window: {count: 3, within: 5m}
    services: [api]
    then: [{set_status: degraded}]
"""
    events = [event(dedup_key="a"), event(dedup_key="b", at=60), event(dedup_key="c", at=301)]
    assert kinds(run(rules, events, until_minutes=20)) == []
    events[2] = event(dedup_key="c", at=299)
    assert kinds(run(rules, events)) == ["claim"]


def test_incident_keep_leaves_the_incident_open():
    rules = INCIDENT.replace("resolve: {after: 5m}", "resolve: {incident: keep}")
    lines = run(rules, [event(), event("resolved", at=10)])
    assert kinds(lines) == ["claim", "open_incident", "release"]


def test_later_firing_alerts_of_the_group_attach_to_its_incident():
    rules = INCIDENT.replace("match: {source: am}", "match: {source: am}\n    group_by: [source]")
    lines = run(
        rules, [event(dedup_key="a"), event(dedup_key="b", at=5), event(dedup_key="b", at=6)]
    )
    assert kinds(lines) == ["claim", "open_incident", "attach_alert"]
    assert lines[2]["alert"] == "b"


def test_for_restarts_after_the_group_resolved():
    rules = API.replace("services: [api]", "services: [api]\n    for: 2m")
    events = [event(), event("resolved", at=60), event(at=90), event(at=200)]
    lines = run(rules, events, until_minutes=10)
    assert kinds(lines) == ["claim"]
    assert lines[0]["at"] == (T0 + timedelta(seconds=210)).isoformat().replace("+00:00", "Z")


def test_a_resolve_from_another_rule_set_version_still_ends_the_activation():
    # Resolves go by source and dedup key, never through `match`: a recovery that no longer
    # matches (here: different labels) still ends what its firing started.
    lines = run(
        API.replace("{source: am}", "{source: am, labels.x: y}"),
        [event(labels={"x": "y"}), event("resolved", at=5, labels={"x": "z"})],
    )
    assert kinds(lines) == ["claim", "release"]


def test_the_resolve_message_is_rendered_with_the_services_and_the_rule():
    world = world_from_config(
        {
            "teams": [{"key": "platform"}],
            "services": [{"key": "api", "name": "Public API"}],
            "alert_sources": [{"key": "am", "type": "alertmanager"}],
            "incident_templates": [
                {
                    "key": "t",
                    "title": "{{ service.name }} down",
                    "resolve_message": "{{ service.name }} recovered ({{ rule.id }}).",
                }
            ],
        },
        "test",
    )
    rules = """version: 1
rules:
  - id: api
    match: {source: am}
    services: [api]
    then: [{open_incident: {template: t}}]
"""
    book = RuleBook(check({"r.yaml": rules}, world.known()))
    events = [event().with_ids(id="1", source="am"), event("resolved", at=5)]
    lines = [i.to_json() for i in replay(book, world, events)]
    assert [(x["intent"], x.get("title") or x.get("message")) for x in lines] == [
        ("open_incident", "Public API down"),
        ("resolve_incident", "Public API recovered (api)."),
    ]


def test_a_late_firing_older_than_the_resolve_that_ended_its_activation_starts_nothing():
    lines = run(API, [event(at=60), event("resolved", at=70), event(at=80, occurred=30)])
    assert kinds(lines) == ["claim", "release"]


def test_service_from_with_group_by_keeps_one_activation_per_service():
    rules = """
  - id: by-label
    match: {source: am}
    service_from: labels.service
    group_by: [labels.alertname]
    then: [{set_status: degraded}]
"""
    lines = run(
        rules,
        [
            event(dedup_key="a", labels={"service": "api", "alertname": "Down"}),
            event(dedup_key="b", at=1, labels={"service": "web", "alertname": "Down"}),
        ],
    )
    assert [(x["intent"], x["service"]) for x in lines] == [("claim", "api"), ("claim", "web")]


def test_an_incident_opened_by_for_renders_the_latest_event_that_joined():
    # `for` acts on the clock, with no event in hand: the template still sees the firing
    # event (the latest one of the activation), not an empty one.
    rules = INCIDENT.replace("    resolve: {after: 5m}\n", "    for: 1m\n")
    lines = run(rules, [event(at=0, summary="disk full"), event(at=20, summary="disk fuller")], 5)
    assert kinds(lines) == ["claim", "open_incident"], lines
    assert lines[1]["title"] == "Api down: disk fuller"


def test_a_firing_older_than_a_resolve_that_came_first_starts_nothing():
    # The tool's retry of a failure arrives after its recovery (Checkly retries late): the
    # recovery resolved nothing, yet the older failure must not turn the service red.
    lines = run(API, [event("resolved", at=60, occurred=50), event(at=70, occurred=10)])
    assert kinds(lines) == []
