"""Flow 7 in a real browser, on the example configuration: an admin edits a rule file, sees
the mistake inline at its file, line and column, fixes it, dry-runs the edit against the
stored events ("1 event would set ... to major_outage"), saves it, and the next event
follows the saved rules. A responder of the team the files are for edits them too."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.support import wait_for

from .browser import Steps, sign_in
from .conftest import Served

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def down(base: str, service: str, monitor_id: int) -> None:
    body = json.loads((FIXTURES / "alert_sources" / "uptime-kuma" / "down_v1_23.json").read_text())
    body["monitor"]["name"] = f"{service} check"
    body["monitor"]["id"] = monitor_id
    body["heartbeat"]["monitorID"] = monitor_id
    body["monitor"]["tags"] = [{"name": "service", "value": service, "color": "#000"}]
    answer = httpx.post(f"{base}/api/v1/events/example-uptime-kuma-key-change-me", json=body)
    assert answer.status_code == 202, answer.text


def status_of(served: Served, key: str) -> str:
    found = httpx.get(f"{served.base}/api/v1/services", headers=served.auth).json()
    return str(next(s for s in found if s["key"] == key)["status"])


def test_a_rule_is_edited_checked_dry_run_and_saved(example: Served, browser: Any) -> None:
    base = example.base
    down(base, "auth", 501)
    wait_for(lambda: status_of(example, "auth") == "partial_outage", 20, "the example rule")

    steps = Steps("rules")
    page = browser.new_page()
    sign_in(page, base, "admin@example.test")
    page.click("nav.main >> text=Rules")
    # The click navigates: read the editor once it has arrived, not the page before.
    page.locator("form.stack > label").first.wait_for()
    labels = page.locator("form.stack > label").all_text_contents()
    assert [label.split("\n")[0].strip() for label in labels[:2]] == [
        "rules/alertmanager.yaml",
        "rules/uptime.yaml",
    ]
    steps.axe(page, "rules")
    editor = page.locator("label:has-text('rules/uptime.yaml') textarea")
    original = editor.input_value()
    assert "      - set_status: partial_outage\n" in original
    rule_line = "      - set_status: partial_outage"
    broken = original.replace(rule_line, "      - set_stauts: partial_outage")
    editor.fill(broken)
    page.click("button:has-text('Check')")
    line = broken.splitlines().index("      - set_stauts: partial_outage") + 1
    problem = page.locator("li.problem").first.text_content()
    assert problem.startswith(f"rules/uptime.yaml:{line}:9: rule 'tagged-monitor-down':"), problem
    assert "1 problem: nothing was saved" in page.locator("#rule-problems").text_content()
    steps.shot(page, "rule error inline")
    steps.axe(page, "rules with an error")

    editor = page.locator("label:has-text('rules/uptime.yaml') textarea")
    fixed = original.replace(rule_line, "      - set_status: major_outage")
    editor.fill(fixed)
    page.click("button:has-text('Dry run')")
    totals = page.locator("#dry-totals").text_content()
    assert "1 event would set platform/auth to major_outage" in totals, totals
    steps.shot(page, "dry run")
    steps.axe(page, "rules dry run")

    page.click("button:has-text('Save')")
    page.wait_for_selector(".flash")
    assert "Saved as rule set version 2." in page.locator(".flash").text_content()
    assert "Rule set version 2 is in force." in page.locator("main").text_content()
    steps.shot(page, "rules saved")

    # The next event is evaluated with the saved rules.
    down(base, "db", 502)
    wait_for(lambda: status_of(example, "db") == "major_outage", 20, "the saved rule")
    page.close()

    # examples/beacon.yaml declares these files for team platform: its responder edits them.
    responder = browser.new_page()
    sign_in(responder, base, "ops@example.test")
    responder.click("nav.main >> text=Rules")
    responder.locator("form.stack > label").first.wait_for()
    assert responder.locator("label:has-text('rules/uptime.yaml') textarea").count() == 1
    steps.axe(responder, "rules, responder")
    responder.close()
    steps.assert_accessible()
