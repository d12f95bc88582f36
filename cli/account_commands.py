"""`beacon user ...` and `beacon apikey ...`: accounts and keys from the command line.

`user create` needs a way in for the new user: a password typed on the terminal (twice),
`BEACON_USER_PASSWORD` for scripts, or `--invite`, which emails a link to choose one. It
never makes a user who cannot sign in. Exit codes: 0 done, 1 the email could not be sent,
2 bad input (BeaconError, printed by the caller).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from engine import accounts
from engine.db import Store, create_store
from engine.errors import ConfigError, NotFoundError, ValidationError
from engine.settings import Settings
from engine.tables import api_keys, team_members, teams, users

ROLES = ["admin", "responder", "stakeholder"]


def _store(settings: Settings) -> Store:
    from engine import migrate

    store = create_store(settings)
    if settings.embedded:
        migrate.upgrade(store)
    return store


def read_password(prompt: str = "Password") -> str:
    """`BEACON_USER_PASSWORD`, else typed twice on the terminal; ConfigError without either."""
    given = os.environ.get("BEACON_USER_PASSWORD")
    if given:
        accounts.check_new_password(given)
        return given
    if not sys.stdin.isatty():
        raise ConfigError(
            "no password: run this in a terminal to type one, set BEACON_USER_PASSWORD, "
            "or use --invite to email the user a link to choose one"
        )
    for _ in range(3):
        first = getpass.getpass(f"{prompt}: ")
        try:
            accounts.check_new_password(first)
        except ValidationError as exc:
            print(str(exc), file=sys.stderr)
            continue
        if getpass.getpass(f"{prompt} (again): ") == first:
            return first
        print("The two passwords are not the same.", file=sys.stderr)
    raise ConfigError("no password set (three tries)")


def _user_id(store: Store, email: str) -> int:
    with store.read() as conn:
        found = conn.execute(
            sa.select(users.c.id).where(users.c.email == email.strip().lower())
        ).scalar()
    if found is None:
        raise NotFoundError(f"no user with email {email!r}")
    return int(found)


def _invite(settings: Settings, store: Store, user_id: int, email: str) -> int:
    from adapters.channels import ChannelError
    from workers.account_mail import send_account_email

    try:
        send_account_email(settings, store, user_id, accounts.INVITE)
    except ChannelError as exc:
        print(f"beacon: the invitation to {email} was not sent: {exc}", file=sys.stderr)
        print(f"Send it again with: beacon user invite {email}", file=sys.stderr)
        return 1
    print(f"invitation sent to {email}: the link works once, within 7 days")
    return 0


def cmd_user_create(args: argparse.Namespace, settings: Settings) -> int:
    password = None if args.invite else read_password()
    store = _store(settings)
    user_id = accounts.create_user(
        store, args.email, role=args.role, teams=args.team, password=password
    )
    print(f"created user {args.email} (id {user_id}, role {args.role})")
    if args.invite:
        return _invite(settings, store, user_id, args.email)
    return 0


def cmd_user_invite(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    return _invite(settings, store, _user_id(store, args.email), args.email)


def cmd_user_set_password(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    user_id = _user_id(store, args.email)
    password = read_password("New password")
    with store.begin() as conn:
        accounts.set_password(conn, user_id, password)
    print(f"password of {args.email} set; their sessions are signed out")
    return 0


def cmd_user_list(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    with store.read() as conn:
        rows = conn.execute(sa.select(users).order_by(users.c.email)).all()
        memberships = conn.execute(
            sa.select(team_members.c.user_id, teams.c.key)
            .join(teams, teams.c.id == team_members.c.team_id)
            .order_by(teams.c.key)
        ).all()
    by_user: dict[int, list[str]] = {}
    for user_id, key in memberships:
        by_user.setdefault(user_id, []).append(key)
    table = [["EMAIL", "ROLE", "TEAMS", "STATE", "SIGN-IN"]]
    for row in rows:
        table.append(
            [
                row.email,
                row.role,
                ",".join(by_user.get(row.id, [])) or "-",
                "active" if row.active else "deactivated",
                "password" if row.password_hash else "single sign-on or invitation",
            ]
        )
    _print_table(table)
    return 0


def cmd_apikey_create(args: argparse.Namespace, settings: Settings) -> int:
    key = accounts.create_api_key(
        _store(settings), name=args.name, team=args.team, admin=args.admin
    )
    print(key)
    print("Store this key now: Beacon keeps only its hash.", file=sys.stderr)
    return 0


def cmd_apikey_list(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    query = (
        sa.select(api_keys, teams.c.key.label("team_key"))
        .outerjoin(teams, teams.c.id == api_keys.c.team_id)
        .order_by(api_keys.c.id)
    )
    if args.team:
        query = query.where(teams.c.key == args.team)
    with store.read() as conn:
        rows = conn.execute(query).all()
    table = [["ID", "PREFIX", "NAME", "FOR", "CREATED", "LAST USED", "STATE"]]
    for row in rows:
        table.append(
            [
                str(row.id),
                row.prefix + "...",
                row.name,
                "admin" if row.admin else f"team {row.team_key}",
                f"{row.created_at:%Y-%m-%d}",
                f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never",
                f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active",
            ]
        )
    _print_table(table)
    return 0


def cmd_apikey_revoke(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    revoked = accounts.revoke_api_key(store, args.key)
    print(f"revoked API key {revoked}")
    return 0


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def register(sub: Any) -> None:
    """Add `user` and `apikey` to the `beacon` parser."""
    user = sub.add_parser("user", help="user accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    create = user_sub.add_parser(
        "create",
        help="create a user: type a password, or --invite to email a link",
        description="Create a user. The password is typed on the terminal (or taken from "
        "BEACON_USER_PASSWORD); with --invite, the user gets an email with a link to "
        "choose one.",
    )
    create.add_argument("email")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--team", action="append", default=[], help="a team key (repeatable)")
    create.add_argument("--invite", action="store_true", help="email an invitation link")
    create.set_defaults(func=cmd_user_create)
    _simple(user_sub, "invite", "email a user an invitation link again", cmd_user_invite)
    _simple(
        user_sub,
        "set-password",
        "set a user's password (typed on the terminal) and sign them out everywhere",
        cmd_user_set_password,
    )
    user_sub.add_parser("list", help="list users").set_defaults(func=cmd_user_list)

    apikey = sub.add_parser("apikey", help="API keys")
    apikey_sub = apikey.add_subparsers(dest="apikey_command", required=True)
    key_create = apikey_sub.add_parser("create", help="create an API key; it is printed once")
    who = key_create.add_mutually_exclusive_group(required=True)
    who.add_argument("--team", help="the team the key acts for (responder rights)")
    who.add_argument("--admin", action="store_true", help="an admin key: also teams and users")
    key_create.add_argument("--name", required=True)
    key_create.set_defaults(func=cmd_apikey_create)
    key_list = apikey_sub.add_parser("list", help="list API keys (never the keys themselves)")
    key_list.add_argument("--team", help="only this team's keys")
    key_list.set_defaults(func=cmd_apikey_list)
    revoke = apikey_sub.add_parser("revoke", help="revoke an API key at once")
    revoke.add_argument("key", help="the key's id or prefix (as `beacon apikey list` shows)")
    revoke.set_defaults(func=cmd_apikey_revoke)


def _simple(
    sub: Any, name: str, text: str, func: Callable[[argparse.Namespace, Settings], int]
) -> None:
    parser = sub.add_parser(name, help=text)
    parser.add_argument("email")
    parser.set_defaults(func=func)
