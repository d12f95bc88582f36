"""`beacon rules check`, `beacon rules test` and `beacon why`: the rule author's commands.

Registered into `cli.main` through `EXTRA_COMMANDS`. Exit codes: 0 fine, 1 a check or
an expectation failed, 2 the input could not be read (a missing file, a bad scenario).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from config import yamlsrc
from config.world import ConfigWorld, world_from_config
from engine.errors import ConfigError
from engine.models import AlertEvent
from engine.settings import Settings
from rules.errors import RulesError, RulesInvalid
from rules.validate import Known, RuleBookSpec, check


def register(sub: Any) -> None:
    """Add `rules check|test` and `why` to the `beacon` parser."""
    rules = sub.add_parser("rules", help="check and test rule files")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)

    check_cmd = rules_sub.add_parser("check", help="validate rule files; exit 1 on any problem")
    check_cmd.add_argument("files", nargs="+", metavar="FILE")
    check_cmd.add_argument("--config", help="check references against this config file")
    check_cmd.set_defaults(func=cmd_rules_check)

    test_cmd = rules_sub.add_parser(
        "test", help="replay events through rules; one JSON line per intent"
    )
    test_cmd.add_argument("files", nargs="+", metavar="RULES")
    test_cmd.add_argument("--events", nargs="+", required=True, metavar="PATH")
    test_cmd.add_argument("--source", help="alert source key for raw payload files")
    test_cmd.add_argument("--config", help="the config file the events run against")
    test_cmd.set_defaults(func=cmd_rules_test)

    why = sub.add_parser("why", help="explain a service's current status")
    why.add_argument("service")
    why.add_argument("--team", help="the service's team (needed when the key is ambiguous)")
    why.add_argument("--json", action="store_true", help="print the explanation as JSON")
    why.set_defaults(func=cmd_why)


def read_rule_files(paths: list[str]) -> dict[str, str]:
    """{path as given: text}; a missing file is a `RulesError` naming it."""
    files = {}
    for path in paths:
        try:
            files[path] = Path(path).read_text()
        except OSError as exc:
            raise RulesError(f"{path}: cannot read: {exc.strerror}") from None
    return files


def read_config_world(path: str) -> ConfigWorld:
    try:
        # The config loader: its node cap refuses an alias bomb before it is built.
        data, _ = yamlsrc.load(Path(path).read_text(), path)
    except OSError as exc:
        raise RulesError(f"{path}: cannot read: {exc.strerror}") from None
    except ConfigError as exc:
        raise RulesError(str(exc)) from None
    return world_from_config(data or {}, path)


def known_from_store(settings: Settings) -> Known:
    """Every team's keys as the store has them (for `rules check` without --config)."""
    import sqlalchemy as sa

    from engine.db import create_store
    from engine.tables import alert_sources, channels, incident_templates, services, teams
    from rules.validate import TeamKeys

    store = create_store(settings)
    try:
        with store.read() as conn:
            names = {r.id: r.key for r in conn.execute(sa.select(teams.c.id, teams.c.key))}

            def keys(table: sa.Table) -> dict[str, set[str]]:
                found: dict[str, set[str]] = {}
                for row in conn.execute(sa.select(table.c.team_id, table.c.key)):
                    found.setdefault(names[row.team_id], set()).add(row.key)
                return found

            svc, tpl, chan = keys(services), keys(incident_templates), keys(channels)
            src: dict[str, dict[str, str]] = {}
            for row in conn.execute(
                sa.select(alert_sources.c.team_id, alert_sources.c.key, alert_sources.c.type)
            ):
                src.setdefault(names[row.team_id], {})[row.key] = row.type
    finally:
        store.dispose()
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


def cmd_rules_check(args: argparse.Namespace, settings: Settings) -> int:
    try:
        files = read_rule_files(args.files)
        known = (
            read_config_world(args.config).known() if args.config else known_from_store(settings)
        )
        spec = check(files, known)
    except RulesInvalid as exc:
        for problem in exc.problems:
            print(problem)
        print(f"{len(exc.problems)} problem(s)", file=sys.stderr)
        return 1
    except RulesError as exc:
        print(f"beacon: {exc}", file=sys.stderr)
        return 2
    print(f"{len(spec.rules)} rule(s) in {len(files)} file(s): OK")
    return 0


def parse_payload(
    source_type: str,
    body: bytes,
    headers: Mapping[str, str],
    received_at: datetime,
    settings: Mapping[str, Any],
) -> list[AlertEvent]:
    """A raw tool payload through its adapter, as the intake would parse it."""
    from adapters.alert_sources import Delivery, get_adapter

    adapter = get_adapter(source_type)
    delivery = Delivery(
        body=body,
        received_at=received_at,
        headers=dict(headers),
        content_type=headers.get("content-type", "application/json"),
    )
    return list(adapter.parse(delivery, settings))


def cmd_rules_test(args: argparse.Namespace, settings: Settings) -> int:
    from config.replay import run
    from rules.runtime import RuleBook

    try:
        world = read_config_world(args.config) if args.config else None
        files = read_rule_files(args.files)
        spec: RuleBookSpec = check(files, world.known() if world else None)
        book = RuleBook(spec, 0)
        results = run(
            book,
            [Path(p) for p in args.events],
            world=world,
            parse_payload=parse_payload,
            source=args.source,
        )
    except RulesInvalid as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except RulesError as exc:
        print(f"beacon: {exc}", file=sys.stderr)
        return 2
    failed = False
    many = len(results) > 1
    for name, result, has_expect in results:
        for line in result.lines:
            out = {"scenario": name, **line} if many else line
            sys.stdout.write(orjson.dumps(out).decode() + "\n")
        sys.stdout.flush()
        # As `beacon events tail` explains a no-match: each rule's first condition that fails.
        for event, why in result.unmatched:
            when = event.received_at.isoformat().replace("+00:00", "Z")
            print(
                f"{name}: {event.id} ({event.source}, {event.dedup_key}, received {when}): "
                "no rule matched",
                file=sys.stderr,
            )
            for text in why.lines():
                print(f"    {text}", file=sys.stderr)
        for mismatch in result.mismatches:
            print(f"{name}: {mismatch}", file=sys.stderr)
            failed = True
        if not result.lines and not has_expect:
            # Silence would read as success: say that nothing would happen, and fail.
            print(
                f"{name}: nothing would happen: no rule acted on its {result.events} event(s)",
                file=sys.stderr,
            )
            failed = True
    sys.stdout.flush()
    return 1 if failed else 0


def cmd_why(args: argparse.Namespace, settings: Settings) -> int:
    from engine.db import create_store
    from engine.errors import NotFoundError
    from engine.why import explain, render_text

    store = create_store(settings)
    try:
        with store.read() as conn:
            report = explain(conn, args.service, team=args.team)
    except NotFoundError as exc:
        print(f"beacon: {exc}", file=sys.stderr)
        return 2
    finally:
        store.dispose()
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_text(report))
    return 0
