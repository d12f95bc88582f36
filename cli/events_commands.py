"""`beacon events send SOURCE FILE` and `beacon events tail SOURCE`: trying a source out and
watching what happens to its alerts, from the operator's shell.

Both work on the store directly (same settings as `beacon serve`), so they need no API key;
whoever can run them can read the database anyway.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from adapters.alert_sources import AdapterError, Delivery, get_adapter, sniff
from adapters.alert_sources.errors import UnknownAdapterError
from engine import events, migrate, rejections, sources
from engine.db import Store, create_store
from engine.errors import ConfigError, NotFoundError
from engine.settings import Settings
from engine.tables import utcnow
from pages.unmatched import RulesInForce, why_unmatched
from rules.explain import Explanation

#: Seconds between polls of `tail`.
POLL = 1.0


def register(sub: Any) -> None:
    """Add `beacon events ...` to the CLI's subparsers."""
    parser = sub.add_parser("events", help="send test deliveries to a source, watch its events")
    events_sub = parser.add_subparsers(dest="events_command", required=True)

    send = events_sub.add_parser(
        "send", help="read FILE as a delivery of SOURCE's tool and store its events"
    )
    send.add_argument("source", help="the alert source's key")
    send.add_argument("file", help="the delivery body ('-' reads standard input)")
    send.add_argument("--team", help="the source's team, when several teams use the key")
    send.add_argument("--content-type", default="", help="as the tool would declare it")
    how = send.add_mutually_exclusive_group()
    how.add_argument("--form", action="store_true", help="FILE is a urlencoded form body")
    how.add_argument("--query", action="store_true", help="FILE is a query string (a GET)")
    send.add_argument(
        "--test", action="store_true", help="store as test events: shown, never evaluated"
    )
    send.set_defaults(func=cmd_send)

    tail = events_sub.add_parser("tail", help="show SOURCE's events and their outcome, live")
    tail.add_argument("source", help="the alert source's key")
    tail.add_argument("--team", help="the source's team, when several teams use the key")
    tail.add_argument("-n", "--lines", type=int, default=10, help="recent events to show first")
    tail.add_argument("--no-follow", action="store_true", help="show recent events and stop")
    tail.set_defaults(func=cmd_tail)


def _store(settings: Settings) -> Store:
    store = create_store(settings)
    if settings.embedded:
        migrate.upgrade(store)
    return store


def find_source(store: Store, key: str, team: str | None) -> sources.Source:
    """The source `key` (in `team`), or a `NotFoundError`/`ConfigError` that says why not."""
    with store.read() as conn:
        found = sources.find_by_key(conn, key, None, team)
    if not found:
        where = f" in team {team!r}" if team else ""
        raise NotFoundError(f"no alert source {key!r}{where}")
    if len(found) > 1:
        raise ConfigError(f"alert source {key!r} exists in several teams: name one with --team")
    return found[0]


def _delivery(args: argparse.Namespace, received_at: datetime) -> Delivery:
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{args.file}: cannot read: {exc.strerror or exc}") from None
    if args.query:
        text = data.decode("utf-8", "replace").strip().lstrip("?")
        return Delivery(body=b"", received_at=received_at, query=dict(parse_qsl(text)))
    if args.form:
        form = dict(parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True))
        content_type = args.content_type or "application/x-www-form-urlencoded"
        return Delivery(body=data, received_at=received_at, form=form, content_type=content_type)
    headers = {"content-type": args.content_type} if args.content_type else {}
    return Delivery(
        body=data, received_at=received_at, headers=headers, content_type=args.content_type
    )


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    """Parse FILE with the source's adapter and store the events (evaluated unless --test)."""
    store = _store(settings)
    try:
        source = find_source(store, args.source, args.team)
        if not source.enabled and not args.test:
            raise ConfigError(
                f"alert source {source.key!r} is disabled: its webhook answers 404 and its "
                "events would not be the tool's; enable it, or send with --test"
            )
        try:
            adapter = get_adapter(source.type)
        except (UnknownAdapterError, ImportError) as exc:
            raise ConfigError(f"alert source {source.key!r}: {exc}") from None
        received_at = utcnow()
        delivery = _delivery(args, received_at)
        try:
            parsed = adapter.parse(delivery, source.settings)
        except AdapterError as exc:
            hint = sniff.hint(delivery, source.settings, source.type)
            message = f"not a valid {source.type} delivery: {exc}{hint}"
            print(f"beacon: {args.file}: {message}", file=sys.stderr)
            return 1
        made = [e.model_copy(update={"test": True}) for e in parsed] if args.test else parsed
        stored = events.store_one(store, events.Submission(source, made, received_at, touch=False))
    finally:
        store.dispose()
    for event, place in zip(made, stored, strict=True):
        state = "duplicate of" if place.duplicate else "stored as"
        kind = "test " if event.test else ""
        print(f"{kind}{event.status} {event.dedup_key!r}: {state} event {place.id}")
    print(json.dumps({"accepted": len(made), "events": [str(s.id) for s in stored]}))
    return 0


def describe_outcome(row: Any) -> str:
    """What evaluation made of an event, in one phrase."""
    if row.outcome is None:
        return "pending"
    outcome = row.outcome
    text = str(outcome.get("result", "?"))
    matched = [str(rule) for rule in outcome.get("matched") or []]
    if matched:
        text += " by " + ", ".join(matched)
    effects = [str(effect) for effect in outcome.get("effects") or []]
    if effects:
        text += ": " + "; ".join(effects)
    return text


def why_lines(why: Explanation | None) -> str:
    """An explanation (`why_unmatched`) as indented lines; empty without one."""
    return "".join(f"\n    {line}" for line in why.lines()) if why is not None else ""


def event_line(row: Any, why: Explanation | None = None) -> str:
    when = row.received_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    test = " [test]" if row.test else ""
    summary = f" {row.summary}" if row.summary else ""
    return (
        f"{when} #{row.id} {row.status} {row.severity} {row.dedup_key}{test}:{summary} "
        f"-> {describe_outcome(row)}{why_lines(why)}"
    )


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    """Print recent events, then new events and outcomes as they arrive (Ctrl-C stops)."""
    store = _store(settings)
    try:
        source = find_source(store, args.source, args.team)
        with store.read() as conn:
            rows = list(reversed(events.recent(conn, source.id, max(args.lines, 0))))
            refused = list(reversed(rejections.recent(conn, [source.id], limit=max(args.lines, 0))))
        # The rules stay read from one poll to the next.
        rules = RulesInForce()
        why = why_unmatched(store, rules, source.key, source.type, rows)
        # Events and refused deliveries in the order they came.
        shown = [(row.received_at.isoformat(), event_line(row, why.get(row.id))) for row in rows]
        shown += [(r["at"], refusal_line(r)) for r in refused]
        shown.sort(key=lambda pair: pair[0])
        for _, line in shown[len(shown) - max(args.lines, 0) :]:
            print(line, flush=True)
        if args.no_follow:
            return 0
        last_id = rows[-1].id if rows else _newest_id(store, source.id)
        last_refused = int(refused[-1]["id"]) if refused else _newest_refusal(store, source.id)
        pending = {r.id for r in rows if r.outcome is None}
        while True:
            time.sleep(POLL)
            last_id, pending = _poll(store, source, last_id, pending, rules)
            last_refused = _poll_refused(store, source.id, last_refused)
    except KeyboardInterrupt:
        return 0
    finally:
        store.dispose()


def refusal_line(refused: dict[str, Any]) -> str:
    """A delivery the intake refused, as `tail` prints it beside the events."""
    when = refused["at"][:19] + "Z"
    sender = ", ".join(
        part
        for part in (refused.get("user_agent"), f"{refused['bytes']} bytes", refused.get("client"))
        if part
    )
    return f"{when} REFUSED {refused['status']} {refused['method']} ({sender}): {refused['reason']}"


def _newest_refusal(store: Store, source_id: int) -> int:
    with store.read() as conn:
        newest = rejections.recent(conn, [source_id], limit=1)
    return int(newest[0]["id"]) if newest else 0


def _poll_refused(store: Store, source_id: int, last_id: int) -> int:
    """Print deliveries refused since `last_id`; the newest id printed."""
    with store.read() as conn:
        new = list(reversed(rejections.recent(conn, [source_id], after_id=last_id)))
    for refused in new:
        print(refusal_line(refused), flush=True)
    return int(new[-1]["id"]) if new else last_id


def _newest_id(store: Store, source_id: int) -> int:
    with store.read() as conn:
        newest = events.recent(conn, source_id, 1)
    return newest[0].id if newest else 0


def _poll(
    store: Store, source: sources.Source, last_id: int, pending: set[int], rules: RulesInForce
) -> tuple[int, set[int]]:
    """Print events newer than `last_id`, and outcomes of `pending` ones that arrived."""
    source_id = source.id
    import sqlalchemy as sa

    from engine.tables import alert_events

    with store.read() as conn:
        new = list(reversed(events.recent(conn, source_id, 500, after=last_id)))
        done = []
        if pending:
            done = list(
                conn.execute(
                    sa.select(alert_events)
                    .where(alert_events.c.id.in_(sorted(pending)))
                    .where(alert_events.c.outcome.isnot(None))
                    .order_by(alert_events.c.id)
                )
            )
    why = why_unmatched(store, rules, source.key, source.type, [*done, *new])
    for row in done:
        print(f"#{row.id} -> {describe_outcome(row)}{why_lines(why.get(row.id))}", flush=True)
        pending.discard(row.id)
    for row in new:
        print(event_line(row, why.get(row.id)), flush=True)
        if row.outcome is None:
            pending.add(row.id)
    return (new[-1].id if new else last_id), pending
