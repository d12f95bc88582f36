"""`/p/{slug}/embed.js`: a script another site includes to show a banner while the page is
not operational.

    <script src="https://status.example.com/embed.js" async></script>

The script reads the page's `status.json` (CORS is open on public pages) when it loads and
every minute after, and shows a small fixed banner with the description and a link to the
page; it removes the banner when all is well again. It is generated per page so it knows
where the page lives; it holds no status itself, so it may be cached.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.access import Want

from .page_access import finish, guard

SCRIPT = """(function () {
  "use strict";
  var STATUS_URL = %(status_url)s;
  var PAGE_URL = %(page_url)s;
  var COLOURS = {minor: "#f1c40f", major: "#e67e22", critical: "#e74c3c", maintenance: "#3498db"};
  var ID = "beacon-status-banner";
  function show(status) {
    var banner = document.getElementById(ID);
    if (!status || status.indicator === "none") {
      if (banner) { banner.parentNode.removeChild(banner); }
      return;
    }
    if (!banner) {
      banner = document.createElement("a");
      banner.id = ID;
      banner.setAttribute("role", "status");
      banner.style.cssText = "position:fixed;left:16px;bottom:16px;z-index:2147483647;" +
        "padding:10px 14px;border-radius:6px;color:#fff;font:14px/1.4 sans-serif;" +
        "text-decoration:none;box-shadow:0 2px 8px rgba(0,0,0,.25);max-width:360px";
      document.body.appendChild(banner);
    }
    banner.href = PAGE_URL;
    banner.style.background = COLOURS[status.indicator] || COLOURS.major;
    banner.textContent = status.description + " \\u2014 view status";
  }
  function poll() {
    if (!window.fetch) { return; }
    fetch(STATUS_URL, {credentials: "omit"}).then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (body) { show(body && body.status); }).catch(function () {});
  }
  function start() { poll(); setInterval(poll, 60000); }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else { start(); }
})();
"""


def script(page_url: str) -> bytes:
    """The embed script for the page at `page_url` (its root, no trailing slash)."""
    page_url = page_url.rstrip("/")
    # json.dumps gives a JS string literal; "</" is broken up so the literal can never end an
    # inline <script> element if someone pastes the script into a page.
    values = {
        "status_url": json.dumps(page_url + "/api/v2/status.json").replace("</", "<\\/"),
        "page_url": json.dumps(page_url + "/").replace("</", "<\\/"),
    }
    return (SCRIPT % values).encode()


def _page_root(request: Request, slug: str) -> str:
    """Where the page answers for this request: the host's root on a page host, else
    `/p/<slug>` on the host the script was loaded from."""
    if "page_host" in request.scope.get("state", {}):
        return f"{request.url.scheme}://{request.url.netloc}"
    return f"{request.url.scheme}://{request.url.netloc}/p/{slug}"


async def embed_js(request: Request) -> Response:
    decision = await guard(request, Want.DATA)
    body = script(_page_root(request, request.path_params["slug"]))
    response = Response(body, media_type="text/javascript; charset=utf-8")
    return finish(response, decision, cors=True)


routes = [Route("/p/{slug}/embed.js", embed_js, methods=["GET"])]
