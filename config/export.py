"""`beacon export`: the store's objects as a config file that `beacon apply` takes back
unchanged, objects made in the web UI and the API included.

The file is built from `config.current`, the very reading `apply` compares a file against,
so what it prints is what `apply` would find already there. Its order is stable (kinds in
the reference's order, objects by team and key, fields in the reference's order, defaults
left out), so two exports of the same state are the same text. Secrets are never printed:
each is `{env: NAME}`, which `apply` reads from its environment and, with NAME unset,
keeps the secret Beacon holds. Logos, favicons and rule files are returned as files to
write beside the config file, which names them by relative path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import yaml

from engine import rulesets
from engine.db import Store
from engine.errors import ConfigError
from engine.models import MaintenanceStatus
from engine.tables import assets, maintenance_windows

from . import current

HEADER = """\
# Beacon's objects as a config file (`beacon export`); `beacon apply` takes it back unchanged.
# Secrets are not printed: each is {env: NAME}. `beacon apply` reads NAME from its
# environment; left unset, the secret Beacon holds is kept (an object Beacon does not hold
# yet needs it set). Team members are accounts (`beacon user create`), not exported.
"""

#: An image's file name ending, by its stored content type.
_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/svg+xml": "svg",
    "image/x-icon": "ico",
}


@dataclass
class Exported:
    """The config file's text, and the files it names (path relative to it -> bytes)."""

    text: str
    files: dict[str, bytes] = field(default_factory=dict)
    #: What could not be exported as it is, for the person who asked.
    warnings: list[str] = field(default_factory=list)


def env_name(team: str, key: str, name: str) -> str:
    """The environment variable an exported secret is read from: `TEAM_KEY_FIELD`."""
    found = re.sub(r"[^A-Z0-9]+", "_", f"{team}_{key}_{name}".upper())
    return found if not found[0].isdigit() else f"_{found}"


def export_config(store: Store, *, teams: Iterable[str] | None = None) -> Exported:
    """The objects of `teams` (None: every team) as a config file."""
    with store.read() as conn:
        now = current.read(conn)
        wanted = set(teams) if teams else set(now.team_ids)
        if unknown := sorted(wanted - set(now.team_ids)):
            raise ConfigError(f"no team {', '.join(map(repr, unknown))}")
        out = Exported("")
        data: dict[str, Any] = {
            "teams": [_team(key, now.objects["teams"][key]) for key in sorted(wanted)]
        }
        # A completed window is history, not configuration: made again elsewhere it would
        # run (and notify) at once.
        history = {
            ("maintenance_windows", window_id)
            for window_id in conn.execute(
                sa.select(maintenance_windows.c.id).where(
                    maintenance_windows.c.status == MaintenanceStatus.COMPLETED
                )
            ).scalars()
        }
        for kind, build in _SCOPED.items():
            data[kind] = [
                build(team, key, fields)
                for (team, key), fields in sorted(now.objects[kind].items(), key=_order(kind))
                if team in wanted and (kind, now.ids[kind][(team, key)]) not in history
            ]
        pages = sorted(
            (slug, fields)
            for slug, fields in now.objects["status_pages"].items()
            if fields["teams"][0] in wanted
        )
        images = _images(conn, {f[role] for _, f in pages for role in ("logo", "favicon")})
        data["status_pages"] = [_page(slug, fields, now, images, out) for slug, fields in pages]
        rules = _rules(rulesets.in_force(conn), wanted, out)
    if rules is not None:
        data["rules"] = rules
    out.text = HEADER + yaml.dump(
        {kind: items for kind, items in data.items() if items or kind == "rules"},
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    return out


class _Dumper(yaml.SafeDumper):
    """Block style, but a list of plain values (`[api, db]`) and a secret's `{env: NAME}`
    on one line, as a person writes them."""


def _inline(node_of: Any) -> Any:
    def represent(dumper: yaml.SafeDumper, value: Any) -> yaml.Node:
        node = node_of(dumper, value)
        flat = all(isinstance(v, str | int | float | bool) for v in _values(value))
        if flat and value and (isinstance(value, list) or list(value) == ["env"]):
            node.flow_style = True
        return node

    return represent


def _values(value: Any) -> Iterable[Any]:
    return value.values() if isinstance(value, dict) else value


_Dumper.add_representer(list, _inline(yaml.SafeDumper.represent_list))
_Dumper.add_representer(dict, _inline(yaml.SafeDumper.represent_dict))


def _order(kind: str) -> Any:
    if kind == "services":
        return lambda item: (item[0][0], item[1]["position"], item[0][1])
    return lambda item: item[0]


def _team(key: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return _defaults_left_out(
        {"key": key, "name": fields["name"], "private": fields["private"]},
        {"name": "", "private": False},
    )


def _service(team: str, key: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return _defaults_left_out(
        {
            "key": key,
            "name": fields["name"],
            "team": team,
            "group": fields["group"],
            "description": fields["description"],
            "position": fields["position"],
        },
        {"group": None, "description": ""},
    )


def _source(team: str, key: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return _defaults_left_out(
        {
            "key": key,
            "name": fields["name"],
            "type": fields["type"],
            "team": team,
            "integration_key": {"env": env_name(team, key, "integration_key")},
            "signing_secret": fields["signing_secret"]
            and {"env": env_name(team, key, "signing_secret")},
            "settings": fields["settings"],
            "rate_limit": fields["rate_limit"],
            "enabled": fields["enabled"],
        },
        {"signing_secret": None, "settings": {}, "rate_limit": None, "enabled": True},
    )


def _channel(team: str, key: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(fields["config"])
    # `url` and `secret` are secrets (a chat hook's URL is its password); `settings` are
    # the channel's own options and hold none.
    url, secret = config.pop("url", None), config.pop("secret", None)
    address = config.pop("address", None)
    return _defaults_left_out(
        {
            "key": key,
            "team": team,
            "type": fields["type"],
            "url": url and {"env": env_name(team, key, "url")},
            "address": address,
            "secret": secret and {"env": env_name(team, key, "secret")},
            "settings": config,
            "enabled": fields["enabled"],
        },
        {"url": None, "address": None, "secret": None, "settings": {}, "enabled": True},
    )


def _template(team: str, key: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return _defaults_left_out(
        {
            "key": key,
            "team": team,
            "title": fields["title"],
            "message": fields["message"],
            "resolve_message": fields["resolve_message"],
            "status": fields["status"],
            "services": dict(sorted(fields["services"].items())),
        },
        {"message": "", "resolve_message": "", "services": {}},
    )


def _window(team: str, key: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return _defaults_left_out(
        {
            "key": key,
            "team": team,
            "title": fields["title"],
            "services": fields["services"],
            "start": _time(fields["start"]),
            "end": _time(fields["end"]),
            "message": fields["message"],
            "notify": fields["notify"],
            "on_end": fields["on_end"],
        },
        {"message": "", "notify": False},
    )


_SCOPED = {
    "services": _service,
    "alert_sources": _source,
    "channels": _channel,
    "incident_templates": _template,
    "maintenance_windows": _window,
}


def _page(
    slug: str,
    fields: Mapping[str, Any],
    now: current.Current,
    images: Mapping[str, tuple[str, bytes]],
    out: Exported,
) -> dict[str, Any]:
    teams = list(fields["teams"])
    page: dict[str, Any] = {
        "slug": slug,
        "name": fields["name"],
        "type": fields["type"],
        "teams": teams,
        "services": [_service_ref(team, key, teams, now) for team, key in fields["services"]],
        "time_zone": fields["time_zone"],
        "custom_domain": fields["custom_domain"],
    }
    for role in ("logo", "favicon"):
        if fields[role]:
            content_type, data = images[fields[role]]
            name = f"assets/{slug}-{role}.{_EXTENSIONS.get(content_type, 'bin')}"
            out.files[name] = data
            page[role] = name
    page.update(
        active=fields["active"],
        hide_uptime=fields["hide_uptime"],
        notify_component_changes=fields["notify_component_changes"],
    )
    return _defaults_left_out(
        page,
        {
            "custom_domain": None,
            "services": [],
            "hide_uptime": False,
            "notify_component_changes": False,
        },
    )


def _service_ref(team: str, key: str, page_teams: list[str], now: current.Current) -> str:
    """The key alone where only one of the page's teams has it, else `team/key`."""
    holders = [t for t in page_teams if (t, key) in now.objects["services"]]
    return key if holders == [team] else f"{team}/{key}"


def _images(conn: Any, shas: set[str | None]) -> dict[str, tuple[str, bytes]]:
    wanted = sorted(s for s in shas if s)
    if not wanted:
        return {}
    rows = conn.execute(
        sa.select(assets.c.sha256, assets.c.content_type, assets.c.data).where(
            assets.c.sha256.in_(wanted)
        )
    )
    return {row.sha256: (row.content_type, bytes(row.data)) for row in rows}


def _rules(stored: rulesets.StoredRules, teams: set[str], out: Exported) -> list[str] | None:
    """The rule files of `teams` (written beside the file) as the `rules:` globs, or None
    (no `rules:`: applying leaves the rules alone) where the stored rules of these teams
    cannot be said by one file: a file's rules belong to all of the file's teams."""
    if not stored.files:
        return None
    if stored.owners is None:
        out.warnings.append(
            "rules: the rule set in force was stored before rule files had owners; apply "
            "them with a config file once, then export again"
        )
        return None
    mine = {n: set(o) for n, o in stored.owners.items() if set(o) & teams}
    if not mine:
        return None
    if any(owners != teams for owners in mine.values()):
        out.warnings.append(
            "rules: these teams' rule files belong to different sets of teams; export one "
            "team at a time (--team) to include them"
        )
        return None
    for name in sorted(mine):
        out.files[name] = stored.files[name].encode("utf-8")
    return sorted(mine)


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _defaults_left_out(fields: dict[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: value
        for name, value in fields.items()
        if not (name in defaults and value == defaults[name])
    }
