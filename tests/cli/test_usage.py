"""What `beacon` says when it is used wrongly: its commands, in the words of `--help`."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.conftest import free_port
from tests.support import beacon, beacon_env


def test_beacon_without_arguments_lists_its_commands(tmp_path: Path) -> None:
    ran = beacon([], beacon_env(tmp_path / "data"))
    assert ran.returncode == 2
    for command in ("serve", "apply", "rules", "why", "events", "user", "apikey", "db"):
        assert f"\n    {command} " in ran.stdout, command
    assert "required: command" not in ran.stdout + ran.stderr


def test_a_command_without_its_subcommand_lists_the_subcommands(tmp_path: Path) -> None:
    ran = beacon(["apikey"], beacon_env(tmp_path / "data"))
    assert ran.returncode == 2
    assert "create" in ran.stdout and "revoke" in ran.stdout
    assert "apikey_command" not in ran.stdout + ran.stderr


def test_usage_errors_never_show_internal_names(tmp_path: Path) -> None:
    env = beacon_env(tmp_path / "data")
    for args in (["apikey", "nope"], ["rules", "nope"], ["events", "nope"], ["user", "nope"]):
        ran = beacon(args, env)
        assert ran.returncode == 2
        assert "_command" not in ran.stderr, ran.stderr
        assert "unknown command 'nope'" in ran.stderr
        assert f"See `beacon {args[0]} --help`" in ran.stderr
    unknown = beacon(["serv"], env)
    assert "unknown command 'serv'" in unknown.stderr and "serve" in unknown.stderr
    missing = beacon(["events", "tail"], env)
    assert "required: source" in missing.stderr  # the name --help shows
    assert "source" in beacon(["events", "tail", "--help"], env).stdout


def test_serve_on_a_busy_port_exits_before_it_does_any_work(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        ran = beacon(["serve", "--port", str(port)], beacon_env(tmp_path / "data"))
    assert ran.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert "Beacon on" not in ran.stdout
    # Nothing was migrated, applied or started: no database was even created.
    assert not (tmp_path / "data" / "beacon.db").exists()


def test_serve_refuses_several_web_processes_in_embedded_mode(tmp_path: Path) -> None:
    ran = beacon(["serve", "--port", str(free_port()), "--workers", "2"], beacon_env(tmp_path))
    assert ran.returncode == 2
    assert "--workers above 1 needs scaled mode" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert not (tmp_path / "beacon.db").exists()
