"""`beacon user ...` and `beacon apikey ...` as an operator runs them: a password typed on a
real terminal, invitations by email, listing and revoking keys."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from engine import migrate
from engine.accounts import create_api_key, create_user
from engine.db import Store, create_store
from engine.security import check_password
from engine.settings import Settings
from engine.tables import users
from tests.conftest import ROOT
from tests.subscriptions.conftest import sent_json
from tests.support import RecordingServer, beacon, beacon_env

NEW = "typed on the terminal"


def _store(data: Path) -> Store:
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data)}))
    migrate.upgrade(store)
    return store


def _hash(store: Store, email: str) -> str | None:
    with store.read() as conn:
        return conn.execute(sa.select(users.c.password_hash).where(users.c.email == email)).scalar()


def _on_a_terminal(args: list[str], env: dict[str, str], typed: list[str]) -> tuple[int, str]:
    """Run `beacon ARGS` with a pseudo-terminal as its stdin/stdout, typing `typed` lines at
    its prompts; returns the exit code and everything it printed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    os.close(follower)
    out = b""
    pending = list(typed)
    answered = 0  # where the output stood at the last answer: answer each prompt once
    deadline = time.monotonic() + 60
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([leader], [], [], left)[0]:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the command ended
            break
        out += chunk
        # A prompt is new output ending in ":". The newline getpass prints after an answer
        # is not one: answering it early would be flushed by the next prompt's TCSAFLUSH.
        if pending and out[answered:].rstrip(b" ").endswith(b":"):
            os.write(leader, pending.pop(0).encode() + b"\n")
            answered = len(out)
    os.close(leader)
    if proc.poll() is None:
        proc.kill()
    return proc.wait(timeout=30), out.decode(errors="replace")


def test_user_create_asks_for_the_password_on_the_terminal(tmp_path: Path) -> None:
    store = _store(tmp_path / "data")
    env = beacon_env(tmp_path / "data")
    code, printed = _on_a_terminal(
        ["user", "create", "ana@acme.test", "--role", "admin"], env, [NEW, NEW]
    )
    assert code == 0, printed
    assert "Password:" in printed and NEW not in printed  # typed without echo
    stored = _hash(store, "ana@acme.test")
    assert stored and stored.startswith("$argon2id$") and check_password(NEW, stored)
    store.dispose()


def test_user_create_without_a_terminal_or_password_makes_no_user(tmp_path: Path) -> None:
    store = _store(tmp_path / "data")
    done = beacon(
        ["user", "create", "ana@acme.test", "--role", "admin"],
        beacon_env(tmp_path / "data"),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "no password" in done.stderr and "--invite" in done.stderr
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(users)).scalar() == 0
    store.dispose()


def test_user_create_invite_emails_a_link(tmp_path: Path, server: RecordingServer) -> None:
    store = _store(tmp_path / "data")
    env = beacon_env(
        tmp_path / "data",
        {
            "BEACON_SENDGRID_API_KEY": "SG.test",
            "BEACON_SENDGRID_API_URL": server.url,
            "BEACON_BASE_URL": "https://status.acme.test",
        },
    )
    done = beacon(
        ["user", "create", "bo@acme.test", "--role", "stakeholder", "--invite"],
        env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert "invitation sent to bo@acme.test" in done.stdout
    (mail,) = sent_json(server)
    text = mail["content"][0]["value"]
    assert re.search(r"https://status\.acme\.test/account/invite/[\w-]{40,}", text), text
    assert _hash(store, "bo@acme.test") is None  # until the link is used
    store.dispose()


def test_set_password_replaces_it(tmp_path: Path) -> None:
    store = _store(tmp_path / "data")
    create_user(store, "ana@acme.test", role="admin", password="the first password")
    env = beacon_env(tmp_path / "data", {"BEACON_USER_PASSWORD": "the second password"})
    done = beacon(["user", "set-password", "ana@acme.test"], env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert check_password("the second password", _hash(store, "ana@acme.test"))
    missing = beacon(["user", "set-password", "x@acme.test"], env, stdin=subprocess.DEVNULL)
    assert missing.returncode == 2 and "no user with email" in missing.stderr
    store.dispose()


def test_user_list_and_apikey_list_and_revoke(tmp_path: Path) -> None:
    store = _store(tmp_path / "data")
    with store.begin() as conn:
        from engine.tables import teams

        conn.execute(teams.insert().values(key="acme", private=False))
    create_user(store, "ana@acme.test", role="responder", teams=["acme"], password=NEW)
    key = create_api_key(store, name="ci", team="acme")
    env = beacon_env(tmp_path / "data")
    listed = beacon(["user", "list"], env)
    assert listed.returncode == 0
    assert re.search(r"ana@acme\.test\s+responder\s+acme\s+active\s+password", listed.stdout)
    keys = beacon(["apikey", "list"], env)
    assert keys.returncode == 0 and key not in keys.stdout
    prefix = key[:9]
    assert f"{prefix}..." in keys.stdout and "team acme" in keys.stdout
    revoked = beacon(["apikey", "revoke", prefix], env)
    assert revoked.returncode == 0 and "revoked API key ci" in revoked.stdout
    from pages.auth import principal_for_api_key

    assert principal_for_api_key(store, key) is None
    assert "revoked" in beacon(["apikey", "list", "--team", "acme"], env).stdout
    assert beacon(["apikey", "revoke", "bk_nope"], env).returncode == 2
    store.dispose()
