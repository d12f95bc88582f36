"""`beacon apply`: make the store hold what a config file declares, in one transaction.

Planning compares the desired state (`desired.build`) with the store's (`current.read`)
field by field, so a second apply of the same file changes nothing. `--prune` deletes
objects of the kinds the file declares, within the teams the file declares; teams
themselves are never pruned (deleting one would take every object of the team with it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import rulesets
from engine.db import Store
from engine.errors import ConfigError, ConflictError, NotFoundError, ValidationError
from rules.validate import digest

from . import current
from .check import check_config, rule_prefix
from .desired import KEEP, Desired
from .plan import Change, Plan
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
    dry_run: bool = False,
    base_url: str = "",
    actor: str | None = None,
) -> Plan:
    """Apply the config file at `path` and return what changed (with `dry_run`, what would).

    On any error nothing is written, and `ConfigError` lists every problem as
    `file:line:column: message`.
    """
    path = Path(path)
    actor = actor or f"apply:{path.name}"
    plan = Plan(file=str(path), dry_run=dry_run, base_url=base_url.rstrip("/"))
    with store.read() if dry_run else store.begin() as conn:
        want = check_config(path, conn, prune=prune).want
        rule_set = None
        if want.rule_files is not None:
            rule_set, problems = plan_rule_set(conn, want.teams_declared, want.rule_files)
            if problems:
                raise ConfigError("\n".join(rule_prefix(path) + p for p in problems))
        now = current.read(conn)
        changes = _diff(want, now, prune=prune)
        plan.changes = [*changes, *_rule_set_changes(rule_set)]
        generated: dict[tuple[str, str], str] = {}
        if not dry_run:
            try:
                generated = _execute(conn, want, now, changes, actor)
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


def _diff(want: Desired, now: current.Current, *, prune: bool) -> list[Change]:
    changes: list[Change] = []
    if prune:
        for kind in reversed(ORDER[1:]):
            if kind not in want.kinds:
                continue
            for ident, fields in now.objects[kind].items():
                if ident not in want.objects[kind] and (
                    _team_of(kind, ident, fields) in want.teams_declared
                ):
                    changes.append(Change("delete", NOUN[kind], _display(ident)))
    for kind in ORDER:
        for ident, fields in want.objects[kind].items():
            old = now.objects[kind].get(ident)
            if old is None:
                changes.append(Change("create", NOUN[kind], _display(ident)))
                continue
            diff = {
                name: (_display(old.get(name)), _display(value))
                for name, value in fields.items()
                if value is not KEEP and old.get(name) != value
            }
            if diff:
                changes.append(Change("update", NOUN[kind], _display(ident), diff))
    return changes


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
