"""The admin UI's own static files: its stylesheet, its script and the vendored htmx
(htmx.org 2.0.11, 0BSD; no CDN, no build step). Only these names are served."""

from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

STATIC = Path(__file__).parent.parent / "static"
FILES = {
    "admin.css": "text/css; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
    "htmx.min.js": "text/javascript; charset=utf-8",
}
_LOADED: dict[str, tuple[bytes, str]] = {}


def _load(name: str) -> tuple[bytes, str]:
    if name not in _LOADED:
        body = (STATIC / name).read_bytes()
        _LOADED[name] = (body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
    return _LOADED[name]


async def static_file(request: Request) -> Response:
    """One of `FILES`, revalidated by ETag (the names carry no version)."""
    name = request.path_params["name"]
    if name not in FILES:
        return Response("not found", 404, media_type="text/plain")
    body, etag = _load(name)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, headers=headers, media_type=FILES[name])


routes: list[BaseRoute] = [Route("/admin/static/{name}", static_file, methods=["GET", "HEAD"])]
