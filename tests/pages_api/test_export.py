"""The static export to a directory (BEACON_EXPORT_DIR): every render of an active public
page written as files laid out as its URLs, atomically, and taken away when the page stops
being public."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from engine.errors import ConfigError
from engine.settings import Settings
from engine.tables import assets, status_pages
from pages import cache, export, render

from . import seed
from .conftest import App

#: Exported file (under p/acme/) -> the URL Beacon serves the same bytes at.
DOCS = {
    "index.html": "/p/acme/",
    "history.html": "/p/acme/history",
    **{
        name: f"/p/acme/{name}"
        for name in (
            "page.js",
            "api/v2/summary.json",
            "api/v2/status.json",
            "api/v2/components.json",
            "api/v2/incidents.json",
            "api/v2/incidents/unresolved.json",
            "api/v2/scheduled-maintenances.json",
            "api/v2/scheduled-maintenances/upcoming.json",
            "api/v2/scheduled-maintenances/active.json",
            "history.rss",
            "history.atom",
            "maintenance.ics",
            "badge.svg",
        )
    },
}


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "export"


@pytest.fixture
def exporting(make_app: Callable[..., App], out: Path) -> App:
    return make_app(BEACON_EXPORT_DIR=str(out))


def rendered(app: App, page_id: int) -> None:
    """One render of the page, as the render job does it."""
    render.render_page(app.runtime, page_id, render.render_count(app.runtime, page_id) + 1)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_render_writes_every_document_as_the_bytes_beacon_serves(
    exporting: App, out: Path
) -> None:
    rich = seed.rich_page(exporting.store)
    rendered(exporting, rich.page.id)
    for name, url in DOCS.items():
        answer = exporting.client.get(url, headers={"Accept-Encoding": "identity"})
        assert answer.status_code == 200, url
        assert (out / "p/acme" / name).read_bytes() == answer.content, name
    # The gzip variants the cache made sit beside their documents, for `precompressed`.
    page = out / "p/acme/index.html"
    assert gzip.decompress((out / "p/acme/index.html.gz").read_bytes()) == page.read_bytes()
    assert json.loads((out / "p/acme/api/v2/summary.json").read_text())["page"]["name"] == (
        "Acme Status"
    )
    # Readable by a static server running as another user; no temporary file left.
    assert page.stat().st_mode & 0o777 == 0o644
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_the_logo_and_favicon_are_exported_under_their_hashed_urls(
    exporting: App, out: Path
) -> None:
    rich = seed.rich_page(exporting.store)
    headers = exporting.key(admin=True)
    logo = png()
    answer = exporting.client.put(
        f"/api/v1/pages/{rich.page.id}/logo",
        content=logo,
        headers={**headers, "Content-Type": "image/png"},
    )
    assert answer.status_code == 200, answer.text
    rendered(exporting, rich.page.id)
    [asset] = (out / "p/acme/assets").iterdir()
    assert asset.suffix == ".png" and asset.read_bytes() == logo
    # The page links it where the export has it (the static server tries `.png`).
    assert f'assets/{asset.stem}"' in (out / "p/acme/index.html").read_text()


def test_a_document_that_did_not_change_is_not_written_again(exporting: App, out: Path) -> None:
    rich = seed.rich_page(exporting.store)
    rendered(exporting, rich.page.id)
    before = {p: p.stat().st_ino for p in (out / "p/acme").rglob("*") if p.is_file()}
    with exporting.store.begin() as conn:
        from engine.overrides import set_override

        set_override(
            conn, rich.page.service_ids["db"], "major_outage", until=None, reason=None, actor="t"
        )
    rendered(exporting, rich.page.id)
    after = {p: p.stat().st_ino for p in (out / "p/acme").rglob("*") if p.is_file()}
    changed = {str(p.relative_to(out / "p/acme")) for p in after if after[p] != before.get(p)}
    assert {"api/v2/summary.json", "api/v2/components.json", "index.html"} <= changed
    # The feeds and the calendar say nothing about a component's status.
    assert not changed & {"history.rss", "history.atom", "maintenance.ics", "page.js"}
    components = json.loads((out / "p/acme/api/v2/components.json").read_text())["components"]
    assert {c["name"]: c["status"] for c in components}["Database"] == "major_outage"


@pytest.mark.parametrize(
    "change",
    [{"active": False}, None],
    ids=["deactivated", "deleted"],
)
def test_a_page_that_stops_being_public_leaves_the_export_in_the_same_request(
    exporting: App, out: Path, change: dict[str, object] | None
) -> None:
    rich = seed.rich_page(exporting.store)
    rendered(exporting, rich.page.id)
    assert (out / "p/acme/index.html").exists()
    headers = exporting.key(admin=True)
    url = f"/api/v1/pages/{rich.page.id}"
    if change is None:
        answer = exporting.client.delete(url, headers=headers)
    else:
        answer = exporting.client.patch(url, json=change, headers=headers)
    assert answer.status_code in (200, 204), answer.text
    # No render ran since: the request itself took the files away.
    assert not (out / "p/acme").exists()
    assert not (out / ".beacon/pages" / f"{rich.page.id}.json").exists()
    # The render that follows the change (the page is dirty) leaves it out too.
    if change is not None:
        rendered(exporting, rich.page.id)
        assert not (out / "p/acme").exists()


def test_private_and_inactive_pages_are_never_exported(exporting: App, out: Path) -> None:
    private = seed.page(exporting.store, "secret", type="private")
    inactive = seed.page(exporting.store, "draft", active=False)
    for page in (private, inactive):
        rendered(exporting, page.id)
    assert not (out / "p").exists()


def test_a_render_that_began_before_a_deactivation_does_not_put_the_page_back(
    exporting: App, out: Path
) -> None:
    rich = seed.rich_page(exporting.store)
    rt = exporting.runtime
    entry, snap = render._rendered(rt, rich.page.id, 0)  # the version it read: none yet
    stored = cache.for_runtime(rt).put(entry)
    # The deactivation commits and evicts while the render is still writing its files.
    answer = exporting.client.patch(
        f"/api/v1/pages/{rich.page.id}", json={"active": False}, headers=exporting.key(admin=True)
    )
    assert answer.status_code == 200
    export.after_render(rt, entry, stored, snap.generated_at)
    assert not (out / "p/acme").exists()
    # A render that began earlier still, and reaches the cache only now, exports nothing.
    export.after_render(rt, entry, cache.for_runtime(rt).put(entry), snap.generated_at)
    assert not (out / "p/acme").exists()


def test_readers_never_see_half_a_file(tmp_path: Path) -> None:
    bodies = [json.dumps({"n": n, "pad": "x" * 200_000 * (n % 2)}).encode() for n in range(2)]
    stop = threading.Event()
    seen: list[bytes] = []
    path = tmp_path / "p/acme/api/v2/summary.json"

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(path.read_bytes())
            except FileNotFoundError:
                continue

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(60):
            body = bodies[n % 2]
            export.write_atomic(path, body)
    finally:
        stop.set()
        reader.join()
    assert seen and all(body in bodies for body in seen)


def test_a_new_body_gets_a_new_modification_second_for_static_etags(tmp_path: Path) -> None:
    # nginx and Caddy make ETags from whole-second mtimes and sizes: two bodies of one
    # size written within a second must still differ in mtime.
    path = tmp_path / "status.json"
    export.write_atomic(path, b'{"a": 1}')
    first = int(path.stat().st_mtime)
    export.write_atomic(path, b'{"a": 2}')
    assert int(path.stat().st_mtime) > first


def test_an_export_that_fails_leaves_the_render_and_the_cache_alone(
    make_app: Callable[..., App], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the export directory should be")
    app = make_app(BEACON_EXPORT_DIR=str(blocker))
    rich = seed.rich_page(app.store)
    rendered(app, rich.page.id)
    assert app.client.get("/p/acme/").status_code == 200
    assert "exporting page 'acme' failed" in caplog.text


def test_s3_settings_without_a_bucket_are_a_config_error(tmp_path: Path) -> None:
    base = {"BEACON_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="BEACON_EXPORT_S3_BUCKET is required"):
        Settings.from_env({**base, "BEACON_EXPORT_S3_ENDPOINT_URL": "http://127.0.0.1:9"})
    with pytest.raises(ConfigError, match="go together"):
        Settings.from_env(
            {**base, "BEACON_EXPORT_S3_BUCKET": "b", "BEACON_EXPORT_S3_ACCESS_KEY_ID": "k"}
        )
    with pytest.raises(ConfigError, match="relative key prefix"):
        Settings.from_env({**base, "BEACON_EXPORT_S3_BUCKET": "b", "BEACON_EXPORT_S3_PREFIX": "/x"})


SLUG = "../../escaped"


def test_a_slug_that_is_not_one_plain_name_is_never_a_path(exporting: App, out: Path) -> None:
    """Tried as an attacker: slugs are checked where they are written (the admin API, a
    config file), but a row written another way (an older release, SQL by hand) named a
    file path: `../../x` wrote outside the export's directory."""

    from engine.tables import status_pages

    page = seed.page(exporting.store, "plain")
    with exporting.store.begin() as conn:
        conn.execute(status_pages.update().where(status_pages.c.id == page.id).values(slug=SLUG))
    rendered(exporting, page.id)
    assert not (out.parent / "escaped").exists()  # p/../../escaped
    assert not (out / "escaped").exists()
    assert not [p for p in out.rglob("*") if p.is_file() and ".beacon" not in p.parts]


def test_the_incident_permalinks_the_page_links_are_exported_as_beacon_serves_them(
    exporting: App, out: Path
) -> None:
    """While Beacon is down, a link on the exported page, its history or its feeds to an
    incident must not be a dead one."""
    import re

    rich = seed.rich_page(exporting.store)
    rendered(exporting, rich.page.id)
    linked = set(
        re.findall(r'href="incidents/([0-9a-z]+)"', (out / "p/acme/index.html").read_text())
    )
    linked |= set(
        re.findall(r'href="incidents/([0-9a-z]+)"', (out / "p/acme/history.html").read_text())
    )
    assert len(linked) == 2  # the open incident and the resolved one
    for public_id in linked:
        url = f"/p/acme/incidents/{public_id}"
        answer = exporting.client.get(url, headers={"Accept-Encoding": "identity"})
        assert answer.status_code == 200, url
        assert (out / f"p/acme/incidents/{public_id}.html").read_bytes() == answer.content, url
    exported = (out / "p/acme/incidents").glob("*.html")
    assert {p.name.removesuffix(".html") for p in exported} == linked


def test_an_incident_id_that_is_not_a_public_id_is_never_a_path(exporting: App, out: Path) -> None:
    """Tried as an attacker: ids are made by Beacon, but a row written another way must not
    name a file outside the page's directory."""
    from engine.tables import incidents

    rich = seed.rich_page(exporting.store)
    with exporting.store.begin() as conn:
        first = conn.execute(incidents.select().order_by(incidents.c.id)).first()
        assert first is not None
        conn.execute(
            incidents.update().where(incidents.c.id == first.id).values(public_id="../../../evil")
        )
    rendered(exporting, rich.page.id)
    assert (out / "p/acme/index.html").exists()
    assert not [p for p in out.parent.rglob("*evil*")]
    # The other incident's permalink is there.
    assert len(list((out / "p/acme/incidents").glob("*.html"))) == 1


def test_a_render_reads_each_targets_manifest_once(
    exporting: App, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rich = seed.rich_page(exporting.store)
    headers = {**exporting.key(admin=True), "Content-Type": "image/png"}
    for kind, image in (("logo", png()), ("favicon", png()[::-1])):
        if kind == "favicon":
            buffer = io.BytesIO()
            Image.new("RGB", (2, 2), (30, 30, 200)).save(buffer, "PNG")
            image = buffer.getvalue()
        answer = exporting.client.put(
            f"/api/v1/pages/{rich.page.id}/{kind}", content=image, headers=headers
        )
        assert answer.status_code == 200, answer.text
    rendered(exporting, rich.page.id)
    assets = {p: p.stat().st_ino for p in (out / "p/acme/assets").iterdir()}
    assert len(assets) == 2
    reads = []
    original = export.DirTarget.manifest

    def counted(self: export.DirTarget, page_id: int) -> export.Manifest | None:
        reads.append(page_id)
        return original(self, page_id)

    monkeypatch.setattr(export.DirTarget, "manifest", counted)
    rendered(exporting, rich.page.id)
    assert reads == [rich.page.id]
    # Both assets were known from that one read: there still, not written again.
    assert {p: p.stat().st_ino for p in (out / "p/acme/assets").iterdir()} == assets


def test_an_svg_stored_before_sanitising_is_exported_as_svg_hush_keeps_it(
    exporting: App, out: Path
) -> None:
    """Beacon serves a hostile SVG an older release stored (before svg-hush) under a CSP
    that sandboxes it; the export goes where no such header may follow (a bucket's objects
    carry none, nor does a CDN or proxy set up without it), so it writes what svg-hush keeps
    of it, never the script."""
    rich = seed.rich_page(exporting.store)
    raw = (
        b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10" onload="alert(1)">'
        b'<script>alert(2)</script><rect width="10" height="10" fill="red"/></svg>'
    )
    digest = hashlib.sha256(raw).hexdigest()
    with exporting.store.begin() as conn:
        asset_id = conn.execute(
            assets.insert().values(
                sha256=digest, content_type="image/svg+xml", data=raw, created_at=datetime.now(UTC)
            )
        ).inserted_primary_key[0]
        conn.execute(
            status_pages.update()
            .where(status_pages.c.id == rich.page.id)
            .values(logo_asset_id=asset_id)
        )
    rendered(exporting, rich.page.id)
    exported = out / f"p/acme/assets/{digest}.svg"
    kept = exported.read_bytes()
    assert b"<rect" in kept
    assert not re.search(rb"\son\w+\s*=|<script", kept, re.I)
    assert f"assets/{digest}" in (out / "p/acme/index.html").read_text()

    # An export written before this (the upload byte for byte, its manifest's ETag then the
    # hash's first 20 characters) is written again, though an asset that is out already
    # usually stays as it is (named by its hash, it never changes).
    manifest_path = out / export.STATE_DIR / "pages" / f"{rich.page.id}.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][f"p/acme/assets/{digest}.svg"] = f'"{digest[:20]}"'
    manifest_path.write_text(json.dumps(manifest))
    exported.write_bytes(raw)
    with exporting.store.begin() as conn:  # a new render: the page changed
        conn.execute(
            status_pages.update().where(status_pages.c.id == rich.page.id).values(name="Acme 2")
        )
    rendered(exporting, rich.page.id)
    assert "Acme 2" in (out / "p/acme/index.html").read_text()
    assert exported.read_bytes() == kept


def test_a_slugs_tree_holds_only_the_files_of_the_page_exported_there(
    exporting: App, out: Path
) -> None:
    """Files under p/<slug>/ that no manifest lists (a page of another team that had the
    slug before, whose removal failed; a manifest lost in a crash) go with the first render
    that writes there: a static server would otherwise go on serving them, another team's
    incident permalinks among them, under this page's address."""
    stale = out / "p/acme/incidents/zzold1.html"
    stale.parent.mkdir(parents=True)
    stale.write_text("<h1>Team B's private incident</h1>")
    (out / "p/acme/api/v2").mkdir(parents=True)
    (out / "p/acme/api/v2/old.json").write_text("{}")
    rich = seed.rich_page(exporting.store)
    rendered(exporting, rich.page.id)
    assert (out / "p/acme/index.html").exists()
    assert not stale.exists() and not (out / "p/acme/api/v2/old.json").exists()
