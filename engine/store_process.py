"""Embedded mode's store process: the intake's group commits in a process of their own.

`beacon serve` on SQLite runs one web process, and everything in it shares one GIL: the
event loop, Granian's glue, the group commit's thread and the evaluators. The store process
takes the group commits (the insert, the outbox row, the fsync'd commit) to the machine's
other core: the web process makes each delivery's rows in its request (`events.prepared`),
its `EventWriter` batches them as before and hands each batch over a local socket, and the
store process commits it and answers with the events' ids. A request is still answered 202
only after its batch's commit returned, in whichever process it ran.

Both processes write the same SQLite file; they take turns through `engine.db.FileLock`,
never through SQLite's busy handler. The web process starts its store process through the
app's lifespan (`start`), and the store process ends with it (its socket closes; Linux's
parent-death signal covers a SIGKILL).
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from .db import Store
from .events import _SQLITE_PARAMS, Stored, Submission, ensure_purge_scheduled, store_batch
from .settings import Settings

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")
#: How long the web process waits for its store process to start.
START_SECONDS = 60


class StoreProcessGone(sqlite3.OperationalError):
    """The store process did not answer (it died): nothing of the batch is known stored."""


def _send(sock: socket.socket, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    parts = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _recv(sock: socket.socket) -> Any:
    (size,) = _HEADER.unpack(_recv_exactly(sock, _HEADER.size))
    return pickle.loads(_recv_exactly(sock, size))


# What crosses the socket for one submission: (source id, partition, received_at, touch,
# [(insert parameters, fingerprint, test), ...]). Plain values: pickled in C.
Wire = tuple[int, str, datetime, bool, list[tuple[tuple[Any, ...], str, bool]]]


def to_wire(submission: Submission) -> Wire:
    rows = submission.rows
    assert rows is not None, "the intake prepares its submissions' rows (events.prepared)"
    return (
        submission.source.id,
        submission.source.partition,
        submission.received_at,
        submission.touch,
        [(r[_SQLITE_PARAMS], r["fingerprint"], r["test"]) for r in rows],
    )


@dataclass(frozen=True)
class _Source:
    """What `store_batch` reads of a source."""

    id: int
    partition: str


def from_wire(wire: Wire) -> Submission:
    source_id, partition, received_at, touch, rows = wire
    return Submission(
        source=cast(Any, _Source(source_id, partition)),
        events=[None] * len(rows),  # type: ignore[list-item]
        received_at=received_at,
        touch=touch,
        rows=tuple(
            {
                "source_id": source_id,
                "fingerprint": fingerprint,
                "test": test,
                "partition": partition,
                _SQLITE_PARAMS: params,
            }
            for params, fingerprint, test in rows
        ),
    )


class StoreProcess:
    """The web process's end: starts the store process (`command`, to which it adds the
    ends of its sockets) and commits batches through it."""

    def __init__(
        self,
        command: list[str],
        settings: Settings,
        on_nudge: Callable[[], object],
        on_lost: Callable[[], object],
    ) -> None:
        self.command = command
        self.settings = settings
        #: Called when the store process finished a job (its dispatcher's follow-up work,
        #: renders and notifications, is this process's to dispatch).
        self.on_nudge = on_nudge
        #: Called when the store process ended without being asked to.
        self.on_lost = on_lost
        self._sock: socket.socket | None = None
        self._nudges: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = False
        #: Between `spawn` and `wait_ready`: the sockets not yet in use.
        self._starting: tuple[socket.socket, socket.socket] | None = None

    def start(self) -> None:
        """`spawn`, then `wait_ready`."""
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the store process (it then starts up while this process does)."""
        if self._proc is not None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        nudges, their_nudges = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds = (theirs.fileno(), their_nudges.fileno())
        try:
            self._proc = subprocess.Popen(
                [*self.command, str(fds[0]), str(fds[1]), str(os.getpid())], pass_fds=fds
            )
        finally:
            theirs.close()
            their_nudges.close()
        self._starting = (ours, nudges)
        _send(ours, self.settings)

    def wait_ready(self) -> None:
        """Until the store process says it is ready: a delivery must not wait out its
        start. Raises `StoreProcessGone` when it does not start."""
        if self._starting is None:
            return
        ours, nudges = self._starting
        self._starting = None
        assert self._proc is not None
        ours.settimeout(START_SECONDS)
        try:
            if _recv(ours) != "ready":
                raise EOFError("no ready")
        except (OSError, EOFError) as exc:
            ours.close()
            nudges.close()
            self._proc.kill()
            self._proc.wait()
            raise StoreProcessGone(f"the store process did not start: {exc!r}") from None
        ours.settimeout(None)
        self._sock = ours
        self._nudges = nudges
        threading.Thread(target=self._listen, name="beacon-store-nudges", daemon=True).start()

    def _listen(self) -> None:
        assert self._nudges is not None
        while True:
            try:
                data = self._nudges.recv(4096)
            except OSError:
                data = b""
            if not data:
                break
            self.on_nudge()
        if not self._stopping:
            code = self._proc.wait() if self._proc else None
            log.error("the store process ended (exit code %s)", code)
            self.on_lost()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def write(self, submissions: list[Submission]) -> tuple[list[list[Stored]], bool]:
        """Commit `submissions` in one transaction in the store process; their events'
        places, and False: the store process dispatches their evaluation itself. Raises
        what the commit raised (as `sqlite3.OperationalError`), or `StoreProcessGone`."""
        wire = [to_wire(s) for s in submissions]
        with self._lock:
            if self._sock is None:
                raise StoreProcessGone("the store process is not running")
            try:
                _send(self._sock, wire)
                answer = _recv(self._sock)
            except (OSError, EOFError) as exc:
                raise StoreProcessGone(f"the store process is gone: {exc!r}") from None
        if answer[0] == "error":
            raise sqlite3.OperationalError(f"store process: {answer[1]}")
        return [[Stored(i, d) for i, d in one] for one in answer[1]], False

    def stop(self, timeout: float = 10) -> None:
        self._stopping = True
        with self._lock:
            if self._sock is not None:
                self._sock.close()  # the store process reads EOF and exits
                self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._nudges is not None:
            self._nudges.close()
            self._nudges = None
        if self._starting is not None:
            for sock in self._starting:
                sock.close()
            self._starting = None


def serve(sock: socket.socket, store: Store, on_emit: Callable[[], object]) -> None:
    """The store process's loop: a batch in, its commit, the answer out, until EOF;
    `on_emit` after a commit that wrote an `evaluate` row."""
    purge_scheduled = False
    while True:
        try:
            wire = _recv(sock)
        except (EOFError, OSError):
            return
        try:
            with store.begin(urgent=True) as conn:
                batch = store_batch(conn, [from_wire(w) for w in wire])
                if not purge_scheduled:
                    ensure_purge_scheduled(conn)
            purge_scheduled = True
            if batch.emitted:
                on_emit()
            answer: Any = (
                "ok",
                [[(s.id, s.duplicate) for s in one] for one in batch.results],
                batch.emitted,
            )
        except Exception as exc:  # the web process answers its requests with it
            log.warning("group commit failed in the store process: %r", exc)
            answer = ("error", repr(exc))
        try:
            _send(sock, answer)
        except OSError:
            return


def _die_with(parent: int) -> None:
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


@dataclass
class Child:
    """The store process's side: its settings and its two sockets."""

    settings: Settings
    commits: socket.socket
    nudges: socket.socket

    @classmethod
    def attach(cls, argv: list[str]) -> Child:
        """From the arguments `StoreProcess.start` added: the sockets, then the settings
        the web process sends first."""
        commits, nudges, parent = (int(a) for a in argv[-3:])
        _die_with(parent)
        # Ctrl-C reaches the whole process group: the web process ends this one.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sock = socket.socket(fileno=commits)
        settings = _recv(sock)
        return cls(settings, sock, socket.socket(fileno=nudges))

    def ready(self) -> None:
        _send(self.commits, "ready")

    def forward(self, worked: threading.Event) -> None:
        """Tell the web process each time `worked` is set (in a thread of its own)."""

        def run() -> None:
            while True:
                worked.wait()
                worked.clear()
                try:
                    self.nudges.send(b"n")
                except OSError:
                    return

        threading.Thread(target=run, name="beacon-store-nudge", daemon=True).start()
