"""Logos and favicons (from the config file or the admin API): checked and stored once by
SHA-256 in the `assets` table.

A raster image must decode (Pillow) as the type its first bytes claim, within a pixel
budget. An SVG is rewritten by svg-hush (Cloudflare's sanitiser, through `py-svg-hush`):
only its allowlist of elements and attributes survives, without scripts, event handlers,
`javascript:` links (however encoded), foreign objects, or references to other origins;
what is kept is the rewritten file, never the upload. Chosen over writing an allowlist of
our own (which is how the `<svg onload>` of issue 14 got through) and over HTML sanitisers
(nh3/ammonia parse HTML, not XML: they lower-case `viewBox` and drop SVG's namespaces).
Assets are served with a CSP that runs nothing (pages.headers.ASSET_CSP) as well.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from PIL import Image, UnidentifiedImageError
from py_svg_hush import filter_svg
from sqlalchemy.engine import Connection

from engine.tables import assets

MAX_LOGO_BYTES = 512 * 1024
MAX_FAVICON_BYTES = 128 * 1024

#: Pixels a logo or favicon may have (a decompression bomb is refused before decoding).
MAX_PIXELS = 4096 * 4096
#: Pillow's name for each type `sniff` knows.
PILLOW_FORMATS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/x-icon": "ICO",
}
#: Images an SVG may embed as data: URLs (decoded by the browser as images, never scripts).
SVG_DATA_IMAGES = {"image": ["png", "jpeg", "gif", "webp"]}

LOGO_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"}
FAVICON_TYPES = {"image/x-icon", "image/png", "image/svg+xml"}


@dataclass(frozen=True)
class Asset:
    sha256: str
    content_type: str
    data: bytes


def sniff(data: bytes) -> str | None:
    """The image type of `data` from its first bytes (never from the file name), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] == b"\x00\x00\x01\x00":
        return "image/x-icon"
    head = data[:1024].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return "image/svg+xml"
    return None


def limit_for(role: str) -> int:
    return MAX_LOGO_BYTES if role == "logo" else MAX_FAVICON_BYTES


def check(path: Path, *, role: str) -> Asset:
    """Read and check a `role` ("logo" or "favicon") file; `ValueError` says what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {role} file {str(path)!r}: {exc.strerror}") from None
    return check_bytes(data, role=role)


def check_bytes(data: bytes, *, role: str) -> Asset:
    """Check a `role` image's content: its type (sniffed from the bytes), its size, and that
    it decodes (raster) or what svg-hush keeps of it (SVG, which is what is stored)."""
    allowed = LOGO_TYPES if role == "logo" else FAVICON_TYPES
    limit = limit_for(role)
    if len(data) > limit:
        raise ValueError(f"{role} file is {len(data)} bytes; the limit is {limit}")
    kind = sniff(data)
    if kind is None or kind not in allowed:
        names = ", ".join(sorted(allowed))
        raise ValueError(f"{role} file is {kind or 'not a known image type'}; allowed: {names}")
    if kind == "image/svg+xml":
        data = _sanitised_svg(data, role)
    else:
        _check_decodes(data, kind, role)
    return Asset(hashlib.sha256(data).hexdigest(), kind, data)


def for_export(content_type: str, data: bytes) -> bytes | None:
    """A stored asset's bytes as they may go where Beacon's asset CSP (`sandbox`) does not
    follow them (the static export's files and bucket objects): an SVG as svg-hush keeps it,
    since one stored by a release before the sanitiser may hold script (None when nothing
    of it is left); any other type as stored (it decoded as an image when it was kept)."""
    if content_type != "image/svg+xml":
        return data
    try:
        return _sanitised_svg(data, "stored")
    except ValueError:
        return None


def _sanitised_svg(data: bytes, role: str) -> bytes:
    try:
        cleaned = filter_svg(data, SVG_DATA_IMAGES)
    except ValueError as exc:
        raise ValueError(f"{role} SVG cannot be read: {exc}") from None
    if sniff(cleaned) != "image/svg+xml":
        raise ValueError(f"{role} SVG has nothing left that can be shown")
    return cleaned


def _check_decodes(data: bytes, kind: str, role: str) -> None:
    """Decode the whole image; ValueError when Pillow cannot, or it is not what its first
    bytes claimed, or it has more than MAX_PIXELS."""
    name = PILLOW_FORMATS[kind]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[name]) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ValueError(
                        f"{role} image is {width}x{height} pixels; at most {MAX_PIXELS} in all"
                    )
                image.load()
    except UnidentifiedImageError:
        raise ValueError(f"{role} file is not a valid {name} image: it does not decode") from None
    except (
        OSError,
        SyntaxError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as e:
        raise ValueError(f"{role} file is not a valid {name} image: {e}") from None


def store_asset(conn: Connection, asset: Asset) -> int:
    """The id of the stored asset, inserting it the first time its content is seen."""
    found = conn.execute(sa.select(assets.c.id).where(assets.c.sha256 == asset.sha256)).scalar()
    if found is not None:
        return int(found)
    inserted = conn.execute(
        assets.insert().values(
            sha256=asset.sha256, content_type=asset.content_type, data=asset.data
        )
    ).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])
