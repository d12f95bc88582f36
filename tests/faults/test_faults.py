"""The fault harness (issue 17): Beacon scaled (its own PostgreSQL and Redis, two web and two
worker processes) under a steady stream of deliveries and page readers, while faults are
injected in turn; after each, from the store and the stand-ins, the invariants are checked
and printed as a table.

`make faults` runs every fault at full length (`BEACON_FAULTS=full`: Redis away 30 s, ...);
the normal suite runs a short version (fewer faults, shorter phases)."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import need
from tests.support import wait_for

from .cluster import FAULTS_POSTGRES, Cluster, summary
from .load import Load
from .replay import final_state, replay

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

FULL = os.environ.get("BEACON_FAULTS", "") == "full"
#: Seconds of load before each fault (the stream is steady within a second: the fault finds
#: evaluations, renders and notifications under way) and after it, and deliveries a second.
BEFORE = 4.0 if FULL else 2.0
STEADY = 8.0 if FULL else 2.0
RATE = 15.0 if FULL else 6.0
#: How long the backlog may take to drain after a fault before the row says so.
DRAIN_LIMIT = 300.0
#: The outbox lease the cluster runs with (BEACON_OUTBOX_LEASE_SECONDS, a user's setting):
#: a worker killed mid-batch, jobs lost with Redis and jobs cut off by PostgreSQL's crash
#: leave claimed rows that wait this long; at the default 60 s those waits were 140 s of
#: a 338 s run.
OUTBOX_LEASE = 10.0
#: Only the faults whose names contain this (e.g. `BEACON_FAULTS_ONLY=Redis`).
ONLY = os.environ.get("BEACON_FAULTS_ONLY", "")


@dataclass
class Row:
    fault: str
    acked: int
    stored: bool
    evaluated: bool
    state: bool
    replayed: str
    duplicate_incidents: int
    subscriber_steps: str
    pages: str
    drained_s: float
    final_s: float
    #: The fault's phases, in seconds: load before it, the fault, load after it, the check
    #: (the drain, the replay, the pages).
    phases: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    @property
    def ok(self) -> bool:
        return (
            self.stored
            and self.evaluated
            and self.state
            and self.replayed.startswith("ok")
            and self.duplicate_incidents == 0
            and self.subscriber_steps.startswith("ok")
            and self.pages.startswith("ok")
            and self.final_s <= 2.0
            and self.drained_s != float("inf")
        )


def check(cluster: Cluster, load: Load, fault: str, healed_at: float, directory: Path) -> Row:
    """The invariants after a fault, once the backlog has drained (`directory`: where the
    single-process replay keeps its store)."""
    drained = cluster.wait_drained(DRAIN_LIMIT)
    drained_s = time.monotonic() - healed_at
    if not drained:
        print(f"\n{fault}: not drained {DRAIN_LIMIT:.0f} s after the fault: {cluster.backlog()}")
    acked_ids = {int(i) for a in load.acked for i in a.ids}
    stored_ids = {r[0] for r in cluster.sql("SELECT id FROM alert_events")}
    unevaluated = cluster.sql("SELECT count(*) FROM alert_events WHERE evaluated_at IS NULL")
    statuses, open_titles = load.expected()
    got_statuses = dict(cluster.sql("SELECT key, status FROM services"))
    got_open = [r[0] for r in cluster.sql("SELECT title FROM incidents WHERE status <> 'resolved'")]
    state = got_statuses == statuses and set(got_open) == open_titles
    duplicates = sum(n - 1 for n in Counter(got_open).values() if n > 1)
    [(steps,)] = cluster.sql("SELECT count(*) FROM incident_updates WHERE deliver_notifications")
    # The webhook also gets component updates (as Statuspage sends them); the steps are
    # the incident envelopes.
    envelopes = [json.loads(body) for body in cluster.hook.accepted]
    hooks = sum(1 for e in envelopes if "incident" in e)
    components = len(envelopes) - hooks
    mails = len(cluster.sendgrid.accepted)
    same_twice = len(cluster.hook.accepted) - len(set(cluster.hook.accepted))
    same_twice += len(cluster.sendgrid.accepted) - len(set(cluster.sendgrid.accepted))
    # A person (the email subscriber) is never told an older state after a newer one: a
    # step whose turn came after a later step's is `superseded`, one that would repeat what
    # they were last told `unchanged` (workers/coalesce.py, even with coalescing off). So
    # each step is one delivery row that was sent once or finished so, and every mail sent
    # is one of those rows.
    [(sent, skipped, other)] = cluster.sql(
        "SELECT count(*) FILTER (WHERE d.status = 'sent'),"
        " count(*) FILTER (WHERE d.status IN ('superseded', 'unchanged')),"
        " count(*) FILTER (WHERE d.status NOT IN ('sent', 'superseded', 'unchanged'))"
        " FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id"
        " WHERE s.channel = 'email' AND d.dedup_key LIKE 'incident-update:%%'"
    )
    email_ok = sent + skipped == steps and other == 0 and mails == sent
    subscriber_steps = (
        f"{'ok' if hooks == steps and email_ok and same_twice == 0 else 'FAIL'} "
        f"{steps} steps: webhook {hooks} (+{components} component), email {mails}"
        f" (+{skipped} superseded or unchanged)"
    )
    replayed = _replayed(cluster, directory)
    readers = load.readers
    pages = (
        f"{'ok' if readers.failed == 0 else 'FAIL'} {readers.probes - readers.failed}/"
        f"{readers.probes}, slowest {readers.slowest * 1000:.0f} ms"
    )
    # The pages show the final state (every web process) how long after the drain.
    started = time.monotonic()

    def shown() -> bool:
        for web in cluster.webs:
            found = summary(web.url)
            if found is None:
                return False
            components = {c["name"]: c["status"] for c in found["components"]}
            want = {
                "Public API": _component(statuses["api"]),
                "Database": _component(statuses["db"]),
                "Website": _component(statuses["web"]),
            }
            if components != want or {i["name"] for i in found["incidents"]} != open_titles:
                return False
        return True

    try:
        wait_for(shown, 60, "the pages to show the final state", poll=0.1)
    except AssertionError:
        pass
    final_s = time.monotonic() - started if shown() else float("inf")
    return Row(
        fault=fault,
        acked=len(load.acked),
        stored=acked_ids <= stored_ids,
        evaluated=unevaluated == [(0,)],
        state=state,
        replayed=replayed,
        duplicate_incidents=duplicates,
        subscriber_steps=subscriber_steps,
        pages=pages,
        drained_s=round(drained_s, 1) if drained else float("inf"),
        final_s=round(final_s, 2),
    )


def _replayed(cluster: Cluster, directory: Path) -> str:
    """The cluster's services and incidents against a single-process replay of its stored
    event log (tests/faults/replay.py): "ok" and what was compared, or what differs."""
    began = time.monotonic()
    store = cluster.store()
    try:
        got = final_state(store)
        want = replay(store, cluster.config, directory)
    finally:
        store.dispose()
    differences = got.differences(want)
    if differences:
        return "FAIL " + "; ".join(differences)
    total = sum(got.incidents.values())
    took = time.monotonic() - began
    return f"ok {len(got.statuses)} services, {total} incidents ({got.open} open), {took:.1f} s"


def _component(status: str) -> str:
    return "major_outage" if status == "major_outage" else "operational"


def print_table(rows: list[Row]) -> None:
    head = (
        "fault",
        "acked",
        "stored",
        "evaluated",
        "state=model",
        "state=replay of the log",
        "dup incidents",
        "subscriber steps once",
        "pages answered",
        "drained after heal s",
        "final shown s",
        "took s (before+fault+after+check)",
        "ok",
    )
    lines = [head] + [
        (
            r.fault,
            str(r.acked),
            str(r.stored),
            str(r.evaluated),
            str(r.state),
            r.replayed,
            str(r.duplicate_incidents),
            r.subscriber_steps,
            r.pages,
            str(r.drained_s),
            str(r.final_s),
            f"{sum(r.phases):.0f} ({'+'.join(f'{p:.0f}' for p in r.phases)})",
            "PASS" if r.ok else "FAIL",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    print()
    for line in lines:
        print(" | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))


# --- faults -----------------------------------------------------------------------------


def _kill_web(cluster: Cluster, load: Load) -> None:
    cluster.webs[0].kill()
    time.sleep(STEADY)
    cluster.webs[0].start()


def _kill_worker(cluster: Cluster, load: Load) -> None:
    # Mid-batch: deliveries keep arriving, so the worker is evaluating or rendering.
    cluster.kill_worker(0)
    time.sleep(STEADY)
    cluster.start_worker(0)


def _redis_away(cluster: Cluster, load: Load) -> None:
    cluster.redis.stop()
    time.sleep(30 if FULL else 5)
    cluster.redis.start()


def _postgres_restart(cluster: Cluster, load: Load) -> None:
    cluster.pg.stop("immediate")  # a crash: no checkpoint, WAL replay at start
    time.sleep(2)
    cluster.pg.start()


def _sendgrid_slow_then_failing(cluster: Cluster, load: Load) -> None:
    cluster.sendgrid.delay = 3.0
    time.sleep(STEADY)
    cluster.sendgrid.delay = 0.0
    cluster.sendgrid.failing = True
    time.sleep(STEADY)
    cluster.sendgrid.failing = False


def _duplicates_out_of_order(cluster: Cluster, load: Load) -> None:
    load.duplicates, load.out_of_order = 0.5, 0.5
    time.sleep(STEADY)
    load.duplicates, load.out_of_order = 0.1, 0.1


def _clock_skew(cluster: Cluster, load: Load) -> None:
    load.skew = {"am1": timedelta(hours=1), "am2": -timedelta(minutes=37)}
    time.sleep(STEADY)


FAULTS: list[tuple[str, Callable[[Cluster, Load], None]]] = [
    ("duplicates and out-of-order", _duplicates_out_of_order),
]
if FULL:
    FAULTS += [
        ("kill -9 worker mid-batch", _kill_worker),
        ("kill -9 web process", _kill_web),
        ("Redis stopped 30 s", _redis_away),
        ("PostgreSQL restarted", _postgres_restart),
        ("SendGrid slow, then failing", _sendgrid_slow_then_failing),
        ("clock skew (+1 h, -37 min)", _clock_skew),
    ]


FAULTS = [(name, inject) for name, inject in FAULTS if ONLY in name]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    import shutil

    need(shutil.which("redis-server") is not None, "redis-server is not installed")
    made = Cluster(tmp_path, FAULTS_POSTGRES, coalescing_off=True, outbox_lease=OUTBOX_LEASE)
    try:
        began = time.monotonic()
        steps = made.start()
        parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in steps.items())
        print(f"\ncluster started in {time.monotonic() - began:.1f} s ({parts})")
        yield made
    finally:
        made.close()


def test_nothing_is_lost_doubled_or_stuck_under_faults(cluster: Cluster, tmp_path: Path) -> None:
    load = Load(cluster, rate=RATE)
    rows = []
    for name, inject in FAULTS:
        t0 = time.monotonic()
        load.readers = type(load.readers)()
        load.start()
        time.sleep(BEFORE)
        t1 = time.monotonic()
        inject(cluster, load)
        healed_at = time.monotonic()
        time.sleep(STEADY)
        load.stop()
        t2 = time.monotonic()
        rows.append(check(cluster, load, name, healed_at, tmp_path / f"replay-{len(rows) + 1}"))
        rows[-1].phases = (t1 - t0, healed_at - t1, t2 - healed_at, time.monotonic() - t2)
        print_table(rows[-1:])
    print_table(rows)
    print(f"faults took {sum(sum(r.phases) for r in rows):.0f} s in all")
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
