"""Debian's chromium, driven through Playwright, for the browser tests (the status page,
the admin UI, asset XSS), and axe-core for their accessibility checks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import need

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).parent / "pages_html" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def chromium(*, axe: bool = True) -> Iterator[Any]:
    """A launched chromium, closed afterwards; skipped (failed under CI=true) where chromium
    or, for a test that runs axe-core, axe-core is not installed."""
    need(Path(CHROMIUM).exists(), "Debian's chromium is not installed (apt-get install chromium)")
    if axe:
        need(AXE.exists(), "axe-core is not installed (npm install --prefix tests/pages_html)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
