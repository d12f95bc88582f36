"""SQLite's one-writer lock in a process: the intake's group commit goes ahead of
background writers (`engine.db.WriteLock`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from engine.db import WriteLock
from tests.support import wait_for


def _until(condition: Callable[[], bool]) -> None:
    wait_for(condition, 5, "the other thread", poll=0.001)


def _thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


@pytest.fixture(autouse=True)
def _patient(monkeypatch):
    # Ordering tests must not depend on how fast a loaded machine schedules threads; the
    # hold-back test sets its own.
    monkeypatch.setattr(WriteLock, "HOLD_BACK", 60.0)


def test_an_urgent_writer_goes_ahead_of_a_background_writer_waiting_too():
    lock = WriteLock()
    order: list[str] = []
    assert lock.acquire(5)

    def take(name: str, urgent: bool) -> None:
        assert lock.acquire(5, urgent)
        order.append(name)
        lock.release()

    # The background writer waits first, and is first to be woken.
    background = _thread(lambda: take("evaluator", False))
    _until(lambda: len(lock._cond._waiters) == 1)  # type: ignore[attr-defined]
    urgent = _thread(lambda: take("intake", True))
    _until(lambda: lock._urgent_waiting == 1 and len(lock._cond._waiters) == 2)  # type: ignore[attr-defined]
    lock.release()
    urgent.join(5)
    background.join(5)
    assert order == ["intake", "evaluator"]


def test_a_background_writer_cannot_take_the_lock_straight_back_while_an_urgent_one_waits():
    lock = WriteLock()
    order: list[str] = []
    holding = threading.Event()

    def background() -> None:
        assert lock.acquire(5)
        holding.set()
        _until(lambda: lock._urgent_waiting == 1)
        lock.release()
        assert lock.acquire(5)  # its next transaction
        order.append("evaluator again")
        lock.release()

    def intake() -> None:
        assert lock.acquire(5, urgent=True)
        order.append("intake")
        lock.release()

    first = _thread(background)
    holding.wait(5)
    second = _thread(intake)
    first.join(5)
    second.join(5)
    assert order == ["intake", "evaluator again"]


def test_the_lock_is_reentrant_and_free_again_after_the_last_release():
    lock = WriteLock()
    assert lock.acquire(5)
    assert lock.acquire(5, urgent=True)
    lock.release()
    other: list[bool] = []
    _thread(lambda: other.append(lock.acquire(0.05))).join(5)
    assert other == [False]  # still held once
    lock.release()
    _thread(lambda: other.append(lock.acquire(0.05))).join(5)
    assert other == [False, True]


def test_a_writer_that_waits_too_long_gives_up_and_leaves_the_lock_usable():
    lock = WriteLock()
    assert lock.acquire(5)
    results: list[bool] = []
    _thread(lambda: results.append(lock.acquire(0.05, urgent=True))).join(5)
    assert results == [False]
    assert lock._urgent_waiting == 0  # a background writer is not held back by it
    lock.release()
    _thread(lambda: results.append(lock.acquire(0.05))).join(5)
    assert results == [False, True]


def test_only_the_holder_releases():
    lock = WriteLock()
    with pytest.raises(RuntimeError):
        lock.release()
    assert lock.acquire(5)
    errors: list[BaseException] = []

    def release() -> None:
        try:
            lock.release()
        except RuntimeError as exc:
            errors.append(exc)

    _thread(release).join(5)
    assert len(errors) == 1
    lock.release()


def test_a_background_writer_is_held_back_only_so_long(monkeypatch):
    # Under a flood of deliveries the group commit is waiting nearly all the time;
    # evaluation still gets its turn once it has waited HOLD_BACK.
    monkeypatch.setattr(WriteLock, "HOLD_BACK", 0.05)
    lock = WriteLock()
    lock._urgent_waiting = 1  # an urgent writer that is always about to come back
    results: list[bool] = []
    _thread(lambda: results.append(lock.acquire(0.01))).join(5)
    assert results == [False]  # shorter than its patience: still held back
    _thread(lambda: results.append(lock.acquire(5))).join(5)
    assert results == [False, True]


def test_an_overdue_background_writer_goes_ahead_of_an_urgent_one_that_keeps_coming_back(
    monkeypatch,
):
    monkeypatch.setattr(WriteLock, "HOLD_BACK", 0.05)
    lock = WriteLock()
    flooding = threading.Event()
    flooding.set()
    over = threading.Event()
    commits = [0]

    def flood() -> None:
        # The group commit under a flood: it takes the lock again as soon as it let go.
        deadline = time.monotonic() + 5
        while flooding.is_set() and time.monotonic() < deadline:
            assert lock.acquire(5, urgent=True)
            commits[0] += 1
            time.sleep(0.001)  # its commit
            lock.release()
        over.set()

    flooder = _thread(flood)
    _until(lambda: commits[0] > 10)
    got: list[bool] = []

    def background() -> None:
        got.append(lock.acquire(5))
        got.append(not over.is_set())  # taken while the flood went on
        lock.release()

    _thread(background).join(6)
    flooding.clear()
    flooder.join(6)
    assert got == [True, True]


class _Interrupted(Exception):
    """Stands for an exception raised into a thread from outside (RQ's job timeout)."""


def test_an_exception_right_after_the_lock_is_taken_does_not_keep_it(tmp_path):
    from engine.db import create_store
    from engine.settings import Settings

    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(tmp_path)}))
    lock = store._write_lock
    assert isinstance(lock, WriteLock)
    taken = lock.acquire

    def acquire_then_interrupted(timeout: float, urgent: bool = False) -> bool:
        taken(timeout, urgent)
        raise _Interrupted

    def interrupted_begin() -> None:
        lock.acquire = acquire_then_interrupted  # type: ignore[method-assign]
        try:
            with pytest.raises(_Interrupted), store.begin():
                pass
        finally:
            lock.acquire = taken  # type: ignore[method-assign]

    interrupted_begin()
    assert lock.held() == 0
    others: list[bool] = []

    def other() -> None:
        others.append(lock.acquire(0.5))
        lock.release()

    _thread(other).join(5)
    assert others == [True]
    # Nested: the outer transaction's hold survives an inner one's interruption.
    with store.begin():
        interrupted_begin()
        assert lock.held() == 1
    assert lock.held() == 0
    store.dispose()
