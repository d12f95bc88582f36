"""Static export: every render of an active public page also written where a static server
or a CDN serves it while Beacon is down (DESIGN.md: status pages must outlive the incidents
they report; docs/static-export.md).

The render job already holds every document's bytes, ETag and gzip variant (`cache.Entry`):
the export writes those bytes, nothing is rendered again. Two targets, either or both:

- `BEACON_EXPORT_DIR` (`DirTarget`): files laid out as the URLs (`p/<slug>/index.html`,
  `p/<slug>/api/v2/summary.json`, `p/<slug>/history.rss`, ...), each written to a temporary
  file in its own directory, fsynced and renamed over the old one, so a reader sees the old
  file or the new one, never half of one; `.gz` beside each document the cache gzipped;
- an S3-compatible bucket (`pages.export_s3.S3Target`), objects keyed by the URL path with
  their Content-Type and Cache-Control.

Each target keeps a manifest per page (which files it wrote, with their ETags): a document
whose ETag did not change is not written again, and a file the page no longer has goes.

When access to a page ends (deactivated, deleted, renamed; a private page is never
exported), `remove` takes it out of every target: the request that ends it calls it after
its commit (`pages.render.evict`), and a render that finds the page not public does too.
A render that began before such a change cannot put the page back: it exports only if the
page cache took its entry, and looks at the cache once more after writing.

Best-effort, as the side effect of a render: a target that fails is logged, the render
goes on, and the next render writes what was missed (its manifest was not updated).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import orjson
import sqlalchemy as sa

from engine.assets import for_export
from engine.models import SLUG_PATTERN
from engine.pagemodel import PageSnapshot
from engine.runtime import Runtime
from engine.tables import assets

from .cache import PUBLIC_CACHE_CONTROL, REDIS_ERRORS, Document, Entry, for_runtime
from .state import of as pages_state

log = logging.getLogger(__name__)

#: Uploaded logos and favicons are addressed by content hash: immutable.
ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"
#: A file name for each asset type, so a static server derives the type from it.
ASSET_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/x-icon": "ico",
    "image/svg+xml": "svg",
}
#: Where targets keep their manifests, beside the pages (never under `p/`, which is served).
STATE_DIR = ".beacon"
#: A document this large or larger also gets its `.gz` file (the cache's gzip variant) for
#: the proxy's `precompressed`/`gzip_static`; a smaller one the proxy compresses itself.
GZIP_FILE_MIN = 4096
#: Files of one render written side by side.
PARALLEL_WRITES = 4
#: An incident's public id as Beacon makes them (`engine.tables.new_public_id`): a file name.
PUBLIC_ID = re.compile(r"[0-9a-z]{1,16}")
HTML_TYPE = "text/html; charset=utf-8"


@dataclass(frozen=True)
class ExportFile:
    """One document or asset of a page: `name` is its path under the page's root as the
    URL has it (`index.html`, `history`, `api/v2/summary.json`, `assets/<sha256>`)."""

    name: str
    body: bytes
    content_type: str
    etag: str
    cache_control: str
    gzipped: bytes | None = None
    #: An uploaded asset (logo, favicon): its file name carries its type's extension.
    asset: bool = False


class Target(Protocol):
    def manifest(self, page_id: int) -> Manifest | None:
        """What the target holds for the page (None: nothing, or a manifest it cannot read).
        A render reads it once and hands it to `has_asset` and `publish`."""

    def has_asset(self, old: Manifest | None, slug: str, name: str) -> bool:
        """Whether asset `name` (`assets/<sha256>`) is already out under `p/<slug>/`, as
        the target's manifest `old` says."""

    def publish(
        self,
        page_id: int,
        slug: str,
        files: list[ExportFile],
        rendered_at: datetime,
        old: Manifest | None,
    ) -> None:
        """Make the page's exported copy these files (and only these); `old` is the
        target's manifest as `manifest` read it."""

    def remove(self, page_id: int, slug: str | None, thorough: bool = True) -> None:
        """Take the page (by id, and by `slug` when the caller knows it) out of the export;
        not `thorough`: only if the page's manifest says something was exported."""


@dataclass
class Exporter:
    """The targets of this process, made from the settings on first use."""

    targets: list[Target]
    #: One lock per page id: a render and a removal of one page in this process never
    #: interleave (a removal that runs mid-publish would otherwise be undone).
    _locks: dict[int, threading.Lock]
    _guard: threading.Lock

    def lock(self, page_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(page_id, threading.Lock())


def exporter(rt: Runtime) -> Exporter | None:
    """The process's exporter, or None when nothing is exported (the usual case: a render
    then pays one attribute read)."""
    state = pages_state(rt)
    found = state.exporter
    if found is None:
        with state.lock:
            found = state.exporter
            if found is None:
                found = state.exporter = _make(rt)
    return found if found.targets else None


def _make(rt: Runtime) -> Exporter:
    settings = rt.settings
    targets: list[Target] = []
    if settings.export_dir is not None:
        targets.append(DirTarget(settings.export_dir))
    if settings.export_s3_bucket:
        from .export_s3 import S3Target

        targets.append(S3Target.from_settings(settings))
    return Exporter(targets, {}, threading.Lock())


# --- the hooks --------------------------------------------------------------------------------


def after_render(
    rt: Runtime,
    entry: Entry,
    stored: Entry | None,
    rendered_at: datetime,
    asset_hashes: Iterable[str | None] = (),
    snapshot: PageSnapshot | None = None,
) -> None:
    """What `pages.render.render_page` calls once the cache holds its entry (`stored`):
    publish an active public page, remove any other; nothing when the cache kept a newer
    render or a tombstone (whoever put that there exports or removed the page). With the
    render's `snapshot`, the permalink pages of the incidents it shows go out too."""
    found = exporter(rt)
    if found is None:
        return
    if stored is None or stored.page_id != entry.page_id or stored.version != entry.version:
        return
    if not _plain(entry.slug):
        # Slugs are checked where they are written; a row written another way must not
        # name a path (`../../x` wrote outside the directory).
        log.warning("page %s is not exported: its slug %r is not a slug", entry.page_id, entry.slug)
        remove(rt, entry.page_id, None, thorough=False)
        return
    if not stored.public:
        # Usually nothing to do (a render of an inactive page): only a manifest is read.
        remove(rt, entry.page_id, entry.slug, thorough=False)
        return
    documents = files_of(stored) + (permalinks(snapshot) if snapshot is not None else [])
    with found.lock(entry.page_id):
        for target in found.targets:
            try:
                old = target.manifest(entry.page_id)
                wanted = documents + _assets(rt, target, old, entry, asset_hashes)
                target.publish(entry.page_id, entry.slug, wanted, rendered_at, old)
            except Exception:
                log.exception("exporting page %r failed; the next render tries again", entry.slug)
    # An eviction that came while we wrote found files to remove before ours were there.
    try:
        evicted = for_runtime(rt).version(entry.slug) is None
    except REDIS_ERRORS as exc:
        # Cannot tell: the eviction's own removal ran after its tombstone, which this
        # render's put would then have met; keep the files (the next render checks again).
        log.warning("could not re-check page %r after exporting it: %s", entry.slug, exc)
        return
    if evicted:
        remove(rt, entry.page_id, entry.slug)


def remove(rt: Runtime, page_id: int, slug: str | None, thorough: bool = True) -> None:
    """Take the page out of every target now (access to it ended, or it was deleted)."""
    found = exporter(rt)
    if found is None:
        return
    slug = slug if _plain(slug) else None  # never a path to remove
    with found.lock(page_id):
        for target in found.targets:
            try:
                target.remove(page_id, slug, thorough)
            except Exception:
                log.exception("removing page %r from the export failed", slug or page_id)


def files_of(entry: Entry) -> list[ExportFile]:
    """Every document of a rendered page as it is exported (the bytes the cache holds)."""
    return [
        ExportFile(name, doc.body, doc.content_type, doc.etag, PUBLIC_CACHE_CONTROL, doc.gzipped)
        for name, doc in entry.documents.items()
    ]


def permalinks(snapshot: PageSnapshot) -> list[ExportFile]:
    """The permalink page (`incidents/<public id>`) of every incident the snapshot holds:
    those the exported page, history and feeds link to, which would otherwise be dead links
    while Beacon is down. The same template as Beacon's own route renders them."""
    from .html import render_incident

    out = []
    for incident in snapshot.incidents:
        if not PUBLIC_ID.fullmatch(incident.public_id):
            # Ids are made by Beacon; one written another way must not name a path.
            log.warning("incident %r is not exported: not a public id", incident.public_id)
            continue
        doc = Document.make(render_incident(snapshot, incident), HTML_TYPE, snapshot.generated_at)
        out.append(
            ExportFile(
                f"incidents/{incident.public_id}",
                doc.body,
                doc.content_type,
                doc.etag,
                PUBLIC_CACHE_CONTROL,
                doc.gzipped,
            )
        )
    return out


def asset_etag(name: str) -> str:
    """What a target's manifest records for asset `name` (`assets/<sha256>`): the hash's
    start, and `-s` for a copy written since SVGs are exported as svg-hush keeps them. An
    asset is out already (`Target.has_asset`) only with this ETag, so a copy an older
    release exported (the upload byte for byte) is written again once."""
    return f'"{name.rsplit("/", 1)[-1][:20]}-s"'


def _assets(
    rt: Runtime,
    target: Target,
    old: Manifest | None,
    entry: Entry,
    hashes: Iterable[str | None],
) -> list[ExportFile]:
    """The page's logo and favicon. They are immutable (named by hash), so the store is
    read only for one the target does not have yet; one it has is listed without bytes."""
    out = []
    for digest in sorted({h for h in hashes if h}):
        name = f"assets/{digest}"
        if target.has_asset(old, entry.slug, name):
            out.append(ExportFile(name, b"", "", asset_etag(name), ASSET_CACHE_CONTROL, None, True))
            continue
        with rt.store.read() as conn:
            row = conn.execute(
                sa.select(assets.c.content_type, assets.c.data).where(assets.c.sha256 == digest)
            ).first()
        if row is None:
            continue
        data = for_export(row.content_type, bytes(row.data))
        if data is None:
            log.warning("asset %s of page %r is not exported: no SVG left", name, entry.slug)
            continue
        out.append(
            ExportFile(
                name, data, row.content_type, asset_etag(name), ASSET_CACHE_CONTROL, None, True
            )
        )
    return out


# --- files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """What a target wrote for one page: its slug, when that render began, and each
    written path with its ETag."""

    slug: str
    rendered_at: str
    files: dict[str, str]

    @classmethod
    def parse(cls, raw: bytes | None) -> Manifest | None:
        if not raw:
            return None
        try:
            data = orjson.loads(raw)
            return cls(str(data["slug"]), str(data["rendered_at"]), dict(data["files"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None  # unreadable: as if nothing was written (everything is written again)

    def dump(self) -> bytes:
        return orjson.dumps(
            {"slug": self.slug, "rendered_at": self.rendered_at, "files": self.files}
        )


def file_path(slug: str, item: ExportFile) -> str:
    """Where a static server finds `item`: the URL's path, plus `.html` for an extensionless
    HTML document (`history`) and the type's extension for an asset, so the server can
    tell the content type from the name."""
    name = item.name
    if item.asset:
        name = f"{name}.{ASSET_EXTENSIONS.get(item.content_type, 'bin')}"
    elif "." not in name.rsplit("/", 1)[-1]:
        name += ".html"
    return f"p/{slug}/{name}"


class DirTarget:
    """Files under a directory, laid out as the URLs (docs/static-export.md serves it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / STATE_DIR / "pages"
        self._pool = ThreadPoolExecutor(PARALLEL_WRITES, thread_name_prefix="beacon-export")

    def _manifest_path(self, page_id: int) -> Path:
        return self.state / f"{page_id}.json"

    def manifest(self, page_id: int) -> Manifest | None:
        try:
            return Manifest.parse(self._manifest_path(page_id).read_bytes())
        except FileNotFoundError:
            return None

    def has_asset(self, old: Manifest | None, slug: str, name: str) -> bool:
        # Under another slug the old tree goes (publish): the asset must be written again.
        return (
            old is not None
            and old.slug == slug
            and any(
                path.startswith(f"p/{slug}/{name}.") and etag == asset_etag(name)
                for path, etag in old.files.items()
            )
        )

    def publish(
        self,
        page_id: int,
        slug: str,
        files: list[ExportFile],
        rendered_at: datetime,
        old: Manifest | None,
    ) -> None:
        stamp = rendered_at.isoformat()
        if old is not None and old.rendered_at > stamp:
            return  # a later render of the page got here first
        if old is not None and old.slug != slug:
            self._remove_tree(old.slug)
        before = old.files if old is not None and old.slug == slug else {}
        written: dict[str, str] = {}
        jobs: list[tuple[Path, bytes]] = []
        for item in files:
            if item.asset and not item.body:
                # Listed as out already (`has_asset`): its file, of whichever type, stays;
                # one gone meanwhile leaves the manifest, and the next render writes it.
                prefix = f"p/{slug}/{item.name}."
                for rel, etag in before.items():
                    if rel.startswith(prefix) and (self.root / rel).exists():
                        written[rel] = etag
                continue
            path = file_path(slug, item)
            variants = [(path, item.body, item.etag)]
            if item.gzipped is not None and len(item.body) >= GZIP_FILE_MIN:
                variants.append((path + ".gz", item.gzipped, item.etag[:-1] + '-gz"'))
            for rel, body, etag in variants:
                target = self.root / rel
                if before.get(rel) != etag or not target.exists():
                    jobs.append((target, body))
                written[rel] = etag
        # Each file is fsynced before its rename; doing them side by side lets the file
        # system commit them together (a status change replaces a dozen files).
        list(self._pool.map(lambda job: write_atomic(*job), jobs))
        for rel in before.keys() - written.keys():
            (self.root / rel).unlink(missing_ok=True)
        if old is None or old.slug != slug:
            # Without this page's manifest for the slug, what else is under it is no one's
            # this page knows (another page's that had the slug, whose removal failed; a
            # manifest lost in a crash): it goes, or the server would go on serving it here.
            self._sweep(slug, written.keys())
        # The manifest is Beacon's own note, not served: lost in a crash, the next render
        # writes every file again. No fsync for it.
        write_atomic(
            self._manifest_path(page_id), Manifest(slug, stamp, written).dump(), sync=False
        )

    def remove(self, page_id: int, slug: str | None, thorough: bool = True) -> None:
        old = self.manifest(page_id)
        if old is None and not thorough:
            return
        for name in {s for s in (slug, old.slug if old else None) if s}:
            self._remove_tree(name)
        self._manifest_path(page_id).unlink(missing_ok=True)

    def _sweep(self, slug: str, kept: Iterable[str]) -> None:
        """Remove the files under `p/<slug>/` but `kept` (paths under the root); another
        writer's temporary file (a dot file) stays."""
        tree = self.root / "p" / slug
        keep = set(kept)
        for path in tree.rglob("*"):
            if path.is_symlink() or path.is_file():
                rel = str(path.relative_to(self.root))
                if rel not in keep and not path.name.startswith("."):
                    path.unlink(missing_ok=True)

    def _remove_tree(self, slug: str) -> None:
        """Take `p/<slug>/` away at once (one rename), then delete it at leisure."""
        tree = self.root / "p" / slug
        if not tree.is_dir() or not _plain(slug):
            return
        trash = self.root / STATE_DIR / "trash"
        trash.mkdir(parents=True, exist_ok=True)
        gone = trash / f"{slug}-{uuid.uuid4().hex[:8]}"
        os.replace(tree, gone)
        shutil.rmtree(gone, ignore_errors=True)


def _plain(slug: str | None) -> bool:
    """A slug that names one directory under `p/` (slugs are validated where they are
    written; this is the file system's own guard)."""
    return slug is not None and re.fullmatch(SLUG_PATTERN, slug) is not None


def write_atomic(path: Path, body: bytes, mode: int = 0o644, sync: bool = True) -> None:
    """Replace `path` with `body`: written to a temporary file in the same directory,
    fsynced (unless not `sync`), then renamed over it, so a reader never sees half a file
    and a crash leaves the old file or the new one.

    Static servers make ETags from the modification time in whole seconds and the size: a
    new body of the same size within the second of the old one would keep the old ETag, and
    clients holding it would be told nothing changed. So the new file's time is at least a
    second after the old one's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(body)
            out.flush()
            os.fchmod(out.fileno(), mode)  # mkstemp's 0600 would hide it from the server
            if sync:
                os.fsync(out.fileno())
        _after_old(Path(temp), path)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _after_old(temp: Path, path: Path) -> None:
    try:
        old = int(path.stat().st_mtime)
    except FileNotFoundError:
        return
    now = time.time()
    if int(now) <= old:
        at = old + 1
        os.utime(temp, (at, at))


def export_paths(root: Path, slug: str) -> list[str]:
    """The files exported for a page, relative to `root` (for tests and tools)."""
    tree = root / "p" / slug
    return sorted(str(p.relative_to(root)) for p in tree.rglob("*") if p.is_file())
