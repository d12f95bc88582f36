"""From a validated config file to the state it asks for, checking every reference.

The result compares field by field with what the store holds (`config.current`):
objects are identified by `(team key, object key)` (pages by slug, teams by key), and
references are kept as keys, so a dry run can plan without creating anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.engine import Connection

from adapters.alert_sources import ADAPTERS, source_problems
from engine import assets as asset_files
from engine import rulesets, templates, vault
from engine.tables import (
    alert_sources,
    status_pages,
    teams,
    users,
)
from rules.errors import did_you_mean
from rules.validate import Known, known_keys

from .models import (
    ChannelSecret,
    ChannelUrl,
    ConfigFile,
    EnvRef,
    IntegrationKey,
    SigningSecret,
    declared_kinds,
)
from .rules import find_rule_files
from .yamlsrc import Locations

Ident = Any  # str for teams and pages, (team key, key) for the rest

#: A desired value meaning "whatever the store has": an alert source's generated key.
KEEP = object()


@dataclass
class Desired:
    kinds: set[str]
    teams_declared: set[str]
    objects: dict[str, dict[Ident, dict[str, Any]]] = field(default_factory=dict)
    assets: dict[str, asset_files.Asset] = field(default_factory=dict)
    rule_files: dict[str, str] | None = None
    known: Known = field(default_factory=lambda: Known({}))
    warnings: list[str] = field(default_factory=list)
    #: Where a service without `position` goes when it is created: its place in the file.
    file_positions: dict[tuple[str, str], int] = field(default_factory=dict)
    #: The integration keys the file declares, by source (to print the sources' URLs).
    integration_keys: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass
class _Store:
    """What the store holds that references may point at, by team."""

    team_keys: set[str]
    keys: dict[str, dict[str, set[str]]]  # kind -> team -> keys
    owners: dict[str, dict[str, set[str]]]  # kind -> key -> teams
    page_teams: dict[str, str]  # slug -> owning team key
    domains: dict[str, str]  # custom domain -> slug
    # digest of a current or previous key -> (team, source key); see `key_owner`
    integration_keys: dict[str, tuple[str, str]]
    activated: dict[str, str]  # slug -> type, for pages activated once
    source_types: dict[tuple[str, str], str]  # (team, key) -> adapter type
    users: set[str] | None  # emails; None: no store to ask (a check of the file alone)
    #: A key's digests under every secret key (engine.vault); none without a store.
    key_digests: Callable[[str], list[str]] = lambda _key: []
    current_digests: set[str] = field(default_factory=set)

    def key_owner(self, key: str) -> tuple[tuple[str, str], bool] | None:
        """(team, source key) of the source holding `key`, and whether it is its current
        key (not a previous one still in its grace period)."""
        for digest in self.key_digests(key):
            if digest in self.integration_keys:
                return self.integration_keys[digest], digest in self.current_digests
        return None


def _nothing_stored() -> _Store:
    return _Store(set(), {}, {}, {}, {}, {}, {}, {}, users=None)


def _read_store(conn: Connection) -> _Store:
    team_key = dict(conn.execute(sa.select(teams.c.id, teams.c.key)).all())
    named = rulesets.stored_keys(conn)
    keys = {kind: {team: set(k) for team, k in by.items()} for kind, by in named.keys.items()}
    owners: dict[str, dict[str, set[str]]] = {kind: {} for kind in keys}
    for kind, by_team in keys.items():
        for team, found in by_team.items():
            for key in found:
                owners[kind].setdefault(key, set()).add(team)
    pages = conn.execute(
        sa.select(
            status_pages.c.slug,
            status_pages.c.team_id,
            status_pages.c.custom_domain,
            status_pages.c.type,
            status_pages.c.activated_at,
        )
    ).all()
    sources = conn.execute(
        sa.select(
            alert_sources.c.team_id,
            alert_sources.c.key,
            alert_sources.c.key_digest,
            alert_sources.c.previous_key_digest,
            alert_sources.c.type,
        )
    ).all()
    held_keys = {s.key_digest: (team_key[s.team_id], s.key) for s in sources}
    held_keys.update(
        {
            s.previous_key_digest: (team_key[s.team_id], s.key)
            for s in sources
            if s.previous_key_digest
        }
    )
    return _Store(
        team_keys=set(team_key.values()),
        keys=keys,
        owners=owners,
        page_teams={p.slug: team_key[p.team_id] for p in pages},
        domains={p.custom_domain: p.slug for p in pages if p.custom_domain},
        integration_keys=held_keys,
        activated={p.slug: p.type for p in pages if p.activated_at is not None},
        source_types=dict(named.source_types),
        users=set(conn.execute(sa.select(users.c.email)).scalars()),
        key_digests=vault.of(conn).digests,
        current_digests={s.key_digest for s in sources},
    )


class _Checker:
    def __init__(
        self,
        config: ConfigFile,
        loc: Locations,
        held: _Store,
        prune: bool,
        broken: Mapping[str, set[tuple[str, str]]],
        env: Mapping[str, str] | None,
    ) -> None:
        self.config = config
        self.env = env
        self.warnings: list[str] = []
        self.loc = loc
        self.held = held
        #: Why a custom domain can never be a page's (Beacon's own hosts: the admin API's
        #: check, `engine.domains.refusal_for`); None when the caller has no settings.
        self.refuse_domain: Callable[[str], str | None] | None = None
        self.prune = prune
        self.broken = broken
        self.errors: list[str] = []
        self.kinds = declared_kinds(config)
        # Objects the models refused (reported there) still declare their team.
        self.teams_declared = {team for keys in broken.values() for team, _ in keys if team}
        self.teams_declared |= {t.key for t in config.teams or []} | {
            obj.team
            for name in ("services", "alert_sources", "channels", "incident_templates")
            for obj in getattr(config, name) or []
        }
        self.teams_declared |= {w.team for w in config.maintenance_windows or []}
        self.teams_declared |= {p.team for p in config.status_pages or []}

    def error(self, path: Iterable[str | int], message: str) -> None:
        self.errors.append(f"{self.loc.at(tuple(path))}: {message}")

    def known(self, kind: str, team: str) -> set[str]:
        """Keys of `kind` a reference in `team` may name: the file's, plus the store's unless
        this apply prunes them."""
        in_file = {o.key for o in getattr(self.config, kind) or [] if o.team == team}
        in_file |= {key for owner, key in self.broken.get(kind, ()) if owner == team}
        if self.prune and kind in self.kinds and team in self.teams_declared:
            return in_file
        return in_file | self.held.keys.get(kind, {}).get(team, set())

    def team(self, path: tuple[str | int, ...], key: str) -> None:
        declared = {t.key for t in self.config.teams or []}
        declared |= {k for k, _ in self.broken.get("teams", ())}
        if key not in declared and key not in self.held.team_keys:
            hint = did_you_mean(key, declared | self.held.team_keys)
            self.error(path, f"unknown team {key!r}{hint}")

    def reference(self, path: tuple[str | int, ...], kind: str, team: str, key: str) -> bool:
        if key in self.known(kind, team):
            return True
        noun = kind.rstrip("s").replace("_", " ")
        elsewhere = sorted(
            {o.team for o in getattr(self.config, kind) or [] if o.key == key}
            | self.held.owners.get(kind, {}).get(key, set())
        )
        if elsewhere:
            self.error(
                path,
                f"{noun} {key!r} is not in team {team!r} (it belongs to team "
                f"{', '.join(elsewhere)}); references cannot cross teams",
            )
        else:
            hint = did_you_mean(key, self.known(kind, team))
            self.error(path, f"unknown {noun} {key!r} in team {team!r}{hint}")
        return False

    def secret(
        self,
        path: tuple[str | int, ...],
        value: Any,
        text: Any,
        *,
        what: str,
        stored: bool,
        generated: bool = False,
    ) -> Any:
        """A secret field's value: its text, or for `{env: NAME}` the variable's value. An
        unset variable keeps the secret the store holds for the object (`KEEP`, with a
        warning: `beacon export` writes every secret so, and its file must apply back
        unchanged); for an object the store does not hold yet it is an error, unless the
        secret is `generated` (an integration key) when left out. Without an
        environment (a check of the file alone) it is left to `apply`."""
        if not isinstance(value, EnvRef):
            return value
        if self.env is None:
            return KEEP
        found = self.env.get(value.env)
        if found:
            try:
                return TypeAdapter(text).validate_python(found)
            except ValidationError as exc:  # the message, never the value: it is a secret
                self.error(path, f"environment variable {value.env}: {exc.errors()[0]['msg']}")
                return KEEP
        if stored:
            self.warnings.append(
                f"{what}: environment variable {value.env} is not set; the stored "
                f"{path[-1]} is kept"
            )
            return KEEP
        if generated:
            self.warnings.append(
                f"{what}: environment variable {value.env} is not set; a new {path[-1]} is "
                "generated"
            )
            return KEEP
        self.error(path, f"environment variable {value.env} is not set")
        return KEEP

    def unique(self, kind: str, ident: Any, seen: dict[Any, int], index: int) -> None:
        if ident in seen:
            shown = ident if isinstance(ident, str) else "/".join(ident)
            self.error(
                (kind, index),
                f"duplicate {kind.rstrip('s').replace('_', ' ')} {shown!r} "
                f"(also at {self.loc.at((kind, seen[ident]))})",
            )
        seen.setdefault(ident, index)


def build(
    conn: Connection | None,
    config: ConfigFile,
    loc: Locations,
    base: Path,
    *,
    prune: bool,
    broken: Mapping[str, set[tuple[str, str]]] | None = None,
    env: Mapping[str, str] | None = None,
    refuse_domain: Callable[[str], str | None] | None = None,
) -> tuple[Desired, list[str]]:
    """The desired state of `config` and every problem found (empty when it can be applied).

    Without `conn` the file is checked alone, as if the store were empty (`beacon rules
    check --config`): what only the store can say (a member's user exists, a slug or an
    integration key is another's) is left to `apply`. `env` is what `{env: NAME}` secrets
    are read from."""
    held = _read_store(conn) if conn is not None else _nothing_stored()
    check = _Checker(config, loc, held, prune, broken or {}, env)
    check.refuse_domain = refuse_domain
    want = Desired(kinds=check.kinds, teams_declared=check.teams_declared)
    for kind, build_kind in KIND_BUILDERS:
        want.objects[kind] = {}
        build_kind(check, want, base)
    want.known = _known(check, check.config, check.held)
    if config.rules is not None:
        _rules(check, want, base)
    want.warnings.extend(check.warnings)
    return want, check.errors


def _teams(check: _Checker, want: Desired, base: Path) -> None:
    seen: dict[Any, int] = {}
    for i, team in enumerate(check.config.teams or []):
        check.unique("teams", team.key, seen, i)
        fields: dict[str, Any] = {"name": team.name, "private": team.private}
        if team.members is not None:
            emails = [m.strip().lower() for m in team.members]
            for j, email in enumerate(emails):
                if check.held.users is not None and email not in check.held.users:
                    check.error(
                        ("teams", i, "members", j),
                        f"no user {email!r} (create it with `beacon user create`)",
                    )
            fields["members"] = sorted(set(emails))
        want.objects["teams"][team.key] = fields


def _services(check: _Checker, want: Desired, base: Path) -> None:
    seen: dict[Any, int] = {}
    for i, svc in enumerate(check.config.services or []):
        check.team(("services", i, "team"), svc.team)
        check.unique("services", (svc.team, svc.key), seen, i)
        want.file_positions[(svc.team, svc.key)] = i
        want.objects["services"][(svc.team, svc.key)] = {
            "name": svc.name,
            "description": svc.description,
            "group": svc.group,
            # Without an explicit position, a new service goes where the file lists it and an
            # existing one keeps its place: inserting one service must not report every
            # later one as moved.
            "position": svc.position if svc.position is not None else KEEP,
        }


def _channels(check: _Checker, want: Desired, base: Path) -> None:
    seen: dict[Any, int] = {}
    for i, chan in enumerate(check.config.channels or []):
        check.team(("channels", i, "team"), chan.team)
        check.unique("channels", (chan.team, chan.key), seen, i)
        _check_channel_type(check, i, chan.type)
        ident = (chan.team, chan.key)
        config = chan.config()
        stored = chan.key in check.held.keys.get("channels", {}).get(chan.team, set())
        for name, text in (("url", ChannelUrl), ("secret", ChannelSecret)):
            if name in config:
                # KEEP here is the stored value, which `config.apply` puts in (`kept`).
                config[name] = check.secret(
                    ("channels", i, name),
                    config[name],
                    text,
                    what=f"channel {chan.team}/{chan.key}",
                    stored=stored,
                )
        want.objects["channels"][ident] = {
            "type": chan.type,
            "config": config,
            "enabled": chan.enabled,
        }


def _sources(check: _Checker, want: Desired, base: Path) -> None:
    seen: dict[Any, int] = {}
    file_keys: dict[str, int] = {}
    held_types = check.held.source_types
    for i, src in enumerate(check.config.alert_sources or []):
        check.team(("alert_sources", i, "team"), src.team)
        check.unique("alert_sources", (src.team, src.key), seen, i)
        _check_source(check, i, src.type, src.settings)
        what, stored = f"alert source {src.team}/{src.key}", (src.team, src.key) in held_types
        # Left out, or `{env: NAME}` unset, an integration key is generated on the first
        # apply and kept afterwards.
        integration_key = (
            check.secret(
                ("alert_sources", i, "integration_key"),
                src.integration_key,
                IntegrationKey,
                what=what,
                stored=stored,
                generated=True,
            )
            if src.integration_key
            else KEEP
        )
        signing_secret = check.secret(
            ("alert_sources", i, "signing_secret"),
            src.signing_secret,
            SigningSecret,
            what=what,
            stored=stored,
        )
        key = integration_key
        if isinstance(integration_key, str):
            held = check.held.key_owner(integration_key)
            if integration_key in file_keys:
                check.error(("alert_sources", i, "integration_key"), "integration key used twice")
            elif held is not None and held[0] != (src.team, src.key):
                check.error(
                    ("alert_sources", i, "integration_key"),
                    "integration key already belongs to another alert source",
                )
            elif held is not None and held[1]:
                key = KEEP  # the source's current key: nothing to change
            file_keys[integration_key] = i
            want.integration_keys[(src.team, src.key)] = integration_key
        want.objects["alert_sources"][(src.team, src.key)] = {
            "name": src.name,
            "type": src.type,
            "integration_key": key,
            "signing_secret": signing_secret,
            "settings": dict(src.settings),
            "rate_limit": src.rate_limit,
            "enabled": src.enabled,
        }


def _templates(check: _Checker, want: Desired, base: Path) -> None:
    seen: dict[Any, int] = {}
    for i, tpl in enumerate(check.config.incident_templates or []):
        check.team(("incident_templates", i, "team"), tpl.team)
        check.unique("incident_templates", (tpl.team, tpl.key), seen, i)
        for key in tpl.services:
            check.reference(("incident_templates", i, "services", key), "services", tpl.team, key)
        for name in ("title", "message", "resolve_message"):
            problem = templates.syntax_problem(getattr(tpl, name))
            if problem:
                check.error(("incident_templates", i, name), f"template syntax: {problem}")
        want.objects["incident_templates"][(tpl.team, tpl.key)] = {
            "title": tpl.title,
            "message": tpl.message,
            "resolve_message": tpl.resolve_message,
            "status": str(tpl.status),
            "services": {k: str(v) for k, v in tpl.services.items()},
        }


def _windows(check: _Checker, want: Desired, base: Path) -> None:
    seen: dict[Any, int] = {}
    for i, win in enumerate(check.config.maintenance_windows or []):
        check.team(("maintenance_windows", i, "team"), win.team)
        check.unique("maintenance_windows", (win.team, win.key), seen, i)
        for j, key in enumerate(win.services):
            check.reference(("maintenance_windows", i, "services", j), "services", win.team, key)
        want.objects["maintenance_windows"][(win.team, win.key)] = {
            "title": win.display_title,
            "message": win.message,
            "start": win.start,
            "end": win.end,
            "notify": win.notify,
            "on_end": str(win.on_end),
            "services": sorted(set(win.services)),
        }


def _pages(check: _Checker, want: Desired, base: Path) -> None:
    seen: dict[Any, int] = {}
    domains: dict[str, int] = {}
    held = check.held
    for i, page in enumerate(check.config.status_pages or []):
        check.unique("status_pages", page.slug, seen, i)
        for j, team_key in enumerate(page.teams):
            check.team(("status_pages", i, "teams", j), team_key)
        if len(set(page.teams)) != len(page.teams):
            check.error(("status_pages", i, "teams"), "a team is listed twice")
        page_owner = held.page_teams.get(page.slug)
        if page_owner and page_owner not in page.teams and page_owner not in check.teams_declared:
            check.error(
                ("status_pages", i, "slug"), f"slug {page.slug!r} is taken by team {page_owner!r}"
            )
        was = held.activated.get(page.slug)
        if was is not None and was != page.type:
            check.error(
                ("status_pages", i, "type"),
                f"page {page.slug!r} was activated as {was}; its type is fixed once activated",
            )
        if page.custom_domain:
            other = held.domains.get(page.custom_domain)
            why = check.refuse_domain(page.custom_domain) if check.refuse_domain else None
            if why is not None:
                check.error(("status_pages", i, "custom_domain"), why)
            elif page.custom_domain in domains or (other is not None and other != page.slug):
                check.error(("status_pages", i, "custom_domain"), "custom domain already in use")
            domains[page.custom_domain] = i
        refs = [_page_service(check, i, j, page.teams, ref) for j, ref in enumerate(page.services)]
        resolved = [r for r in refs if r is not None]
        if len(set(resolved)) != len(resolved):
            check.error(("status_pages", i, "services"), "a service is listed twice")
        fields: dict[str, Any] = {
            "name": page.name,
            "type": str(page.type),
            "teams": list(page.teams),
            "services": resolved,
            "time_zone": page.time_zone,
            "custom_domain": page.custom_domain,
            "active": page.active,
            "hide_uptime": page.hide_uptime,
            "notify_component_changes": page.notify_component_changes,
        }
        for role in ("logo", "favicon"):
            fields[role] = _asset(check, want, base, i, role, getattr(page, role))
        want.objects["status_pages"][page.slug] = fields


def _asset(
    check: _Checker, want: Desired, base: Path, i: int, role: str, name: str | None
) -> str | None:
    """The checked file's SHA-256 (kept in `want.assets`), or None."""
    if name is None:
        return None
    try:
        asset = asset_files.check(_inside(base, name), role=role)
    except ValueError as exc:
        check.error(("status_pages", i, role), str(exc))
        return None
    want.assets[asset.sha256] = asset
    return asset.sha256


def _rules(check: _Checker, want: Desired, base: Path) -> None:
    paths, problems, warnings = find_rule_files(base, check.config.rules or [])
    want.warnings.extend(warnings)
    for problem in problems:
        check.error(("rules",), problem)
    if not check.teams_declared:
        check.error(
            ("rules",),
            "rules belong to the teams of the file that declares them, and this file declares "
            "none: add `teams:` or objects with `team:`",
        )
    files: dict[str, str] = {}
    for path in paths:
        try:
            files[path.relative_to(base).as_posix()] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            check.error(("rules",), f"cannot read rule file {str(path)!r}: {exc}")
    want.rule_files = files


KIND_BUILDERS: list[tuple[str, Callable[[_Checker, Desired, Path], None]]] = [
    ("teams", _teams),
    ("services", _services),
    ("channels", _channels),
    ("alert_sources", _sources),
    ("incident_templates", _templates),
    ("maintenance_windows", _windows),
    ("status_pages", _pages),
]


def _inside(base: Path, name: str) -> Path:
    path = Path(name)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{name!r} must be a path inside the config file's directory")
    return base / path


def _page_service(
    check: _Checker, i: int, j: int, page_teams: list[str], ref: str
) -> tuple[str, str] | None:
    path = ("status_pages", i, "services", j)
    if "/" in ref:
        team, key = ref.split("/", 1)
        if team not in page_teams:
            check.error(path, f"team {team!r} does not manage this page")
            return None
        return (team, key) if check.reference(path, "services", team, key) else None
    found = [team for team in page_teams if ref in check.known("services", team)]
    if len(found) > 1:
        check.error(path, f"service {ref!r} is in teams {', '.join(found)}: write team/key")
        return None
    if not found:
        check.reference(path, "services", page_teams[0], ref)
        return None
    return (found[0], ref)


def _known(check: _Checker, config: ConfigFile, held: _Store) -> Known:
    # The file's rules hear only the sources of the teams it declares (`plan_rule_set`).
    types = dict(held.source_types)
    types.update({(s.team, s.key): s.type for s in config.alert_sources or []})
    return known_keys(check.teams_declared, lambda kind, team: check.known(kind, team), types)


def known_in_store(conn: Connection) -> Known:
    """Every team's keys as the store holds them (`beacon rules check` without --config)."""
    held = rulesets.stored_keys(conn)
    return known_keys(held.teams, held.of, held.source_types)


def _check_source(check: _Checker, i: int, source_type: str, settings: dict[str, Any]) -> None:
    if source_type not in ADAPTERS:
        known = ", ".join(sorted(ADAPTERS))
        hint = did_you_mean(source_type, ADAPTERS)
        check.error(
            ("alert_sources", i, "type"),
            f"unknown alert source type {source_type!r}{hint} (known: {known})",
        )
        return
    for path, message in source_problems(source_type, settings):
        check.error(("alert_sources", i, *path), message)


def _check_channel_type(check: _Checker, i: int, channel_type: str) -> None:
    import adapters.channels as channel_pkg

    registry = getattr(channel_pkg, "CHANNELS", None)
    if isinstance(registry, dict) and registry and channel_type not in registry:
        known = ", ".join(sorted(registry))
        hint = did_you_mean(channel_type, registry)
        check.error(
            ("channels", i, "type"),
            f"unknown channel type {channel_type!r}{hint} (known: {known})",
        )
