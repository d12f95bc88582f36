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

from config.check import check_config
from config.world import ConfigWorld, world_from_model
from engine.models import AlertEvent
from engine.settings import Settings
from rules.errors import RulesError, RulesInvalid
from rules.validate import Known, RuleBookSpec, check


def register(sub: Any) -> None:
    """Add `rules check|test` and `why` to the `beacon` parser."""
    rules = sub.add_parser("rules", help="check and test rule files")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)

    check_cmd = rules_sub.add_parser("check", help="validate rule files; exit 1 on any problem")
    check_cmd.add_argument("files", nargs="*", metavar="FILE")
    check_cmd.add_argument(
        "--config",
        help="check the config file as `beacon apply` does, and the rules against it "
        "(without FILEs: the rule files it names)",
    )
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


def read_config_world(path: str) -> tuple[ConfigWorld, Known, dict[str, str] | None]:
    """The config file's world, the keys its rules may name, and the rule files it names
    ({name as messages show it: text}, None without `rules:`), checked exactly as `beacon
    apply` checks it (`config.check`); `ConfigError` (printed as apply prints it) otherwise."""
    checked = check_config(path)
    rule_files = checked.want.rule_files
    named = (
        {checked.rule_file_name(name): text for name, text in rule_files.items()}
        if rule_files is not None
        else None
    )
    return world_from_model(checked.config), checked.want.known, named


def known_from_store(settings: Settings) -> Known:
    """Every team's keys as the store has them (for `rules check` without --config)."""
    from config.desired import known_in_store
    from engine.db import create_store

    store = create_store(settings)
    try:
        with store.read() as conn:
            return known_in_store(conn)
    finally:
        store.dispose()


def cmd_rules_check(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.config:
            _world, known, named = read_config_world(args.config)
            # Without files: the rules the config file names, as `apply` would check them.
            files = read_rule_files(args.files) if args.files else (named or {})
        elif args.files:
            files, known = read_rule_files(args.files), known_from_store(settings)
        else:
            raise RulesError("name rule files, or a config file with --config")
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
        world, known = (read_config_world(args.config)[:2]) if args.config else (None, None)
        files = read_rule_files(args.files)
        spec: RuleBookSpec = check(files, known)
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
