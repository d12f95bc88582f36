"""`beacon apply`: make the store hold what a config file declares, in one transaction.

Planning compares the desired state (`desired.build`) with the store's (`current.read`)
field by field, so a second apply of the same file changes nothing. Each object the file
declares is marked with the file (`engine.origins`) and what it set, so that an edit made
in the UI or API since shows as drift, field by field, with who made it. `--prune` deletes
objects of the kinds the file declares, within the teams the file declares, that a config
file made; what the UI, the API or the CLI made stays unless `--prune-all` says otherwise,
and the plan lists it. Teams themselves are never pruned (deleting one would take every
object of the team with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import domains, origins, rulesets
from engine.db import Store
from engine.errors import ConfigError, ConflictError, NotFoundError, ValidationError
from engine.runtime import Runtime
from engine.statuspages import ACCESS_FIELDS, normal_domain
from engine.tables import audit_log
from rules.validate import digest

from . import current
from .check import check_config, rule_prefix
from .desired import KEEP, Desired
from .plan import SECRET_FIELDS, Change, Drift, Left, Plan
from .rules import RuleSetPlan, plan_rule_set
from .writers import WRITERS, Context, delete

ORDER = [
    "teams",
    "services",
    "channels",
    "alert_sources",
    "incident_templates",
    "maintenance_windows",
    "status_pages",
]
NOUN = {
    "teams": "team",
    "services": "service",
    "channels": "channel",
    "alert_sources": "alert source",
    "incident_templates": "incident template",
    "maintenance_windows": "maintenance window",
    "status_pages": "status page",
}


def apply_file(
    store: Store,
    path: Path | str,
    *,
    prune: bool = False,
    prune_all: bool = False,
    dry_run: bool = False,
    base_url: str = "",
    actor: str | None = None,
    env: Mapping[str, str] | None = None,
    pages_domain: str = "",
) -> Plan:
    """Apply the config file at `path` and return what changed (with `dry_run`, what would).

    `prune_all` prunes what the UI, the API or the CLI made as well; `env` is where
    `{env: NAME}` secrets are read (none given: as if every one were unset). A custom domain
    that is Beacon's own host (its base URL's, the pages domain or under it, loopback, an IP
    address) is refused, as the admin API refuses it. On any error nothing is written, and
    `ConfigError` lists every problem as `file:line:column: message`.
    """
    path = Path(path)
    actor = actor or f"apply:{path.name}"
    prune = prune or prune_all
    plan = Plan(file=str(path), dry_run=dry_run, base_url=base_url.rstrip("/"))

    def refuse(domain: str) -> str | None:
        return domains.refusal_for(normal_domain(domain), base_url, pages_domain)

    with store.read() if dry_run else store.begin() as conn:
        want = check_config(path, conn, prune=prune, env=env or {}, refuse_domain=refuse).want
        rule_set = None
        if want.rule_files is not None:
            rule_set, problems = plan_rule_set(conn, want.teams_declared, want.rule_files)
            if problems:
                raise ConfigError("\n".join(rule_prefix(path) + p for p in problems))
        now = current.read(conn)
        _kept_in_config(want, now)
        changes = _diff(want, now, prune=prune, prune_all=prune_all, plan=plan)
        plan.changes = [*changes, *_rule_set_changes(rule_set)]
        plan.drift = _drift(conn, want, now)
        generated: dict[tuple[str, str], str] = {}
        if not dry_run:
            plan.ended = _ended_pages(now, changes)
            try:
                generated = _execute(conn, want, now, changes, actor)
                _record(conn, want, now, str(path.resolve()))
                if rule_set is not None and rule_set.changed:
                    _store_rules(conn, rule_set, actor)
            except sa.exc.IntegrityError as exc:
                raise ConfigError(f"{path}: the store refused the change: {exc.orig}") from None
    plan.warnings = [f"{path}: {w}" for w in want.warnings]
    plan.pages = [(slug, f"/p/{slug}/") for slug in want.objects["status_pages"]]
    for ident in want.objects["alert_sources"]:
        # The store keeps only a digest of each key: a URL is printed when its key is the
        # file's or was generated now, never read back.
        key = generated.get(ident) or want.integration_keys.get(ident)
        if key:
            url = f"/api/v1/events/{key}"
        elif ident in now.objects["alert_sources"]:
            url = "(key unchanged: shown once, when made or rotated)"
        else:
            url = "(key generated on apply)"
        plan.sources.append(("/".join(ident), url))
    return plan


def _ended_pages(now: current.Current, changes: list[Change]) -> list[tuple[int, str]]:
    """The pages (id, slug) the changes delete or change the access of (read before the
    changes run: a deletion forgets the page's id)."""
    ended = []
    for change in changes:
        page_id = now.ids["status_pages"].get(change.key)
        if change.kind != NOUN["status_pages"] or page_id is None:
            continue  # not a page, or a new one: nothing of it is cached
        if change.action == "delete" or ACCESS_FIELDS & change.fields.keys():
            ended.append((page_id, change.key))
    return ended


def evict_ended(rt: Runtime, plan: Plan) -> None:
    """End every cached and exported copy of the pages the applied plan deactivated, made
    private, moved to other teams or domains, or deleted (`pages.render.evict`): the shared
    cache (scaled mode's Redis, which every web process reads), the static export directory
    and bucket. Called once the apply's transaction has committed, so a render that starts
    now reads the change. Embedded mode's cache lives in the `beacon serve` process, which
    another process cannot reach: it drops the page at the render the change scheduled."""
    from pages.render import evict

    for page_id, slug in plan.ended:
        evict(rt, page_id, slug)


def _display(value: Any) -> Any:
    if isinstance(value, tuple):
        return "/".join(value)
    if isinstance(value, list):
        return [_display(v) for v in value]
    return value


def _team_of(kind: str, ident: Any, fields: dict[str, Any]) -> str:
    if kind == "status_pages":
        return str(fields["teams"][0])
    return str(ident if kind == "teams" else ident[0])


def _rule_set_changes(rule_set: RuleSetPlan | None) -> list[Change]:
    if rule_set is None:
        return []
    found = list(rule_set.changes)
    if rule_set.changed:
        found.append(Change("create", "rule set", f"version {rule_set.version}"))
    return found


def _diff(
    want: Desired, now: current.Current, *, prune: bool, prune_all: bool, plan: Plan
) -> list[Change]:
    """The changes that make the store hold the file; what prune leaves and what the file
    adopts go to `plan`."""
    changes: list[Change] = []
    if prune:
        for kind in reversed(ORDER[1:]):
            if kind not in want.kinds:
                continue
            for ident, fields in now.objects[kind].items():
                if ident in want.objects[kind] or (
                    _team_of(kind, ident, fields) not in want.teams_declared
                ):
                    continue
                origin = now.origins[kind][ident].origin
                if prune_all or origins.from_config(origin):
                    changes.append(Change("delete", NOUN[kind], _display(ident)))
                else:
                    plan.kept.append(Left(NOUN[kind], _display(ident), origin or "unknown"))
    for kind in ORDER:
        for ident, fields in want.objects[kind].items():
            old = now.objects[kind].get(ident)
            if old is None:
                changes.append(Change("create", NOUN[kind], _display(ident)))
                continue
            origin = now.origins[kind][ident].origin
            if not origins.from_config(origin):
                plan.adopted.append(Left(NOUN[kind], _display(ident), origin or "unknown"))
            diff = {
                name: (_display(old.get(name)), _display(value))
                for name, value in fields.items()
                if value is not KEEP and old.get(name) != value
            }
            if diff:
                changes.append(Change("update", NOUN[kind], _display(ident), diff))
    return changes


def _kept_in_config(want: Desired, now: current.Current) -> None:
    """A channel secret the file leaves to the store (`{env: NAME}` unset: `KEEP` in its
    config) is the stored one: the config is compared and written whole."""
    for ident, fields in want.objects["channels"].items():
        config, stored = fields["config"], now.objects["channels"].get(ident, {}).get("config", {})
        for name in [n for n, v in config.items() if v is KEEP]:
            if stored.get(name) is None:
                del config[name]
            else:
                config[name] = stored[name]


def applied(fields: Mapping[str, Any]) -> dict[str, Any]:
    """What a file sets of an object, as its origin keeps it (`engine.origins`): plain JSON,
    secrets and fields it leaves to the store (`KEEP`) left out."""
    return {
        name: _plain(value)
        for name, value in fields.items()
        if value is not KEEP and name not in SECRET_FIELDS
    }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, tuple):
        return "/".join(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _drift(conn: Connection, want: Desired, now: current.Current) -> list[Drift]:
    """The fields of the file's objects that the store no longer holds as a config file
    last set them (and that the file does not ask for as they are now), with who changed
    them (from the audit log)."""
    found: list[Drift] = []
    for kind in ORDER:
        for ident in want.objects[kind]:
            was = now.origins[kind].get(ident)
            if was is None or not was.applied or not origins.from_config(was.origin):
                continue
            held, asked = applied(now.objects[kind][ident]), applied(want.objects[kind][ident])
            # Changed since the file set it, and not to what the file asks for now.
            fields = [
                n
                for n, v in was.applied.items()
                if n in held and held[n] != v and asked.get(n, held[n]) != held[n]
            ]
            if not fields:
                continue
            key = _display(ident)
            by = _changed_by(conn, NOUN[kind], ident, now.team_ids)
            found.extend(
                Drift(NOUN[kind], key, name, was.applied[name], held[name], by) for name in fields
            )
    return found


def _changed_by(conn: Connection, noun: str, ident: Any, team_ids: Mapping[str, int]) -> str:
    """Who last changed the object other than `beacon apply`, in words."""
    # Audit rows name a team by its key and its own id, a page by its slug alone.
    team, key = ident if isinstance(ident, tuple) else (ident if noun == "team" else None, ident)
    query = (
        sa.select(audit_log.c.actor, audit_log.c.at)
        .where(audit_log.c.object_kind == noun, audit_log.c.object_key == key)
        .order_by(audit_log.c.id.desc())
        .limit(50)
    )
    if team is not None and team in team_ids:
        query = query.where(audit_log.c.team_id == team_ids[team])
    for actor, at in conn.execute(query):
        if actor.startswith("apply"):
            continue
        when = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        origin, _, who = actor.partition(":")
        where = {"user": "in the UI", "api-key": "over the API"}.get(origin)
        return f"{where} by {who}, {when}" if where else f"by {actor}, {when}"
    return "outside the file"


def _record(conn: Connection, want: Desired, now: current.Current, origin: str) -> None:
    """Mark every object the file declares as the file's, with what it set."""
    for kind in ORDER:
        for ident, fields in want.objects[kind].items():
            sets = applied(fields)
            if now.origins[kind].get(ident) != current.Origin(origin, sets):
                origins.record(conn, kind, now.ids[kind][ident], origin=origin, applied=sets)


def _execute(
    conn: Connection, want: Desired, now: current.Current, changes: list[Change], actor: str
) -> dict[tuple[str, str], str]:
    ctx = Context(conn, want, now, actor)
    kind_of = {noun: kind for kind, noun in NOUN.items()}
    for change in changes:
        kind = kind_of[change.kind]
        ident = _ident(kind, change.key)
        try:
            if change.action == "delete":
                delete(ctx, kind, ident)
            else:
                WRITERS[kind](ctx, ident, want.objects[kind][ident], change)
        except (ValidationError, ConflictError, NotFoundError) as exc:
            # What the checks of `desired` could not see (the engine has the last word).
            raise ConfigError(f"{change.kind} {change.key}: {exc}") from None
    return ctx.generated


def _ident(kind: str, key: str) -> Any:
    if kind in ("teams", "status_pages"):
        return key
    team, _, rest = key.partition("/")
    return (team, rest)


def _store_rules(conn: Connection, rule_set: RuleSetPlan, actor: str) -> None:
    """Store the new rule set version (every team's files, with their owners) and say so."""
    files, owners = rule_set.files, rule_set.owners
    rules: dict[str, list[str]] = {}
    for change in rule_set.changes:
        rules.setdefault(change.action, []).append(change.key)
    version = rulesets.publish(
        conn, files, digest(files, owners), actor=actor, owners=owners, rules=rules
    )
    assert version == rule_set.version  # planned in this transaction
