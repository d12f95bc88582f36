"""examples/beacon.yaml shows the good practice a new operator copies (issue 19)."""

from __future__ import annotations

import re

import yaml

from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "beacon.yaml"


def test_templates_on_the_public_page_put_no_monitor_text_before_customers() -> None:
    """A monitor's own words ("[Public API] [Down] timeout of 16000ms exceeded") are for the
    team; what customers read on the public page is written for them."""
    config = yaml.safe_load(EXAMPLE.read_text())
    public = {
        key
        for page in config["status_pages"]
        if page["type"] == "public"
        for key in page["services"]
    }
    shown = [t for t in config["incident_templates"] if public & set(t["services"])]
    assert shown
    for template in shown:
        for field in ("title", "message", "resolve_message"):
            assert not re.search(r"\{\{[^}]*\bevent\b", template.get(field, "")), (
                template["key"],
                field,
            )


def test_a_maintenance_window_shows_on_the_public_page() -> None:
    config = yaml.safe_load(EXAMPLE.read_text())
    public = {
        key
        for page in config["status_pages"]
        if page["type"] == "public"
        for key in page["services"]
    }
    assert any(public & set(w["services"]) for w in config["maintenance_windows"])


def test_the_example_declares_no_channel_that_cannot_deliver() -> None:
    """A channel aimed at a made-up host fails on every alert and fills a new operator's log
    (issue 19, item 4): the example's Slack channel is there only as a comment."""
    config = yaml.safe_load(EXAMPLE.read_text())
    for channel in config.get("channels") or []:
        url = channel.get("url", "")
        assert not re.search(r"\.(example|test|invalid)(/|$)", url), channel["key"]
    assert "# channels:" in EXAMPLE.read_text()
