"""Alert sources in the admin UI: create one (a type picker with each tool's setup notes
from docs/alert-sources.md), its webhook URL shown once (at creation and at each key
rotation), recent events with their outcomes and why no rule matched, and a test event."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from adapters.alert_sources import ADAPTERS
from engine import events as events_mod
from engine import sources as sources_mod
from engine.errors import NotFoundError
from pages import intake, unmatched
from pages.admin import catalog as api
from pages.admin.schemas import AlertSourceIn
from pages.auth import Principal, visible_team_ids
from pages.sources_api import event_json, synthetic_test_event

from .web import Problem, call, form_of, model, redirect, render, team_choices, text, view

DOCS = Path(__file__).resolve().parents[2] / "docs" / "alert-sources.md"
_HEADING = re.compile(r"^## (?P<name>.+?) \(`(?P<type>[a-z0-9-]+)`\)\s*$")
RECENT = 50


@functools.cache
def setup_notes() -> dict[str, tuple[str, Markup]]:
    """type -> (the tool's name, its section of docs/alert-sources.md as HTML). Empty when
    the docs are not beside the code (an installed package without them)."""
    try:
        lines = DOCS.read_text().splitlines()
    except OSError:
        return {}
    notes: dict[str, tuple[str, list[str]]] = {}
    current: list[str] | None = None
    for line in lines:
        found = _HEADING.match(line)
        if found:
            current = []
            notes[found["type"]] = (found["name"], current)
        elif line.startswith("## "):
            current = None
        elif current is not None:
            current.append(line)
    return {t: (name, _html(body)) for t, (name, body) in notes.items()}


def _inline(text: str) -> str:
    html = str(escape(text))
    html = re.sub(r"`([^`]+)`", r"<code>\1</code>", html)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", html)


def _html(lines: list[str]) -> Markup:
    """A tiny, escaping reading of the docs' Markdown: paragraphs, lists, code blocks."""
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []
    code: list[str] | None = None

    def flush() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in lines:
        if line.startswith("```"):
            if code is None:
                flush()
                code = []
            else:
                out.append(f"<pre><code>{escape(chr(10).join(code))}</code></pre>")
                code = None
            continue
        if code is not None:
            code.append(line)
        elif not line.strip():
            flush()
        elif line.startswith("- "):
            if para:
                flush()
            items.append(line[2:].strip())
        elif items and line.startswith("  "):
            items[-1] += " " + line.strip()
        else:
            para.append(line.strip())
    flush()
    return Markup("".join(out))


def _types() -> list[tuple[str, str]]:
    notes = setup_notes()
    return sorted(((t, notes[t][0] if t in notes else t) for t in ADAPTERS), key=lambda x: x[1])


def _masked(hint: str | None) -> str:
    # The store keeps the key's last characters at most (`key_hint`): none for a short key,
    # and none shown to who may not manage the source (engine.authz).
    return "•" * 8 + (hint or "••••")


@view()
async def source_list(request: Request, who: Principal) -> Response:
    sources = await call(request, who, api.list_sources)
    return render(request, who, "sources.html", sources=sources, masked=_masked)


async def _new_form(
    request: Request, who: Principal, values: dict[str, Any], status: int = 200, problem: Any = None
) -> Response:
    notes = setup_notes().get(values.get("type", ""))
    return render(
        request,
        who,
        "source_new.html",
        status,
        problem=problem,
        values=values,
        types=_types(),
        notes=notes,
        teams=team_choices(request, who),
    )


@view()
async def new_source(request: Request, who: Principal) -> Response:
    """The form; `?type=` shows that tool's setup notes (the picker's no-JS path)."""
    teams_ = team_choices(request, who)
    chosen = request.query_params.get("type", "")
    values = {
        "type": chosen if chosen in ADAPTERS else "",
        "team": request.query_params.get("team") or (teams_[0].key if len(teams_) == 1 else ""),
        "key": request.query_params.get("key", "")[:64],
        "name": request.query_params.get("name", "")[:200],
        "settings": "{}",
    }
    return await _new_form(request, who, values)


@view()
async def source_notes(request: Request, who: Principal) -> Response:
    """One tool's setup notes (htmx swaps them in when the type changes)."""
    notes = setup_notes().get(request.query_params.get("type", ""))
    return render(request, who, "source_notes.html", notes=notes)


@view()
async def create_source(request: Request, who: Principal) -> Response:
    """Create the source and show its webhook URL, once."""
    form = await form_of(request)
    values = {
        k: text(form, k)
        for k in ("type", "team", "key", "name", "signing_secret", "rate_limit", "settings")
    }
    try:
        try:
            settings = json.loads(values["settings"] or "{}")
        except ValueError as exc:
            raise Problem([{"field": "settings", "message": f"not JSON: {exc}"}]) from None
        if not isinstance(settings, dict):
            raise Problem([{"field": "settings", "message": "must be a JSON object"}])
        body = model(
            AlertSourceIn,
            {
                "key": values["key"],
                "name": values["name"],
                "type": values["type"],
                "team": values["team"] or None,
                "signing_secret": values["signing_secret"] or None,
                "rate_limit": values["rate_limit"] or None,
                "settings": settings,
            },
        )
        created = await call(request, who, api.create_source, body)
    except Problem as exc:
        return await _new_form(request, who, values, 422, exc)
    notes = setup_notes().get(created.type)
    return render(
        request,
        who,
        "source_secret.html",
        201,
        source=created,
        webhook_url=created.webhook_url,
        notes=notes,
        new=True,
    )


def _source(request: Request, who: Principal, out: Any) -> sources_mod.Source:
    with request.app.state.store.read() as conn:
        found = sources_mod.find_by_key(conn, out.key, visible_team_ids(request, who), out.team)
    if len(found) != 1:
        raise NotFoundError(f"no alert source {out.id}")
    return found[0]


def _events(request: Request, source: sources_mod.Source) -> list[dict[str, Any]]:
    store = request.app.state.store
    with store.read() as conn:
        rows = events_mod.recent(conn, source.id, RECENT, None)
    rules = unmatched.for_runtime(request.app.state.runtime)
    why = unmatched.why_unmatched(store, rules, source.key, source.type, rows)
    return [event_json(r, why.get(r.id)) for r in rows]


@view()
async def show_source(request: Request, who: Principal) -> Response:
    out = await call(request, who, api.get_source, id=request.path_params["id"])
    source = await run_in_threadpool(_source, request, who, out)
    events = await asyncio.to_thread(_events, request, source)
    notes = setup_notes().get(out.type)
    return render(
        request, who, "source.html", source=out, events=events, notes=notes, masked=_masked
    )


@view()
async def rotate(request: Request, who: Principal) -> Response:
    """A new integration key, shown once; the old one works for the grace period."""
    source_id = request.path_params["id"]
    form = await form_of(request)
    out = await call(request, who, api.get_source, id=source_id)
    source = await run_in_threadpool(_source, request, who, out)
    grace = 0 if form.get("now") else int(sources_mod.DEFAULT_GRACE.total_seconds())

    def write() -> sources_mod.Rotation:
        with request.app.state.store.begin() as conn:
            return sources_mod.rotate_key(
                conn,
                source.id,
                timedelta(seconds=grace),
                replace_previous=True,
                actor=who.actor,
            )

    rotation = await asyncio.to_thread(write)
    intake.forget_sources(request.app.state.runtime)
    fresh = await call(request, who, api.get_source, id=source_id)
    base = str(request.app.state.settings.base_url).rstrip("/")
    return render(
        request,
        who,
        "source_secret.html",
        source=fresh,
        webhook_url=f"{base}/api/v1/events/{rotation.integration_key}",
        notes=None,
        new=False,
        expires=rotation.previous_key_expires_at,
    )


@view()
async def send_test(request: Request, who: Principal) -> Response:
    """Store a test event (shown among the recent events, never evaluated)."""
    source_id = request.path_params["id"]
    await form_of(request)
    out = await call(request, who, api.get_source, id=source_id)
    source = await run_in_threadpool(_source, request, who, out)
    event = synthetic_test_event(source)
    submission = events_mod.Submission(source, [event], event.received_at, touch=False)
    await asyncio.to_thread(events_mod.store_one, request.app.state.store, submission)
    return redirect(request, f"/admin/sources/{source_id}", "Test event sent: see it below.")


routes: list[BaseRoute] = [
    Route("/admin/sources", source_list, methods=["GET", "HEAD"]),
    Route("/admin/sources/new", new_source, methods=["GET", "HEAD"]),
    Route("/admin/sources/new", create_source, methods=["POST"]),
    Route("/admin/sources/notes", source_notes, methods=["GET", "HEAD"]),
    Route("/admin/sources/{id:int}", show_source, methods=["GET", "HEAD"]),
    Route("/admin/sources/{id:int}/rotate", rotate, methods=["POST"]),
    Route("/admin/sources/{id:int}/test", send_test, methods=["POST"]),
]
