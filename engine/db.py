"""Connecting to the store: SQLite (WAL) in embedded mode, PostgreSQL in scaled mode.

`Store` wraps a SQLAlchemy engine. Write transactions on SQLite start with
`BEGIN IMMEDIATE`, so two writers queue on the database lock instead of failing when a
read transaction tries to upgrade; `busy_timeout` makes them wait rather than error.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from .settings import Settings
from .vault import INFO_KEY, Keyring, keyring_from

# FULL (the default): a commit is on disk before the intake answers 202, and survives power
# loss, not only a crash of Beacon. NORMAL survives a crash of Beacon but may lose the last
# commits on power loss (docs/operations.md, "Durability"). BEACON_SQLITE_SYNCHRONOUS.
SQLITE_SYNCHRONOUS = "FULL"
SQLITE_SYNCHRONOUS_MODES = ("FULL", "NORMAL")
#: How long a writer waits for the write lock before failing (SQLite's busy_timeout below).
SQLITE_BUSY_SECONDS = 30


class WriteLock:
    """One SQLite writer at a time in this process, urgent writers first.

    A writer someone is waiting on (the intake's group commit: every webhook of the batch
    waits for its 202) goes ahead of background writers (evaluation, the dispatcher, the
    clock) that are waiting too, and a background writer that just committed cannot take
    the lock straight back while an urgent one waits: then a webhook waits for the one
    transaction in progress (and an overdue one, below). A plain lock hands itself to
    whichever thread runs first, which is usually the one that just released it.

    A background writer is held back for at most `HOLD_BACK` seconds: under a flood of
    deliveries the group commit is waiting nearly all the time, and evaluation must still
    get its turns. Past that it is overdue, and urgent writers wait for it in turn.
    Reentrant, like the `RLock` it replaces: a thread that holds it may take it again.
    """

    HOLD_BACK = 0.5

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._urgent_waiting = 0
        #: Background writers waiting longer than `HOLD_BACK`: urgent ones let them go first.
        self._overdue = 0

    def acquire(self, timeout: float, urgent: bool = False) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            now = time.monotonic()
            deadline = now + timeout
            # After this, a background writer waits only for the writer in progress.
            patience = now + self.HOLD_BACK
            overdue = False
            if urgent:
                self._urgent_waiting += 1
            try:
                while True:
                    now = time.monotonic()
                    if not urgent and not overdue and now >= patience:
                        overdue = True
                        self._overdue += 1
                    if self._owner is None and (
                        not self._overdue if urgent else overdue or not self._urgent_waiting
                    ):
                        break
                    if now >= deadline:
                        return False
                    # A background writer wakes when its patience ends, to become overdue.
                    until = deadline if urgent or overdue else min(deadline, patience)
                    self._cond.wait(until - now)
                # Depth first: whatever interrupts these two lines, `held` is right.
                self._depth = 1
                self._owner = me
                return True
            finally:
                if urgent:
                    self._urgent_waiting -= 1
                if overdue:
                    self._overdue -= 1
                if (urgent and not self._urgent_waiting) or (overdue and not self._overdue):
                    # Writers that waited for this one may take their turn.
                    self._cond.notify_all()

    def held(self) -> int:
        """How many times the calling thread holds the lock (0: not at all)."""
        return self._depth if self._owner == threading.get_ident() else 0

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a write lock this thread does not hold")
            self._depth -= 1
            if not self._depth:
                self._owner = None
                self._cond.notify_all()


class FileLock:
    """One SQLite writer at a time across the processes of a `beacon serve` (the web
    process and its store process) and the CLI: an exclusive `flock` on a file beside the
    database, taken after this process's `WriteLock`. A waiter blocks in the kernel
    (without the GIL) and runs the moment the holder lets go, where SQLite's own busy
    handler sleeps in growing steps (1, 2, 5, 10 ms...). The kernel lets go of it when its
    process dies, SIGKILL included."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self._guard = threading.Lock()

    def _file(self) -> int:
        # Per process: a lock is held by an open file, which a forked child would share.
        if self._fd is None or self._pid != os.getpid():
            with self._guard:
                if self._fd is None or self._pid != os.getpid():
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                    self._pid = os.getpid()
        return self._fd

    def acquire(self, timeout: float) -> bool:
        """Take the lock: blocking for the default wait (`SQLITE_BUSY_SECONDS`: as long as
        the writer in progress elsewhere takes), not at all for 0, polling otherwise."""
        fd = self._file()
        if timeout >= SQLITE_BUSY_SECONDS:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.001)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._guard:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class Store:
    """The database: a SQLAlchemy engine plus the dialect facts the code needs to branch on."""

    def __init__(self, engine: Engine, keyring: Keyring | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        #: The keys of the secrets stored here (engine.vault); every connection of the engine
        #: carries it, so a function holding a connection reaches it.
        self.keyring = keyring
        if keyring is not None:
            event.listen(engine, "engine_connect", functools.partial(_carry, keyring))
        # SQLite has one writer at a time. Writers of this process queue on this lock and
        # start the moment the previous one commits; left to SQLite's busy handler they
        # sleep in growing steps (1, 2, 5, 10 ms...), and the intake's group commit would
        # nap behind the dispatcher's transactions. Other processes (the CLI) still queue
        # through busy_timeout.
        self._write_lock = WriteLock() if self.dialect == "sqlite" else None
        database = engine.url.database if self.dialect == "sqlite" else None
        self._file_lock = (
            FileLock(f"{database}-writer.lock") if database and database != ":memory:" else None
        )

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextlib.contextmanager
    def begin(self, urgent: bool = False, wait: float | None = None) -> Iterator[Connection]:
        """A write transaction: commits on success, rolls back on an exception.

        `urgent`: a request waits for this commit; on SQLite it goes ahead of background
        writers waiting for the lock (`WriteLock`). `wait`: on SQLite, at most this many
        seconds for this process's lock (default `SQLITE_BUSY_SECONDS`), then
        `OperationalError` ("database is locked") as SQLite itself would raise."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        # Released by what the lock says this thread holds, not by a flag set after
        # `acquire` returned: an exception raised into the thread in between (RQ's job
        # timeout does that) would otherwise leave the lock taken for good.
        before = self._write_lock.held()
        try:
            # As long as SQLite's own busy timeout: a writer that waits longer fails the
            # same way it would have without the lock, rather than hanging.
            if not self._write_lock.acquire(SQLITE_BUSY_SECONDS if wait is None else wait, urgent):
                raise sa.exc.OperationalError(
                    "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
                )
            file_locked = False
            if self._file_lock is not None and not before:
                if not self._file_lock.acquire(SQLITE_BUSY_SECONDS if wait is None else wait):
                    raise sa.exc.OperationalError(
                        "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
                    )
                file_locked = True
            try:
                with self.engine.begin() as conn:
                    yield conn
            finally:
                if file_locked:
                    self._file_lock.release()  # type: ignore[union-attr]
        finally:
            if self._write_lock.held() > before:
                self._write_lock.release()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection (a plain transaction, never upgraded to a write lock)."""
        with self.engine.connect() as conn:
            conn.info["beacon_read"] = True
            try:
                yield conn
            finally:
                conn.info.pop("beacon_read", None)
                conn.rollback()

    def dispose(self) -> None:
        self.engine.dispose()
        if self._file_lock is not None:
            self._file_lock.close()


def _carry(keyring: Keyring, conn: Connection) -> None:
    conn.info[INFO_KEY] = keyring


def json_text(value: Any) -> str:
    """JSON columns' text: orjson, a tenth of the standard library's time on the rows every
    evaluation writes; the standard library for what orjson refuses (keys that are not
    strings, integers past 64 bits), so nothing that was storable before is refused now."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def sqlite_time(value: datetime | None) -> str | None:
    """The text form SQLAlchemy's SQLite DateTime writes and reads, for statements that go
    through the driver: naive UTC, microseconds, a four-digit year (strftime's `%Y` writes
    year 1 as "1", which neither reads back nor sorts among the others)."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


#: Integers orjson would read back as floats (past 64 bits: 19 digits and more).
_LONG_NUMBER = re.compile(r"\d{19}")
_LONG_NUMBER_BYTES = re.compile(rb"\d{19}")


def json_value(text: str | bytes) -> Any:
    """A JSON column's value: orjson, except where it would read differently from the
    standard library, which wrote every row before it did: integers past 64 bits (orjson
    makes them floats) and `NaN`/`Infinity`, which orjson does not read at all."""
    long_number = _LONG_NUMBER if isinstance(text, str) else _LONG_NUMBER_BYTES
    if long_number.search(text):  # type: ignore[arg-type]
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def create_store(settings: Settings, **engine_kwargs: Any) -> Store:
    """A `Store` for the settings' database URL, configured for its dialect."""
    url = settings.effective_database_url
    secret = settings.secret_key.get_secret_value()
    # Without a secret key (settings made in code, not from the environment) no secret can
    # be stored or read: engine.vault.of says so where one is asked for.
    keyring = (
        keyring_from(secret, [k.get_secret_value() for k in settings.previous_secret_keys])
        if secret
        else None
    )
    if url.startswith("sqlite"):
        engine = sqlite_engine(url, synchronous=settings.sqlite_synchronous, **engine_kwargs)
        return Store(engine, keyring)
    engine = sa.create_engine(
        url,
        json_serializer=json_text,
        json_deserializer=json_value,
        hide_parameters=True,  # errors are logged: their text must not carry tokens or secrets
        pool_pre_ping=True,
        pool_size=engine_kwargs.pop("pool_size", 10),
        max_overflow=engine_kwargs.pop("max_overflow", 20),
        **engine_kwargs,
    )
    return Store(engine, keyring)


def sqlite_engine(
    url: str, *, synchronous: str = SQLITE_SYNCHRONOUS, **engine_kwargs: Any
) -> Engine:
    """A SQLite engine in WAL mode with foreign keys on and writers that queue."""
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        # Made here, the data directory is its user's alone: the database holds people's
        # addresses and password hashes, beside the secret key and the email outbox.
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        json_serializer=json_text,
        json_deserializer=json_value,
        hide_parameters=True,  # errors are logged: their text must not carry tokens or secrets
        connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
        pool_size=engine_kwargs.pop("pool_size", 8),
        max_overflow=engine_kwargs.pop("max_overflow", 16),
        **engine_kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Readers (`Store.read`) never take the write lock; writers take it up front.
        conn.exec_driver_sql("BEGIN" if conn.info.get("beacon_read") else "BEGIN IMMEDIATE")

    return engine
