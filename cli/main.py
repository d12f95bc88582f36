"""The `beacon` command. Builds `Settings` from the environment once, here, and passes it on."""

from __future__ import annotations

import argparse
import errno
import gc
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from engine import migrate
from engine.errors import BeaconError, ConfigError
from engine.settings import Settings

log = logging.getLogger("beacon")

Command = Callable[[argparse.Namespace, Settings], int]


def _settings() -> Settings:
    return Settings.from_env(os.environ)


def served_settings(settings: Settings, env: Mapping[str, str], host: str, port: int) -> Settings:
    """Without `BEACON_BASE_URL`, links (the Statuspage API's `url`, e-mails, webhook URLs
    printed at start) name the address this server listens on, not a fixed port 8000
    that nothing may answer. A wildcard host is shown as 127.0.0.1: set BEACON_BASE_URL
    to the name users reach."""
    if env.get("BEACON_BASE_URL"):
        return settings
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"  # an IPv6 literal
    return settings.model_copy(update={"base_url": f"http://{shown}:{port}"})


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from . import wiring

    # The port first: a second `beacon serve` on a busy port must stop here, before it
    # migrates, applies, renders or starts workers that would retry the outbox.
    listener = listen(args.host, args.port)
    settings = served_settings(settings, os.environ, args.host, args.port)
    workers = getattr(args, "workers", 1)
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    if workers > 1 and settings.embedded:
        raise ConfigError(
            "--workers above 1 needs scaled mode (BEACON_REDIS_URL): in embedded mode the "
            "queue lives in the one web process"
        )
    server = getattr(args, "server", "granian")
    if workers > 1 and server == "uvicorn":
        raise ConfigError("--workers above 1 needs --server granian")
    runtime = wiring.build_runtime(settings)
    _prepare(runtime, settings, args.config or settings.config_path)
    if server == "uvicorn":
        return _serve_uvicorn(_ready(runtime, settings, args), listener, args)
    # Granian's normal mode: a supervising process binds the port and starts `workers`
    # web processes, each of which builds its own runtime (store connections, queue,
    # caches, and in embedded mode the worker threads) through `_ready`: nothing opened
    # here crosses the fork. Granian binds its own socket: hand the port over (a moment in
    # which another process could take it, where granian then fails as before).
    runtime.close()
    listener.close()
    return _serve_granian(
        lambda: _ready(wiring.build_runtime(settings), settings, args, child=True),
        args.host,
        args.port,
        workers,
    )


def _prepare(runtime: Any, settings: Settings, config: str | Path | None) -> None:
    """What runs once per `beacon serve`, before any web process: migrations (embedded),
    the schema check (scaled), `--config`."""
    if settings.embedded:
        migrate.upgrade(runtime.store)
        from engine import outbox

        # The in-process queue died with the last process: nothing claimed is running.
        outbox.release_claims(runtime.store)
    elif not migrate.is_current(runtime.store):
        raise ConfigError("the database schema is not current: run `beacon db upgrade` first")
    from engine import domain_checks

    with runtime.store.begin() as conn:
        domain_checks.ensure_scheduled(conn)  # verified custom domains are asked again
    if config:
        _apply(
            runtime,
            Path(config),
            prune=False,
            dry_run=False,
            base_url=settings.base_url,
            pages_domain=settings.pages_domain,
        )


def _ready(
    runtime: Any, settings: Settings, args: argparse.Namespace, *, child: bool = False
) -> Any:
    """The served app of a web process: pages rendered, heap settled, start announced."""
    from pages.fastpath import outermost
    from pages.render import warm

    from . import wiring

    if child:
        _die_with_parent()
    # The app first: in embedded mode it starts the store process, which starts up while
    # this process renders.
    app = outermost(wiring.app(runtime, background=True), runtime)
    warm(runtime.store)  # render every page now, with this release's templates
    _settle_heap()
    # Each web process says so (one unless --workers), once its app is ready.
    mode = "embedded (SQLite, in-process queue)" if settings.embedded else "scaled"
    print(f"Beacon on http://{args.host}:{args.port} ({mode})", flush=True)
    _say_how_email_leaves(settings)
    return app


def _serve_uvicorn(app: Any, listener: socket.socket, args: argparse.Namespace) -> int:
    import uvicorn

    # proxy_headers=False: the app believes X-Forwarded-* only from BEACON_TRUSTED_PROXIES
    # (pages.app); uvicorn's own default would trust any process on 127.0.0.1.
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        proxy_headers=False,
    )
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a `ConfigError` that says why there is none."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn binds: a port in TIME_WAIT after a restart is free to take.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        hint = (
            " (is another `beacon serve` running there? choose another --port)"
            if exc.errno == errno.EADDRINUSE
            else ""
        )
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}{hint}") from None
    return sock


def _say_how_email_leaves(settings: Settings) -> None:
    """At start, when email cannot reach an inbox: where it goes instead (issue 19)."""
    if settings.email_transport == "outbox":
        print(
            "Email: no provider is set (BEACON_SENDGRID_API_KEY or BEACON_SMTP_URL), so emails "
            f"are not sent: each one is written to {settings.email_outbox}/ as an .eml file "
            "and to this log, links included.",
            flush=True,
        )
    elif settings.email_transport == "none":
        log.warning(
            "no email provider is set (BEACON_SENDGRID_API_KEY or BEACON_SMTP_URL): email "
            "subscriptions are refused and account emails cannot be sent"
        )


def _settle_heap() -> None:
    """Move everything made at start (modules, compiled rules, rendered pages) out of the
    garbage collector's sight: a full collection otherwise walks it all again and again,
    a pause of tens of milliseconds under load (p99 of bench/ingest.py 110-140 ms before,
    80-90 ms after, and about 15% more deliveries a second)."""
    gc.collect()
    gc.freeze()


_PARENT = os.getpid()


def _die_with_parent() -> None:
    """A web process ends when the `beacon serve` that started it does, SIGKILL included:
    an orphan would keep the port and, in embedded mode, run a second queue on the same
    database after a restart."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != _PARENT:  # the parent died before prctl took effect
        os._exit(1)


def _serve_granian(load: Callable[[], Any], host: str, port: int, workers: int) -> int:
    """Granian in its normal (multi-process) mode: a supervisor and `workers` web processes,
    each built by `load` after the fork; the app's lifespan starts embedded mode's worker
    threads in the one web process. About twice uvicorn's speed on cached pages."""
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels
    from granian.server.mp import MPServer

    def loader(_target: str) -> Any:
        return load()

    server = MPServer(
        "beacon",  # a name for granian's logs: the app comes from `loader`
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        runtime_threads=2,  # socket I/O off the Python thread: ~20% more cached pages/s
        loop=Loops.auto,
        log_level=LogLevels.warning,
        log_access=False,
    )
    server.serve(target_loader=loader)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from engine.runtime import install
    from workers.dispatch import Ticker, dispatch_once

    from . import wiring

    if settings.embedded:
        raise ConfigError(
            "beacon worker needs BEACON_REDIS_URL (scaled mode); in embedded mode "
            "`beacon serve` runs the workers itself"
        )
    names = queue_names(args.queues)
    runtime = install(wiring.build_runtime(settings))
    worker = runtime.queues.worker(name=runtime.name, queue_names=names)
    if args.burst:
        dispatch_once(runtime)
        worker.work(burst=True, logging_level="WARNING")
        return 0
    ticker = Ticker(runtime)
    ticker.start()
    _settle_heap()
    try:
        _work_until_stopped(runtime, worker, names)
    finally:
        ticker.stop()
    return 0


def queue_names(spec: str | None) -> tuple[str, ...]:
    """The RQ queues `beacon worker --queues` names (`notify`, `evaluate,render,default`;
    the `beacon-` prefix may be left out), most urgent first; all of them when unset."""
    from engine.queue import QUEUE_NAMES

    if not spec:
        return QUEUE_NAMES
    asked = {n.strip().removeprefix("beacon-") for n in spec.split(",") if n.strip()}
    known = {n.removeprefix("beacon-") for n in QUEUE_NAMES}
    unknown = sorted(asked - known)
    if unknown or not asked:
        raise ConfigError(
            f"--queues: unknown queue {', '.join(map(repr, unknown)) or repr(spec)}; "
            f"Beacon's queues are {', '.join(sorted(known))}"
        )
    return tuple(n for n in QUEUE_NAMES if n.removeprefix("beacon-") in asked)


def _work_until_stopped(runtime: Any, worker: Any, names: tuple[str, ...]) -> None:
    """Run the RQ worker until a stop is asked for (SIGTERM, SIGINT). RQ's worker quits for
    good on a Redis error in the middle of a job (even while recording its own death), and
    the process would live on without working: it is started again instead, under a new
    name, once a second until Redis answers. (Its job's outbox rows are dispatched again
    when their lease runs out: nothing is lost.)"""
    import redis

    restarts = 0
    while True:
        try:
            worker.work(logging_level="WARNING")
        except (redis.RedisError, OSError) as exc:
            logging.getLogger("beacon.worker").warning(
                "the RQ worker stopped on a Redis error (%s); starting it again", exc
            )
        if _stop_asked(worker):
            return
        time.sleep(1)
        if _stop_asked(worker):
            return
        restarts += 1
        try:
            worker = runtime.queues.worker(name=f"{runtime.name}-{restarts}", queue_names=names)
        except (redis.RedisError, OSError):
            continue  # Redis is still away: the old worker object tries again


def _stop_asked(worker: Any) -> bool:
    """Whether SIGTERM/SIGINT reached RQ's worker. An idle worker leaves `_stop_requested`
    unset (it raises StopRequested and returns from `work()`): its shutdown date says so,
    or `beacon worker` went on restarting it after every SIGTERM."""
    return bool(
        getattr(worker, "_stop_requested", False)
        or getattr(worker, "_shutdown_requested_date", None) is not None
    )


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from engine.db import create_store

    store = create_store(settings)
    migrate.upgrade(store)
    print(f"database at revision {migrate.current_revision(store)}")
    return 0


def cmd_db_reseal(args: argparse.Namespace, settings: Settings) -> int:
    from engine import reseal
    from engine.db import create_store

    store = create_store(settings)
    with store.begin() as conn:
        done = reseal.reseal(conn)
    print(f"{done.sealed} secrets sealed again under the current BEACON_SECRET_KEY")
    if done.stale_digests:
        print(
            f"{done.stale_digests} alert sources' integration keys are still under a previous "
            "key: keep it in BEACON_PREVIOUS_SECRET_KEYS until each has posted once or had "
            "its key rotated (run this again to count)"
        )
    if done.stale_links:
        print(
            f"{done.stale_links} subscribers' links sent before this release's derived links "
            "are digested under a previous key: they work while it is listed"
        )
    if not done.stale_digests and not done.stale_links:
        print("no stored secret needs BEACON_PREVIOUS_SECRET_KEYS any more")
    # Nothing stored can count these: the links are made from the key, never kept.
    print(
        "subscribers' links in messages sent before the key changed work only while the "
        "previous key is listed: keep it at least 30 days (docs/security.md)"
    )
    return 0


def _apply(
    runtime: Any,
    path: Path,
    *,
    prune: bool,
    dry_run: bool,
    base_url: str = "",
    prune_all: bool = False,
    pages_domain: str = "",
) -> int:
    """Apply (or plan) the file; a dry run exits 1 when it found something to change (drift
    included), 0 when nothing, as `diff` does (errors are 2). Pages whose access the
    apply ended leave the shared cache and the export before it returns."""
    from config import apply_file
    from config.apply import evict_ended

    plan = apply_file(
        runtime.store,
        path,
        prune=prune,
        prune_all=prune_all,
        dry_run=dry_run,
        base_url=base_url,
        pages_domain=pages_domain,
        env=os.environ,  # `{env: NAME}` secrets
    )
    # Committed: nobody may be served a page they can no longer see until it renders again.
    evict_ended(runtime, plan)
    print(plan.render())
    return 1 if dry_run and plan.changed else 0


def cmd_apply(args: argparse.Namespace, settings: Settings) -> int:
    from . import wiring

    # A runtime, not a bare store: the command evicts what it ends from the shared cache
    # (Redis) and the export, which the runtime reaches.
    runtime = wiring.build_runtime(settings)
    try:
        if settings.embedded:
            migrate.upgrade(runtime.store)
        return _apply(
            runtime,
            Path(args.file),
            prune=args.prune,
            prune_all=args.prune_all,
            dry_run=args.dry_run,
            base_url=settings.base_url,
            pages_domain=settings.pages_domain,
        )
    finally:
        runtime.close()


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from config.export import export_config
    from engine.db import create_store

    store = create_store(settings)
    if not migrate.is_current(store):
        raise ConfigError("the database schema is not current: run `beacon db upgrade` first")
    output = Path(args.output) if args.output else None
    exported = export_config(store, teams=args.team)
    for warning in exported.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    base = output.parent if output else Path(".")
    for name, data in exported.files.items():
        target = base / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
            print(f"wrote {target}", file=sys.stderr)
    if output:
        output.write_text(exported.text, encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(exported.text)
    return 0


class BeaconParser(argparse.ArgumentParser):
    """argparse in the words of `--help`: a command without its subcommand prints the
    subcommands (`beacon` alone lists every command), and an unknown subcommand is named as
    one, never by argparse's internal destination name (`apikey_command`)."""

    command_dest: str | None = None

    def add_subparsers(self, **kwargs: Any) -> Any:
        # Not required: a missing subcommand is answered with this parser's help (main).
        kwargs["required"] = False
        kwargs.setdefault("title", "commands")
        action = super().add_subparsers(**kwargs)
        self.command_dest = action.dest
        self.set_defaults(usage_parser=self)
        return action

    def error(self, message: str) -> Any:
        found = re.match(r"argument (\w+): invalid choice: (.*?) \(choose from (.*)\)$", message)
        if found and found.group(1) == self.command_dest:
            choices = found.group(3).replace("'", "")
            message = f"unknown command {found.group(2)} (the commands are {choices})"
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\nSee `{self.prog} --help`.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = BeaconParser(prog="beacon", description="Status pages and incident automation")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web app (and, in embedded mode, the workers)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--config", help="a config file to apply at start")
    serve.add_argument(
        "--server",
        choices=["granian", "uvicorn"],
        default="granian",
        help="the HTTP server (default granian; see docs/operations.md)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="web processes (scaled mode only; embedded mode runs one)",
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="an RQ worker for all of Beacon's queues (scaled mode)")
    worker.add_argument("--burst", action="store_true", help="quit when the queues are empty")
    worker.add_argument(
        "--queues",
        metavar="NAMES",
        help="serve only these queues, comma-separated (evaluate, render, notify, default); "
        "e.g. `--queues notify` for a worker of its own for notifications",
    )
    worker.set_defaults(func=cmd_worker)

    apply = sub.add_parser("apply", help="declare the config file's objects")
    apply.add_argument("file")
    apply.add_argument(
        "--prune",
        action="store_true",
        help="delete objects a config file made that the file no longer declares",
    )
    apply.add_argument(
        "--prune-all",
        action="store_true",
        help="--prune, and delete what the web UI, the API or the CLI made too",
    )
    apply.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan and any drift, change nothing; exit 1 if anything would change",
    )
    apply.set_defaults(func=cmd_apply)

    export = sub.add_parser("export", help="print the current state as a config file")
    export.add_argument("--team", action="append", help="only this team's objects (repeatable)")
    export.add_argument(
        "-o",
        "--output",
        help="write the file here (default: standard output); logos and rule files are "
        "written beside it",
    )
    export.set_defaults(func=cmd_export)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply schema migrations").set_defaults(func=cmd_db_upgrade)
    db_sub.add_parser(
        "reseal", help="encrypt stored secrets again under the current BEACON_SECRET_KEY"
    ).set_defaults(func=cmd_db_reseal)

    for register in EXTRA_COMMANDS:
        register(sub)
    return parser


#: Further subcommands registered by other parts (rules, events), each a function adding its
#: parsers to the subparsers object.
EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []  # type: ignore[type-arg,unused-ignore]

from .events_commands import register as _register_events  # noqa: E402

EXTRA_COMMANDS.append(_register_events)


def _rules_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .rules_commands import register

    register(sub)


EXTRA_COMMANDS.append(_rules_commands)


def _account_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .account_commands import register

    register(sub)


EXTRA_COMMANDS.append(_account_commands)


def _backup_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .backup_commands import register

    register(sub)


EXTRA_COMMANDS.append(_backup_commands)


def configure_logging(verbose: bool) -> None:
    """The log of every command: WARNING, or INFO with `-v`."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs each request's full URL at INFO, and Beacon's outbound requests go where
    # the path is the secret (chat hooks, webhook subscribers and channels): its warnings
    # only. What Beacon itself logs of a send names a hook by host (adapters.channels).
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        # `beacon`, `beacon rules`...: the commands there are, as `--help` lists them.
        args.usage_parser.print_help()
        return 2
    configure_logging(args.verbose)
    try:
        settings = _settings()
        return int(args.func(args, settings))
    except BeaconError as exc:
        print(f"beacon: {exc}", file=sys.stderr)
        return 2
