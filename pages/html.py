"""The status page's HTML, rendered from a `PageSnapshot`: the page, the archive, a permalink.

Renderers are pure (snapshot in, bytes out), so workers can render every document of a page
in one go (`pages.documents`). Two Jinja environments exist in Beacon (STYLE.md): this one,
for pages, autoescapes; user-written incident templates render elsewhere, in a sandbox.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from engine import pagedata, uptime
from engine.models import STATUS_NAME, ServiceStatus
from engine.pagedata import Incident, PageSnapshot

HERE = Path(__file__).parent


def _compact(text: str, comment: str) -> str:
    """The asset without indentation and whole-line comments (the CSS is inline in every
    page; the script is the page's `page.js` document)."""
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith(comment))


def _run_widths(days: int) -> str:
    """`.f1{flex:1}` ... `.f<days>{...}`: how wide a run of days is drawn without
    JavaScript, as classes (the page sets no `style` attribute, for its CSP)."""
    return "".join(f".f{n}{{flex:{n}}}" for n in range(1, days + 1))


CSS = _compact((HERE / "static" / "page.css").read_text(), "/*") + _run_widths(uptime.DEFAULT_DAYS)
JS = _compact((HERE / "static" / "page.js").read_text(), "//")
#: Incidents per archive page.
ARCHIVE_PAGE = 25

STATUS_CODES = {
    ServiceStatus.OPERATIONAL: "o",
    ServiceStatus.UNDER_MAINTENANCE: "m",
    ServiceStatus.DEGRADED: "d",
    ServiceStatus.PARTIAL_OUTAGE: "p",
    ServiceStatus.MAJOR_OUTAGE: "x",
}


# --- rendering ------------------------------------------------------------------------------


def _local(dt: datetime, page: pagedata.PageInfo) -> str:
    local = dt.astimezone(pagedata.page_tz(page.time_zone))
    return local.strftime("%b %d, %Y %H:%M ") + (local.tzname() or "")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        iso=lambda dt: dt.isoformat(),
        local=_local,
        longdate=lambda d: d.strftime("%b %d, %Y"),
        code=lambda s: STATUS_CODES[ServiceStatus(s)],
        status_name=lambda s: STATUS_NAME[ServiceStatus(s)],
        incident_status=lambda s: str(s).replace("_", " ").capitalize(),
        maintenance_status=lambda s: str(s).replace("_", " ").capitalize(),
    )
    return env


ENV = _environment()


#: Days a phone shows (Statuspage's small-screen bar: 90 thin bars would be hairlines);
#: page.css and page.js switch at the same width.
PHONE_DAYS = 30


@dataclass(frozen=True)
class Bars:
    """A component's uptime bar, compact: one letter per day, details only where needed."""

    codes: str
    #: "day index:uptime:incident ids" for days below 100 % or with incidents, ";"-joined.
    extra: str
    #: (code, days, older) runs, drawn without JavaScript; `older` runs lie before the last
    #: `PHONE_DAYS` days, which is all a phone shows (a run across that line is cut in two).
    runs: tuple[tuple[str, int, bool], ...]
    #: Uptime over all the days, and over the last `PHONE_DAYS` (what a phone shows).
    uptime: str
    recent: str


def pct(value: float | None) -> str:
    if value is None:
        return "no data"
    text = f"{value * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def bars(component: pagedata.Component) -> Bars:
    codes, extra = [], []
    days = component.uptime_days
    for index, day in enumerate(days):
        codes.append(STATUS_CODES[day.worst] if day.worst else "n")
        below = day.uptime is not None and day.uptime < 0.99995
        if below or day.incidents:
            up = "" if day.uptime is None else pct(day.uptime)[:-1]
            ids = ",".join(i.public_id for i in day.incidents)
            extra.append(f"{index}:{up}:{ids}")
    cut = max(0, len(codes) - PHONE_DAYS)
    runs: list[tuple[str, int, bool]] = []
    for index, code in enumerate(codes):
        older = index < cut
        if runs and runs[-1][0] == code and runs[-1][2] == older:
            runs[-1] = (code, runs[-1][1] + 1, older)
        else:
            runs.append((code, 1, older))
    return Bars(
        "".join(codes),
        ";".join(extra),
        tuple(runs),
        pct(component.uptime),
        pct(uptime.overall(days[cut:])),
    )


@dataclass(frozen=True)
class _LayoutItem:
    group: pagedata.Group | None
    components: tuple[pagedata.Component, ...]


def _layout(snap: PageSnapshot) -> list[_LayoutItem]:
    """Groups and ungrouped components in page order (a group sits at its first member)."""
    items: list[_LayoutItem] = []
    groups = {g.public_id: g for g in snap.groups}
    placed: set[str] = set()
    for c in snap.components:
        if c.group_id is None:
            items.append(_LayoutItem(None, (c,)))
        elif c.group_id not in placed:
            placed.add(c.group_id)
            group = groups[c.group_id]
            items.append(_LayoutItem(group, snap.in_group(group)))
    return items


def _affected_in_page_order(snap: PageSnapshot) -> Any:
    """incident -> [(component name, status words)] in the page's order of components."""
    order = {c.public_id: n for n, c in enumerate(snap.components)}
    names = {c.public_id: c.name for c in snap.components}

    def affected(incident: Incident) -> list[tuple[str, str]]:
        found = sorted(incident.impacts, key=lambda pair: order.get(pair[0], len(order)))
        return [(names[code], STATUS_NAME[status]) for code, status in found if code in names]

    return affected


def _context(snap: PageSnapshot, root: str) -> dict[str, Any]:
    return {
        "affected_list": _affected_in_page_order(snap),
        "snap": snap,
        "page": snap.page,
        "status": snap.status,
        "root": root,
        "css": CSS,
        "names": {c.public_id: c.name for c in snap.components},
        "phone_days": PHONE_DAYS,
    }


def _titles(snap: PageSnapshot) -> str:
    found = {
        i.public_id: i.title for c in snap.components for d in c.uptime_days for i in d.incidents
    }
    # Inside <script> no "<" may appear, whatever the titles say ("</script>", "<!--").
    return json.dumps(found, ensure_ascii=False).replace("<", "\\u003c")


def _days_back(snap: PageSnapshot, days: int) -> list[tuple[date, list[Incident]]]:
    """The last `days` days, newest first, each with the incidents that started on it,
    open ones included: a day never says "No incidents reported" above its own incident."""
    tz = snap.tz
    today = snap.generated_at.astimezone(tz).date()
    by_day: dict[date, list[Incident]] = {}
    for incident in snap.incidents:  # newest first
        by_day.setdefault(incident.started_at.astimezone(tz).date(), []).append(incident)
    return [(d, by_day.get(d, [])) for d in (today - timedelta(n) for n in range(days))]


def render_script(snap: PageSnapshot) -> bytes:
    """The page's script (document `page.js`): a file of its own, not inline, so the page's
    Content-Security-Policy can refuse every inline script (pages.headers)."""
    return JS.encode()


def render_index(snap: PageSnapshot) -> bytes:
    """The status page's HTML (document `index.html`)."""
    context = _context(snap, "")
    context.update(
        layout=_layout(snap),
        bars={c.public_id: bars(c) for c in snap.components},
        d0=snap.uptime_days[0].isoformat() if snap.uptime_days else "",
        titles=_titles(snap),
        history=_days_back(snap, pagedata.HISTORY_DAYS),
    )
    return ENV.get_template("page/index.html").render(context).encode()


def _months(snap: PageSnapshot, found: Iterable[Incident]) -> list[tuple[str, list[Incident]]]:
    months: dict[str, list[Incident]] = {}
    for incident in found:
        months.setdefault(incident.started_at.astimezone(snap.tz).strftime("%B %Y"), []).append(
            incident
        )
    return list(months.items())


def render_archive(snap: PageSnapshot, found: tuple[Incident, ...], more: bool) -> bytes:
    context = _context(snap, "")
    older = found[-1].started_at.isoformat() if more and found else ""
    context.update(months=_months(snap, found), older=older)
    return ENV.get_template("page/history.html").render(context).encode()


def render_history(snap: PageSnapshot) -> bytes:
    """The archive's first page (document `history`): the newest incidents, by month."""
    found = snap.incidents[:ARCHIVE_PAGE]
    return render_archive(snap, found, len(snap.incidents) > ARCHIVE_PAGE)


def render_incident(snap: PageSnapshot, incident: Incident) -> bytes:
    context = _context(snap, "../")
    context.update(item=incident)
    return ENV.get_template("page/incident.html").render(context).encode()
