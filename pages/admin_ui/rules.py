"""Rules in the admin UI: the rule files in force, edited in the browser with each problem
shown at its file, line and column; a dry run of the edited rules against the last stored
events ("these 3 events would have set api to major_outage"); Save publishes them as the
next rule set version (`engine.rulesets.publish`).

A file's rules hear the sources of the teams `beacon apply` recorded for it (its owners).
A responder reads and edits the files that are their teams' alone; the others (shared by
several teams, or added here without owners, which hear every team) are for admins. The
dry run replays a responder's teams' events only.
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
    teams,
    utcnow,
)
from pages.auth import Principal
from rules.errors import RuleProblem, RulesError, RulesInvalid
from rules.runtime import RuleBook
from rules.validate import Known, check, digest, known_keys

from .web import form_of, redirect, render, team_choices, text, view

#: How many of the latest stored events a dry run replays, by default and at most.
DRY_RUN_EVENTS = 100
MAX_DRY_RUN_EVENTS = 1000
MAX_FILE_BYTES = 256 * 1024


def known(conn: Any) -> Known:
    """Every team's keys as the store has them: what rules may name."""
    held = rulesets.stored_keys(conn)
    return known_keys(held.teams, held.of, held.source_types)


def _in_force(request: Request) -> rulesets.StoredRules:
    with request.app.state.store.read() as conn:
        return rulesets.in_force(conn)


def editable(who: Principal, stored: rulesets.StoredRules, team_keys: set[str]) -> list[str]:
    """The files `who` may read and edit: every file for an admin; for a responder, the
    files whose rules hear only the responder's teams (`beacon apply` recorded each file's
    teams). A file without owners hears every team: an admin's."""
    if who.admin:
        return sorted(stored.files)
    owners = stored.owners or {}
    return sorted(
        name for name in stored.files if owners.get(name) and set(owners[name]) <= team_keys
    )


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


def dry_run(
    request: Request, book: RuleBook, count: int, team_keys: set[str] | None = None
) -> DryRun:
    """Replay the latest `count` stored events (oldest first; of the sources of
    `team_keys`, None: every team) through `book` in memory, against the store's services,
    templates and maintenance; nothing is written."""
    with request.app.state.store.read() as conn:
        query = (
            sa.select(alert_events, teams.c.key.label("team_key"))
            .join(alert_sources, alert_sources.c.id == alert_events.c.source_id)
            .join(teams, teams.c.id == alert_sources.c.team_id)
            .where(alert_events.c.test.is_(False))
            .order_by(alert_events.c.id.desc())
            .limit(count)
        )
        if team_keys is not None:
            query = query.where(teams.c.key.in_(sorted(team_keys)))
        rows = conn.execute(query).all()
        ids = Ids(conn)
        policies = {rule_id: located.rule for rule_id, located in book.rules.items()}
        machine = Machine(MemoryState(), StoreWorld(ids), policies)
        result = DryRun(len(rows))
        for row in reversed(rows):
            key, source_type = ids.source_key(row.source_id)
            event = row_event(row, key, source_type)
            machine_intents = list(machine.on_time(event.received_at))
            matches = (
                [located.rule for located in book.match(event, row.team_key)]
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


def _files_of(form: FormData, stored: Mapping[str, str], shown: list[str]) -> dict[str, str]:
    """Every file in force, with the edited texts of those the form showed (paths are never
    taken from the form), Windows line ends made Unix ones."""
    files = dict(stored)
    for index, path in enumerate(shown):
        value = form.get(f"text-{index}")
        if isinstance(value, str):
            files[path] = value.replace("\r\n", "\n")
    return files


def _by_file(problems: list[RuleProblem]) -> dict[str, list[RuleProblem]]:
    out: dict[str, list[RuleProblem]] = {}
    for problem in problems:
        out.setdefault(problem.file, []).append(problem)
    return out


def _team_keys(request: Request, who: Principal) -> set[str]:
    return {t.key for t in team_choices(request, who)}


@view()
async def show_rules(request: Request, who: Principal) -> Response:
    stored = await run_in_threadpool(_in_force, request)
    shown = editable(who, stored, _team_keys(request, who))
    return render(
        request,
        who,
        "rules.html",
        version=stored.version,
        files={name: stored.files[name] for name in shown},
        problems={},
        dry=None,
        count=DRY_RUN_EVENTS,
    )


@view()
async def post_rules(request: Request, who: Principal) -> Response:
    """Check (always), then dry-run or save, as the button pressed asks."""
    form = await form_of(request)
    stored = await run_in_threadpool(_in_force, request)
    team_keys = _team_keys(request, who)
    shown = editable(who, stored, team_keys)
    files = _files_of(form, stored.files, shown)
    count_text = text(form, "count")
    count = int(count_text) if count_text.isdigit() else DRY_RUN_EVENTS
    count = max(1, min(count, MAX_DRY_RUN_EVENTS))
    problems: list[RuleProblem] = []
    if text(form, "version") != str(stored.version):
        problems = [
            RuleProblem(
                name, 1, 1, "the rules in force changed since this page was loaded: reload it"
            )
            for name in shown[:1]
        ]
    too_big = [p for p in shown if len(files[p].encode()) > MAX_FILE_BYTES]
    problems += [RuleProblem(p, 1, 1, f"over {MAX_FILE_BYTES // 1024} KB") for p in too_big]
    spec = None
    if not problems:
        with request.app.state.store.read() as conn:
            world = known(conn)
        try:
            spec = check(files, world, stored.owners)
        except RulesInvalid as exc:
            problems = exc.problems
    # A responder hears only of their own files (another team's file is not theirs to see).
    elsewhere = [p for p in problems if p.file not in shown]
    problems = [p for p in problems if p.file in shown]

    def page(status: int, **extra: Any) -> Response:
        return render(
            request,
            who,
            "rules.html",
            status,
            version=stored.version,
            files={name: files[name] for name in shown},
            problems=_by_file(problems),
            problem_count=len(problems) + len(elsewhere),
            elsewhere=len(elsewhere),
            count=count,
            dry=extra.pop("dry", None),
            **extra,
        )

    if problems or elsewhere or spec is None:
        return page(422)
    if form.get("save"):
        if files == stored.files:
            return redirect(request, "/admin/rules", "No change: nothing to save.")

        def publish() -> int:
            with request.app.state.store.begin() as conn:
                if rulesets.version_in_force(conn) != stored.version:
                    return 0
                # Edited files keep the teams they are for (`beacon apply` recorded them).
                owners = stored.owners
                return rulesets.publish(
                    conn, files, digest(files, owners), actor=who.actor, owners=owners
                )

        saved = await run_in_threadpool(publish)
        if not saved:
            return redirect(
                request, "/admin/rules", "Not saved: the rules in force changed meanwhile."
            )
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is not None:
            runtime.nudge.set()
        return redirect(request, "/admin/rules", f"Saved as rule set version {saved}.")
    try:
        book = RuleBook(spec, 0)
    except RulesError as exc:
        return page(422, compile_error=str(exc))
    if form.get("dry_run"):
        teams_of = None if who.admin else team_keys
        dry = await run_in_threadpool(dry_run, request, book, count, teams_of)
        return page(200, dry=dry, checked=True)
    return page(200, checked=True)


routes: list[BaseRoute] = [
    Route("/admin/rules", show_rules, methods=["GET", "HEAD"]),
    Route("/admin/rules", post_rules, methods=["POST"]),
]
