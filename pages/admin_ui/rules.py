"""Rules in the admin UI: the rule files in force, edited in the browser with each problem
shown at its file, line and column; a dry run of the edited rules against the last stored
events ("these 3 events would have set api to major_outage"); Save publishes them as the
next rule set version (`engine.rulesets.publish`).

Rule files are installation-wide (a rule acts within the team of the source that sent the
event, and one file may serve many teams), so editing them is for admins; responders read
their teams' effects through services' `why` and sources' events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine import rulesets
from engine.activations import IntentKind, Machine, MemoryState
from engine.activations.lookups import Ids, StoreWorld, row_event
from engine.models import EventStatus
from engine.tables import (
    alert_events,
    alert_sources,
    channels,
    incident_templates,
    services,
    teams,
    utcnow,
)
from pages.auth import Principal
from rules.errors import RuleProblem, RulesError, RulesInvalid
from rules.runtime import RuleBook
from rules.validate import Known, TeamKeys, check, digest

from .web import form_of, redirect, render, text, view

#: How many of the latest stored events a dry run replays, by default and at most.
DRY_RUN_EVENTS = 100
MAX_DRY_RUN_EVENTS = 1000
MAX_FILE_BYTES = 256 * 1024


def known(conn: Any) -> Known:
    """Every team's keys as the store has them: what rules may name."""
    names = {r.id: r.key for r in conn.execute(sa.select(teams.c.id, teams.c.key))}

    def keys(table: sa.Table) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for row in conn.execute(sa.select(table.c.team_id, table.c.key)):
            found.setdefault(names[row.team_id], set()).add(row.key)
        return found

    svc, tpl, chan = keys(services), keys(incident_templates), keys(channels)
    src: dict[str, dict[str, str]] = {}
    query = sa.select(alert_sources.c.team_id, alert_sources.c.key, alert_sources.c.type)
    for row in conn.execute(query):
        src.setdefault(names[row.team_id], {})[row.key] = row.type
    return Known(
        {
            team: TeamKeys(
                frozenset(svc.get(team, set())),
                frozenset(tpl.get(team, set())),
                frozenset(chan.get(team, set())),
                src.get(team, {}),
            )
            for team in names.values()
        }
    )


def _in_force(request: Request) -> tuple[int, dict[str, str]]:
    with request.app.state.store.read() as conn:
        version = rulesets.version_in_force(conn)
        return version, rulesets.stored_files(conn, version) or {}


@dataclass
class DryRun:
    """What the edited rules would have done with the latest stored events."""

    events: int
    #: (event summary line, [effects in words]) for each event a rule acted on.
    acted: list[tuple[str, list[str]]] = field(default_factory=list)
    #: Totals, such as "set api to major_outage" -> 3.
    totals: dict[str, int] = field(default_factory=dict)


def _effect(kind: IntentKind, team: str, data: Mapping[str, Any]) -> str | None:
    if kind == IntentKind.CLAIM:
        return f"set {team}/{data.get('service')} to {data.get('status')}"
    if kind == IntentKind.OPEN_INCIDENT:
        return f"open incident {data.get('title')!r} (template {team}/{data.get('template')})"
    if kind == IntentKind.RESOLVE_INCIDENT:
        return "resolve its incident"
    if kind == IntentKind.NOTIFY:
        return f"notify channel {data.get('channel')}"
    if kind == IntentKind.RULE_ERROR:
        return f"fail: {data.get('message')}"
    return None


def dry_run(request: Request, book: RuleBook, count: int) -> DryRun:
    """Replay the latest `count` stored events (oldest first) through `book` in memory,
    against the store's services, templates and maintenance; nothing is written."""
    with request.app.state.store.read() as conn:
        rows = conn.execute(
            sa.select(alert_events, teams.c.key.label("team_key"))
            .join(alert_sources, alert_sources.c.id == alert_events.c.source_id)
            .join(teams, teams.c.id == alert_sources.c.team_id)
            .where(alert_events.c.test.is_(False))
            .order_by(alert_events.c.id.desc())
            .limit(count)
        ).all()
        ids = Ids(conn)
        policies = {rule_id: located.rule for rule_id, located in book.rules.items()}
        machine = Machine(MemoryState(), StoreWorld(ids), policies)
        result = DryRun(len(rows))
        for row in reversed(rows):
            key, source_type = ids.source_key(row.source_id)
            event = row_event(row, key, source_type)
            machine_intents = list(machine.on_time(event.received_at))
            matches = (
                [located.rule for located in book.match(event)]
                if event.status == EventStatus.FIRING
                else []
            )
            found, _outcome = machine.on_event(event, matches, team=row.team_key)
            effects = [
                e
                for i in [*machine_intents, *found]
                if (e := _effect(i.kind, i.team, i.fields())) is not None
            ]
            if effects:
                line = f"#{row.id} {event.status} {key}/{event.dedup_key}: {event.summary}"
                result.acted.append((line, effects))
                for effect in effects:
                    result.totals[effect] = result.totals.get(effect, 0) + 1
        # Time has passed since: a `for` still pending then has acted by now.
        late = [e for i in machine.on_time(utcnow()) if (e := _effect(i.kind, i.team, i.fields()))]
        if late:
            result.acted.append(("after the last event, as time passed", late))
            for effect in late:
                result.totals[effect] = result.totals.get(effect, 0) + 1
    return result


def _files_of(form: FormData, stored: Mapping[str, str]) -> dict[str, str]:
    """The edited texts of the files in force (only those: paths are not taken from the
    form), with Windows line ends made Unix ones."""
    files = {}
    for index, path in enumerate(sorted(stored)):
        value = form.get(f"text-{index}")
        files[path] = value.replace("\r\n", "\n") if isinstance(value, str) else stored[path]
    return files


def _by_file(problems: list[RuleProblem]) -> dict[str, list[RuleProblem]]:
    out: dict[str, list[RuleProblem]] = {}
    for problem in problems:
        out.setdefault(problem.file, []).append(problem)
    return out


@view(admin=True)
async def show_rules(request: Request, who: Principal) -> Response:
    version, files = await run_in_threadpool(_in_force, request)
    return render(
        request,
        who,
        "rules.html",
        version=version,
        files=files,
        problems={},
        dry=None,
        count=DRY_RUN_EVENTS,
    )


@view(admin=True)
async def post_rules(request: Request, who: Principal) -> Response:
    """Check (always), then dry-run or save, as the button pressed asks."""
    form = await form_of(request)
    version, stored = await run_in_threadpool(_in_force, request)
    files = _files_of(form, stored)
    count_text = text(form, "count")
    count = int(count_text) if count_text.isdigit() else DRY_RUN_EVENTS
    count = max(1, min(count, MAX_DRY_RUN_EVENTS))
    problems: list[RuleProblem] = []
    too_big = [p for p, t in files.items() if len(t.encode()) > MAX_FILE_BYTES]
    if too_big:
        problems = [RuleProblem(p, 1, 1, f"over {MAX_FILE_BYTES // 1024} KB") for p in too_big]
    spec = None
    if not problems:
        with request.app.state.store.read() as conn:
            world = known(conn)
        try:
            spec = check(files, world)
        except RulesInvalid as exc:
            problems = exc.problems

    def page(status: int, **extra: Any) -> Response:
        return render(
            request,
            who,
            "rules.html",
            status,
            version=version,
            files=files,
            problems=_by_file(problems),
            problem_count=len(problems),
            count=count,
            dry=extra.pop("dry", None),
            **extra,
        )

    if problems or spec is None:
        return page(422)
    if form.get("save"):
        if files == stored:
            return redirect(request, "/admin/rules", "No change: nothing to save.")

        def publish() -> int:
            with request.app.state.store.begin() as conn:
                # Edited files keep the teams they are for (`beacon apply` recorded them).
                owners = rulesets.in_force(conn).owners
                if owners is not None:
                    owners = {name: teams for name, teams in owners.items() if name in files}
                return rulesets.publish(
                    conn, files, digest(files, owners), actor=who.actor, owners=owners
                )

        saved = await run_in_threadpool(publish)
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is not None:
            runtime.nudge.set()
        return redirect(request, "/admin/rules", f"Saved as rule set version {saved}.")
    try:
        book = RuleBook(spec, 0)
    except RulesError as exc:
        return page(422, compile_error=str(exc))
    if form.get("dry_run"):
        dry = await run_in_threadpool(dry_run, request, book, count)
        return page(200, dry=dry, checked=True)
    return page(200, checked=True)


routes: list[BaseRoute] = [
    Route("/admin/rules", show_rules, methods=["GET", "HEAD"]),
    Route("/admin/rules", post_rules, methods=["POST"]),
]
