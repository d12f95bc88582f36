"""The page's status as an SVG badge (`/p/{slug}/badge.svg`), for READMEs and dashboards.

Two halves in the familiar flat style: a grey label and the page's description, coloured
by its indicator. Text widths are estimated (no font metrics on the server); the estimate
errs wide so text never overflows.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.models import Impact
from engine.pagedata import PageSnapshot
from engine.status import PageStatus

from .page_access import serve_document

#: The page banner's colours (page.css): white 11px text on each keeps WCAG AA's 4.5:1,
#: which the familiar bright badge greens and yellows do not (2.0:1 for #2fcc66).
COLOURS: dict[Impact, str] = {
    Impact.NONE: "#17663a",
    Impact.MAINTENANCE: "#1d4ed8",
    Impact.MINOR: "#8a4b00",
    Impact.MAJOR: "#a3360a",
    Impact.CRITICAL: "#b42318",
}
LABEL_COLOUR = "#555"
HEIGHT = 20


def text_width(text: str) -> int:
    """Approximate width in pixels of `text` at 11px Verdana: 7px a character, with narrow
    letters a little less."""
    narrow = sum(1 for ch in text if ch in "iljtf.,:;!|' ")
    return int(7 * (len(text) - narrow) + 4 * narrow)


def badge(status: PageStatus, label: str = "status") -> bytes:
    """An SVG badge reading `label | <description>` in the indicator's colour."""
    message = status.description
    left = text_width(label) + 12
    right = text_width(message) + 12
    total = left + right
    colour = COLOURS.get(Impact(status.indicator), COLOURS[Impact.NONE])
    title = f"{label}: {message}"
    svg = f"""<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{HEIGHT}" \
role="img" aria-label={quoteattr(title)}>
<title>{escape(title)}</title>
<rect width="{left}" height="{HEIGHT}" fill="{LABEL_COLOUR}"/>
<rect x="{left}" width="{right}" height="{HEIGHT}" fill="{colour}"/>
<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" \
font-size="11">
<text x="{left / 2:.1f}" y="14">{escape(label)}</text>
<text x="{left + right / 2:.1f}" y="14">{escape(message)}</text>
</g>
</svg>
"""
    return svg.encode()


def render_badge(snap: PageSnapshot) -> bytes:
    """The page-cache document `badge.svg`."""
    return badge(snap.status)


async def badge_svg(request: Request) -> Response:
    return await serve_document(request, "badge.svg", cors=True)


routes = [Route("/p/{slug}/badge.svg", badge_svg, methods=["GET", "HEAD"])]
