"""Rules throughput: events/s through evaluation with 10, 100 and 1,000 realistic rules over
200 services, in one process; and the time from an event stored by the intake to its
committed status (SQLite, embedded mode). Reported, never asserted.

    python bench/rules.py [--events N]

"Realistic" rules: one to five per service, split over four alert sources; each tests the
source, the service label and one or two of alertname (equality or `matches`), severity
(`in`) and a numeric label; a tenth say `continue`. Random events pick a service, source and
alert at random, so most match nothing (the share that matches is printed: about 10 % of
firing events at 1,000 rules); the like-for-like run builds every event from a rule's own
match, the alert-storm case where every firing event opens or joins an activation. The
grouped storm puts hundreds of distinct alerts into one activation (one incident), where
the cost of each further alert must not grow with the alerts already in it.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.world import ConfigWorld, world_from_config  # noqa: E402
from engine.activations import Machine, MemoryState  # noqa: E402
from engine.models import AlertEvent, EventStatus, Severity  # noqa: E402
from rules.runtime import RuleBook  # noqa: E402
from rules.validate import check  # noqa: E402

SOURCES = [("am", "alertmanager"), ("graf", "grafana"), ("kuma", "uptime-kuma"), ("dd", "datadog")]
SERVICES = [f"svc-{i:03d}" for i in range(200)]
ALERTS = ["HighLatency", "ErrorRate", "Down", "DiskFull", "CertExpiry", "QueueBacklog"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rules_text(count: int, rng: random.Random) -> str:
    lines = ["version: 1", "rules:"]
    for i in range(count):
        source = SOURCES[i % len(SOURCES)][0]
        service = SERVICES[(i * 7) % len(SERVICES)]
        alert = ALERTS[i % len(ALERTS)]
        match = [f"source: {source}", f"labels.service: {service}"]
        if rng.random() < 0.3:
            match.append(f'labels.alertname: {{matches: "^{alert}(Warning|Critical)?$"}}')
        else:
            match.append(f"labels.alertname: {alert}")
        if rng.random() < 0.5:
            match.append("severity: {in: [critical, high]}")
        if rng.random() < 0.2:
            match.append(f"labels.value: {{gte: {rng.randrange(50, 100)}}}")
        status = rng.choice(["degraded", "partial_outage", "major_outage"])
        lines += [
            f"  - id: r{i}",
            f"    match: {{{', '.join(match)}}}",
            f"    services: [{service}]",
            f"    continue: {'true' if rng.random() < 0.1 else 'false'}",
            f"    then: [{{set_status: {status}}}]",
        ]
    return "\n".join(lines) + "\n"


def events(count: int, rng: random.Random) -> list[AlertEvent]:
    result = []
    for i in range(count):
        source, source_type = rng.choice(SOURCES)
        at = T0 + timedelta(milliseconds=i)
        result.append(
            AlertEvent(
                id=str(i),
                source=source,
                source_type=source_type,
                dedup_key=f"a{rng.randrange(5000)}",
                status=EventStatus.FIRING if rng.random() < 0.6 else EventStatus.RESOLVED,
                severity=rng.choice([Severity.CRITICAL, Severity.HIGH, Severity.WARNING]),
                summary="bench",
                labels={
                    "service": rng.choice(SERVICES),
                    "alertname": rng.choice(ALERTS),
                    "value": str(rng.randrange(120)),
                    "instance": f"10.0.0.{rng.randrange(50)}:9100",
                },
                occurred_at=at,
                received_at=at,
            )
        )
    return result


def targeted_events(count: int, rule_count: int, rng: random.Random) -> list[AlertEvent]:
    """Events each built from one of the first `rule_count` rules' own match, so that 10
    rules and 1,000 rules face the same share of matching events (a like-for-like cost)."""
    result = []
    for i, event in enumerate(events(count, rng)):
        rule = rng.randrange(rule_count)
        source, source_type = SOURCES[rule % len(SOURCES)]
        labels = {
            **event.labels,
            "service": SERVICES[(rule * 7) % len(SERVICES)],
            "alertname": ALERTS[rule % len(ALERTS)],
            "value": "99",
        }
        result.append(
            event.model_copy(
                update={
                    "id": str(i),
                    "source": source,
                    "source_type": source_type,
                    "severity": Severity.CRITICAL,
                    "labels": labels,
                }
            )
        )
    return result


def world() -> ConfigWorld:
    return world_from_config(
        {
            "teams": [{"key": "bench"}],
            "services": [{"key": s} for s in SERVICES],
            "alert_sources": [{"key": k, "type": t} for k, t in SOURCES],
        },
        "bench",
    )


def bench_match(rule_count: int, n: int) -> tuple[float, float, float]:
    """Matching rate, matching + activations rate (in memory), and the share of firing
    events that match a rule."""
    rng = random.Random(rule_count)
    book = RuleBook(check({"bench.yaml": rules_text(rule_count, rng)}, None), rule_count)
    sample = [e for e in events(n, rng) if e.status == "firing"]
    share = sum(1 for e in sample if book.match(e)) / max(len(sample), 1)
    for event in sample[:2000]:  # compile the partitions first: steady state is measured
        book.match(event)
    start = time.perf_counter()
    for event in sample:
        book.match(event)
    match_rate = len(sample) / (time.perf_counter() - start)

    machine = Machine(MemoryState(), world(), {r: lr.rule for r, lr in book.rules.items()})
    evs = events(n, random.Random(rule_count + 1))
    start = time.perf_counter()
    for event in evs:
        matched = [m.rule for m in book.match(event)] if event.status == "firing" else []
        machine.on_event(event, matched, "bench")
    full_rate = len(evs) / (time.perf_counter() - start)
    return match_rate, full_rate, share


def _seeded_store(tmp: str, rule_count: int, extra: str = "") -> tuple[Any, Any, dict[str, int]]:
    """A SQLite store in `tmp` with 200 services, the four sources and `rule_count` rules
    (and the rules in `extra`) published; returns the store, a rules runtime and the
    sources' ids by key."""
    from engine import migrate, vault
    from engine.db import create_store
    from engine.settings import Settings
    from engine.tables import alert_sources, services, teams
    from workers.evaluate import publish_rules, rules_runtime

    store = create_store(Settings.from_env({"BEACON_DATA_DIR": tmp}))
    migrate.upgrade(store)
    with store.begin() as conn:
        team = conn.execute(teams.insert().values(key="bench").returning(teams.c.id)).scalar()
        for key in SERVICES:
            conn.execute(services.insert().values(team_id=team, key=key, name=key))
        source_ids = {
            key: conn.execute(
                alert_sources.insert()
                .values(
                    team_id=team,
                    key=key,
                    name=key,
                    type=kind,
                    key_digest=vault.of(conn).digest(f"k-{key}"),
                )
                .returning(alert_sources.c.id)
            ).scalar()
            for key, kind in SOURCES
        }
    text = rules_text(rule_count, random.Random(5)) + extra
    publish_rules(store, {"bench.yaml": text}, None)
    return store, rules_runtime(store), source_ids


def _event_row(event: AlertEvent, source_ids: dict[str, int], i: int) -> dict[str, Any]:
    return {
        "source_id": source_ids[event.source],
        "dedup_key": event.dedup_key,
        "status": str(event.status),
        "severity": str(event.severity),
        "labels": dict(event.labels),
        "links": [],
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "fingerprint": f"f{i}",
        "partition": event.source,
    }


def bench_commit(n: int) -> list[float]:
    """Intake-stored event -> evaluated and status committed, one event at a time."""
    from engine.tables import alert_events
    from workers.evaluate import evaluate_partition

    with tempfile.TemporaryDirectory() as tmp:
        store, runtime, source_ids = _seeded_store(tmp, 1000)
        times = []
        for i, event in enumerate(events(n, random.Random(9))):
            start = time.perf_counter()
            with store.begin() as conn:
                conn.execute(alert_events.insert().values(**_event_row(event, source_ids, i)))
            evaluate_partition(store, runtime, event.source)
            times.append(time.perf_counter() - start)
        store.dispose()
    return times


def bench_committed_throughput(rule_count: int, n: int, targeted: bool = False) -> float:
    """Events/s through evaluation with every intent committed: `n` stored events (adapter
    output, as the intake leaves them) drained by the evaluator in its batches. `targeted`:
    every firing event matches a rule, whatever the rule count."""
    from engine.tables import alert_events
    from workers.evaluate import evaluate_partition

    with tempfile.TemporaryDirectory() as tmp:
        store, runtime, source_ids = _seeded_store(tmp, rule_count)
        rng = random.Random(11)
        batch = targeted_events(n, rule_count, rng) if targeted else events(n, rng)
        with store.begin() as conn:
            conn.execute(
                alert_events.insert(), [_event_row(e, source_ids, i) for i, e in enumerate(batch)]
            )
        start = time.perf_counter()
        for key, _kind in SOURCES:
            evaluate_partition(store, runtime, key)
        elapsed = time.perf_counter() - start
        store.dispose()
    return n / elapsed


STORM_RULE = (
    "  - id: storm\n    match: {source: am, labels.alertname: Storm}\n"
    "    group_by: [labels.alertname]\n    services: [svc-000]\n"
    "    then: [{set_status: major_outage}]\n"
)


def storm_events(count: int, start: int = 0) -> list[AlertEvent]:
    """`count` distinct firing alerts that STORM_RULE groups into one activation."""
    result = []
    for i in range(start, start + count):
        at = T0 + timedelta(milliseconds=i)
        result.append(
            AlertEvent(
                id=str(i),
                source="am",
                source_type="alertmanager",
                dedup_key=f"storm-{i}",
                status=EventStatus.FIRING,
                severity=Severity.CRITICAL,
                summary="bench",
                labels={"alertname": "Storm", "service": "svc-000"},
                occurred_at=at,
                received_at=at,
            )
        )
    return result


def bench_grouped_storm(alerts: int, late: int = 100) -> tuple[float, float]:
    """An alert storm grouped into one incident: `alerts` distinct alerts join one
    activation (events/s through evaluation, committed), then `late` more events arrive
    one transaction each at the activation that holds them all (ms per event)."""
    from engine.tables import alert_events
    from workers.evaluate import evaluate_partition

    with tempfile.TemporaryDirectory() as tmp:
        store, runtime, source_ids = _seeded_store(tmp, 10, STORM_RULE)
        storm = storm_events(alerts)
        with store.begin() as conn:
            conn.execute(
                alert_events.insert(), [_event_row(e, source_ids, i) for i, e in enumerate(storm)]
            )
        start = time.perf_counter()
        evaluate_partition(store, runtime, "am")
        rate = alerts / (time.perf_counter() - start)
        elapsed = 0.0
        for i, event in enumerate(storm_events(late, alerts), alerts):
            with store.begin() as conn:
                conn.execute(alert_events.insert().values(**_event_row(event, source_ids, i)))
            start = time.perf_counter()
            evaluate_partition(store, runtime, "am")
            elapsed += time.perf_counter() - start
        store.dispose()
    return rate, elapsed / late * 1000


def bench_webhook(n: int) -> list[float] | None:
    """Webhook POST -> intake -> outbox -> embedded worker -> evaluated -> status committed,
    on the real app (SQLite, in-process queue). None when the intake route is not there."""
    import json

    import sqlalchemy as sa
    from starlette.testclient import TestClient

    from cli import wiring
    from cli.wiring import build_runtime
    from engine import migrate, vault
    from engine.runtime import uninstall
    from engine.settings import Settings
    from engine.tables import alert_sources, services, teams, utcnow
    from workers.evaluate import publish_rules

    payload = json.loads(
        (
            Path(__file__).resolve().parent.parent / "tests/rules/fixtures/firing_single.json"
        ).read_text()
    )
    with tempfile.TemporaryDirectory() as tmp:
        rt = build_runtime(Settings.from_env({"BEACON_DATA_DIR": tmp}))
        migrate.upgrade(rt.store)
        with rt.store.begin() as conn:
            team = conn.execute(teams.insert().values(key="bench").returning(teams.c.id)).scalar()
            svc = conn.execute(
                services.insert()
                .values(team_id=team, key="db", name="Database")
                .returning(services.c.id)
            ).scalar()
            conn.execute(
                alert_sources.insert().values(
                    team_id=team,
                    key="am",
                    name="AM",
                    type="alertmanager",
                    key_digest=vault.of(conn).digest("bench-am"),
                )
            )
        rules = rules_text(1000, random.Random(5)) + (
            "  - id: fire\n    match: {source: am, labels.alertname: Fire}\n"
            "    services: [db]\n    then: [{set_status: major_outage}]\n"
        )
        publish_rules(rt.store, {"bench.yaml": rules}, None)
        times: list[float] = []
        try:
            with TestClient(wiring.app(rt, background=True)) as client:
                for i in range(n):
                    firing = i % 2 == 0
                    now = utcnow().isoformat()
                    alert = dict(payload["alerts"][0], status="firing" if firing else "resolved")
                    alert["startsAt" if firing else "endsAt"] = now
                    body = dict(payload, status=alert["status"], alerts=[alert])
                    want = "major_outage" if firing else "operational"
                    start = time.perf_counter()
                    answer = client.post("/api/v1/events/bench-am", json=body)
                    if answer.status_code == 404:
                        return None
                    while True:
                        with rt.store.read() as conn:
                            got = conn.execute(
                                sa.select(services.c.status).where(services.c.id == svc)
                            ).scalar()
                        if got == want:
                            break
                        if time.perf_counter() - start > 30:
                            raise RuntimeError(f"status never became {want}: {answer.text}")
                        time.sleep(0.001)
                    times.append(time.perf_counter() - start)
        finally:
            uninstall()
            rt.close()
    return times


def bench_reloads(count: int = 50) -> tuple[float, float, float]:
    """RSS growth (MiB) over `count` reloads that each edit one rule, and the process's CPU
    share while idle for two seconds afterwards (durable_rules' own Host would add timer
    threads per version)."""
    import gc
    import resource

    from rules.runtime import RuleRuntime

    base = rules_text(1000, random.Random(11))
    runtime = RuleRuntime()
    sample = events(2000, random.Random(12))
    rss = 0
    for version in range(count + 1):
        if version == 1:  # the first version compiles everything; count the reloads after it
            gc.collect()
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        text = base.replace(
            "  - id: r0\n    match: {", f"  - id: r0\n    match: {{labels.v: x{version}, "
        )
        runtime.swap(check({"bench.yaml": text}, None), version)
        with runtime.using() as book:
            for event in sample:
                if event.status == EventStatus.FIRING:
                    book.match(event)
    gc.collect()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    cpu, wall = time.process_time(), time.perf_counter()
    time.sleep(2)
    idle = (time.process_time() - cpu) / (time.perf_counter() - wall)
    runtime.close()
    return grown, grown / count, idle * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--stored", type=int, default=5000, help="events for committed throughput")
    parser.add_argument("--webhooks", type=int, default=100)
    parser.add_argument(
        "--storm", type=int, nargs="*", default=[300, 1000], help="grouped storm sizes"
    )
    args = parser.parse_args()
    results = {}
    for count in (10, 100, 1000):
        match_rate, full_rate, share = bench_match(count, args.events)
        results[count] = match_rate
        print(
            f"{count:>5} rules: {match_rate:>8.0f} firing events/s matched, "
            f"{full_rate:>8.0f} events/s matched + activations (in memory); "
            f"{share:.1%} of firing events match"
        )
    print(f"per-event cost, 1,000 rules vs 10 rules: {results[10] / results[1000]:.2f}x")
    committed = {}
    for count in (10, 100, 1000):
        committed[count] = bench_committed_throughput(count, args.stored)
        print(
            f"{count:>5} rules: {committed[count]:>8.0f} events/s through evaluation, "
            f"intents committed (SQLite, {args.stored} stored events, 200 services)"
        )
    ratio = committed[10] / committed[1000]
    print(
        f"per-event cost committed, 1,000 rules vs 10 rules: {ratio:.2f}x "
        "(random events: with 10 rules most match nothing)"
    )
    alike = {}
    for count in (10, 1000):
        alike[count] = bench_committed_throughput(count, args.stored, targeted=True)
        print(
            f"{count:>5} rules: {alike[count]:>8.0f} events/s through evaluation, intents "
            "committed, every firing event matching a rule"
        )
    print(f"per-event cost like for like, 1,000 rules vs 10 rules: {alike[10] / alike[1000]:.2f}x")
    for size in args.storm:
        rate, late = bench_grouped_storm(size)
        print(
            f"alert storm of {size} alerts grouped into one activation: {rate:>6.0f} events/s "
            f"through evaluation, committed; then {late:.1f} ms per further alert (SQLite)"
        )
    times = sorted(bench_commit(args.commits))
    p50, p95 = times[len(times) // 2], times[int(len(times) * 0.95)]
    print(
        f"stored event -> evaluated, status committed (SQLite, 1,000 rules): "
        f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms over {len(times)} events"
    )
    grown, per_reload, idle = bench_reloads()
    print(
        f"50 reloads of 1,000 rules, each editing one rule: peak RSS +{grown:.1f} MiB "
        f"({per_reload * 1024:.0f} KiB per reload); "
        f"idle CPU afterwards {idle:.1f} %"
    )
    hooks = bench_webhook(args.webhooks) if args.webhooks else []
    if not hooks:
        print("webhook -> committed status: skipped (no intake route here, or --webhooks 0)")
    else:
        hooks.sort()
        p50, p95 = hooks[len(hooks) // 2], hooks[int(len(hooks) * 0.95)]
        print(
            f"webhook POST -> status committed (embedded, 1,000 rules): "
            f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms over {len(hooks)} webhooks"
        )


if __name__ == "__main__":
    main()
