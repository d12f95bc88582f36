"""Logo and favicon files named by the config file: checked (type by content, size) and
stored once by SHA-256 in the `assets` table."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.tables import assets

MAX_LOGO_BYTES = 512 * 1024
MAX_FAVICON_BYTES = 128 * 1024

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
    """Check a `role` image's content (type sniffed from the bytes, size, SVG safety)."""
    allowed = LOGO_TYPES if role == "logo" else FAVICON_TYPES
    limit = limit_for(role)
    if len(data) > limit:
        raise ValueError(f"{role} file is {len(data)} bytes; the limit is {limit}")
    kind = sniff(data)
    if kind is None or kind not in allowed:
        names = ", ".join(sorted(allowed))
        raise ValueError(f"{role} file is {kind or 'not a known image type'}; allowed: {names}")
    if kind == "image/svg+xml":
        lowered = data.lower()
        # An SVG opened on its own runs its scripts in the page's origin.
        if b"<script" in lowered or b"javascript:" in lowered or b"<foreignobject" in lowered:
            raise ValueError(f"{role} SVG contains scripts or foreign objects, which are refused")
    return Asset(hashlib.sha256(data).hexdigest(), kind, data)


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
