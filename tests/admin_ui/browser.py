"""Driving the admin UI in Debian's chromium (Playwright) against a real `beacon serve`:
signing in through the form, screenshots of each step kept as artifacts, and axe-core on
every admin page in light and dark mode.

Screenshots go to `test-artifacts/admin_ui/<test>/NN-<step>.png` at the repository root
(the directory the page tests already use for their artifacts; git ignores it)."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from tests.browsers import AXE, CHROMIUM, CHROMIUM_ARGS
from tests.conftest import ROOT

from .conftest import PASSWORD

ARTIFACTS = ROOT / "test-artifacts" / "admin_ui"
__all__ = ["AXE", "CHROMIUM", "CHROMIUM_ARGS", "Steps", "axe_serious", "sign_in"]


def sign_in(page: Any, base: str, email: str) -> None:
    """Sign in through the real form and land on the admin home."""
    page.goto(f"{base}/login?next=/admin/")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def axe_serious(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    # Evaluated through the DevTools protocol: the admin pages' CSP forbids inline script,
    # which add_script_tag would be, and the CSP stays on for everything else.
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_source())
    result = page.evaluate("async () => await axe.run(document)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"][:3]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@functools.cache
def _axe_source() -> str:
    return AXE.read_text() + "\n;undefined"


class Steps:
    """Numbered screenshots of one test's steps, and the axe check of each admin page met,
    in light and in dark mode (the same page emulated both ways)."""

    def __init__(self, name: str) -> None:
        self.dir = ARTIFACTS / name
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("*.png"):
            old.unlink()
        self.count = 0
        self.checked: dict[str, list[dict[str, Any]]] = {}

    def shot(self, page: Any, step: str) -> Path:
        self.count += 1
        path = self.dir / f"{self.count:02d}-{re.sub(r'[^a-z0-9]+', '-', step.lower())}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def axe(self, page: Any, what: str) -> None:
        """Record axe's serious and critical violations on `page` in light and dark mode."""
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            found = axe_serious(page)
            if found:
                self.checked[f"{what} ({scheme})"] = found
        page.emulate_media(color_scheme="light")

    def assert_accessible(self) -> None:
        assert self.checked == {}, self.checked
