from __future__ import annotations

import pytest

from rules.errors import RulesInvalid
from rules.validate import check
from tests.rules.helpers import KNOWN


def problems(text: str, known=KNOWN) -> list[str]:
    with pytest.raises(RulesInvalid) as info:
        check({"rules/api.yaml": text}, known)
    return [str(p) for p in info.value.problems]


GOOD = """version: 1
rules:
  - id: api-down
    description: Uptime Kuma reports the public API down
    match:
      source: kuma
      labels.monitor_name: Public API
      severity: {in: [critical, high]}
    services: [api]
    for: 2m
    group_by: [labels.instance]
    then:
      - set_status: major_outage
      - open_incident: {template: api-outage, notify: true}
      - notify: {channel: platform-slack}
    resolve: {after: 0s, timeout: null, incident: resolve}
    continue: false
"""


def test_it_accepts_the_design_example():
    spec = check({"rules/api.yaml": GOOD}, KNOWN)
    rule = spec.rules[0].rule
    assert rule.id == "api-down" and rule.for_ is not None and rule.for_.total_seconds() == 120
    assert spec.rules[0].line == 3


def test_it_reports_unknown_fields_with_file_line_column_and_rule():
    text = GOOD.replace("    continue: false\n", "    contnue: false\n")
    assert problems(text) == [
        "rules/api.yaml:17:5: rule 'api-down': unknown field 'contnue'; did you mean 'continue'?"
    ]


def test_it_rejects_duplicate_keys():
    text = GOOD.replace("      source: kuma\n", "      source: kuma\n      source: am\n")
    [message] = problems(text)
    assert message.startswith("rules/api.yaml:7:7:") and "duplicate key 'source'" in message


def test_it_rejects_unknown_operators_bad_types_durations_and_regexes():
    text = """version: 1
rules:
  - id: bad
    match:
      severity: {like: critical}
      labels.code: {gt: "500"}
      summary: {matches: "(unclosed"}
    services: [api]
    for: 2 minutes
    then: [{set_status: degraded}]
"""
    found = problems(text)
    assert any("5:18: rule 'bad': unknown operator 'like'" in p for p in found), found
    assert any(p.startswith("rules/api.yaml:6:") and "gt" in p for p in found), found
    assert any("7:" in p and "invalid regular expression" in p for p in found), found
    assert any("9:10: rule 'bad': bad duration '2 minutes'" in p for p in found), found


def test_it_rejects_for_with_window_and_services_with_service_from():
    text = """version: 1
rules:
  - id: both
    services: [api]
    service_from: labels.service
    for: 1m
    window: {count: 3, within: 5m}
    then: [{set_status: degraded}]
"""
    found = problems(text)
    assert any("`for` and `window` cannot be used together" in p for p in found)
    assert any("either `services` or `service_from`" in p for p in found)


def test_it_rejects_references_to_unknown_services_templates_channels_and_sources():
    text = """version: 1
rules:
  - id: refs
    match: {source: kuma}
    services: [nope]
    then:
      - open_incident: {template: missing}
      - notify: {channel: nowhere}
  - id: src
    match: {source: ghost}
    services: [api]
    then: [{set_status: degraded}]
"""
    found = problems(text)
    assert "rules/api.yaml:3:5: rule 'refs': unknown service 'nope'" in found
    assert "rules/api.yaml:3:5: rule 'refs': unknown template 'missing'" in found
    assert "rules/api.yaml:3:5: rule 'refs': unknown channel 'nowhere'" in found
    assert "rules/api.yaml:9:5: rule 'src': unknown source 'ghost'" in found


def test_it_rejects_duplicate_rule_ids_across_files():
    with pytest.raises(RulesInvalid) as info:
        check({"a.yaml": GOOD, "b.yaml": GOOD}, KNOWN)
    [problem] = info.value.problems
    assert problem.file == "b.yaml" and "duplicate rule id (also in a.yaml:3)" in problem.message


def test_it_rejects_invalid_yaml_and_a_missing_version():
    assert problems("rules: [")[0].startswith("rules/api.yaml:")
    assert any("`version: 1` is required" in p for p in problems("rules: []\n"))


def test_a_label_name_may_contain_dots():
    text = GOOD.replace("labels.monitor_name", "labels.app.kubernetes.io/name")
    rule = check({"r.yaml": text}, KNOWN).rules[0].rule
    assert "labels.app.kubernetes.io/name" in rule.match


def test_it_rejects_a_severity_no_event_carries():
    text = GOOD.replace("[critical, high]", "[critical, hgh]")
    assert any("severity 'hgh' never occurs" in p for p in problems(text))


def test_a_duplicate_key_names_its_rule():
    text = GOOD.replace("    services: [api]\n", "    services: [api]\n    services: [db]\n")
    [message] = problems(text)
    assert message.startswith("rules/api.yaml:10:5: rule 'api-down': duplicate key 'services'")


def test_an_alias_bomb_is_a_clear_error():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        refs = ", ".join(f"*a{i - 1}" for _ in range(10))
        lines.append(f"a{i}: &a{i} [{refs}]")
    [message] = problems("\n".join(lines) + "\n")
    assert message == "rules/api.yaml:1:1: more than 200000 values (aliases?)"


def test_an_empty_file_says_what_a_rule_file_is():
    assert problems("") == [
        "rules/api.yaml:1:1: a rule file is a mapping with `version` and `rules`"
    ]


def test_a_window_count_above_one_needs_group_by():
    text = GOOD.replace("    for: 2m\n", "    window: {count: 3, within: 5m}\n").replace(
        "    group_by: [labels.instance]\n", ""
    )
    assert any("window.count above 1 needs `group_by`" in p for p in problems(text))
