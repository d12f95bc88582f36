"""The steady load of the fault harness: Alertmanager deliveries from two sources (with
duplicates, out-of-order resolves and tool clocks of their own) and page readers, recording
what was acknowledged and how the pages answered; and the model its invariants compare
the store with."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from .cluster import SOURCES, Cluster

SERVICES = ("api", "db", "web")


@dataclass
class Acked:
    alert: str
    status: str
    occurred_at: datetime
    ids: list[str]


@dataclass
class Alert:
    id: str
    source: str
    service: str
    firing: bool = False
    started: datetime | None = None
    ended: datetime | None = None


@dataclass
class Readers:
    probes: int = 0
    failed: int = 0
    slowest: float = 0.0


@dataclass
class Load:
    """Sends deliveries at about `rate` a second and reads the page, until stopped."""

    cluster: Cluster
    alerts: int = 12
    rate: float = 15.0
    duplicates: float = 0.1
    out_of_order: float = 0.1
    #: The tools' clocks against Beacon's, per source.
    skew: dict[str, timedelta] = field(default_factory=dict)
    acked: list[Acked] = field(default_factory=list)
    refused: int = 0
    readers: Readers = field(default_factory=Readers)

    def __post_init__(self) -> None:
        self._alerts = [
            Alert(f"a{n}", "am1" if n % 2 else "am2", SERVICES[n % 3]) for n in range(self.alerts)
        ]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._random = random.Random(17)
        self._next_web = 0

    def start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._send_loop, daemon=True),
            threading.Thread(target=self._read_loop, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    # --- deliveries ----------------------------------------------------------------------

    def _tool_now(self, source: str) -> datetime:
        return datetime.now(UTC) + self.skew.get(source, timedelta())

    def _send_loop(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                self._step(client)
                time.sleep(1 / self.rate)

    def _step(self, client: httpx.Client) -> None:
        alert = self._random.choice(self._alerts)
        now = self._tool_now(alert.source)
        if alert.firing:
            body = _payload(alert, "resolved", alert.started or now, now)
            status = "resolved"
        else:
            alert.started = now
            body = _payload(alert, "firing", now, None)
            status = "firing"
        alert.firing = not alert.firing
        if self._deliver(client, alert, status, now, body):
            if self._random.random() < self.duplicates:
                self._deliver(client, alert, status, now, body)  # a retry of the same
            if status == "resolved" and self._random.random() < self.out_of_order:
                # A firing from before this resolve arriving after it (a late retry).
                stale = now - timedelta(seconds=10)
                self._deliver(
                    client, alert, "firing", stale, _payload(alert, "firing", stale, None)
                )
        else:
            alert.firing = not alert.firing  # never acknowledged: the tool's state is as before

    def _deliver(
        self, client: httpx.Client, alert: Alert, status: str, at: datetime, body: dict[str, Any]
    ) -> bool:
        """POST to one web process, else the other (a load balancer's retry); True on 202."""
        webs = self.cluster.webs
        for attempt in range(2 * len(webs)):
            web = webs[(self._next_web + attempt) % len(webs)]
            try:
                answer = client.post(f"{web.url}/api/v1/events/{SOURCES[alert.source]}", json=body)
            except httpx.HTTPError:
                continue
            if answer.status_code == 202:
                self._next_web += 1
                self.acked.append(Acked(alert.id, status, at, answer.json()["events"]))
                return True
            if answer.status_code >= 500:
                continue
            self.refused += 1
            return False
        self.refused += 1
        return False

    # --- readers -------------------------------------------------------------------------

    def _read_loop(self) -> None:
        with httpx.Client(timeout=10) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                started = time.monotonic()
                ok = False
                for web in (self.cluster.webs[n % 2], self.cluster.webs[(n + 1) % 2]):
                    path = "/p/acme/" if n % 2 else "/p/acme/api/v2/summary.json"
                    try:
                        ok = client.get(web.url + path).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    if ok:
                        break
                took = time.monotonic() - started
                self.readers.probes += 1
                self.readers.failed += 0 if ok else 1
                self.readers.slowest = max(self.readers.slowest, took)
                time.sleep(0.05)

    # --- the model -----------------------------------------------------------------------

    def expected(self) -> tuple[dict[str, str], set[str]]:
        """Each service's status and the open incidents' titles that the acknowledged
        deliveries call for: an alert is in the state of its latest acknowledged event by
        the tool's clock (an older one arriving later changes nothing)."""
        latest: dict[str, Acked] = {}
        for acked in self.acked:
            seen = latest.get(acked.alert)
            if seen is None or acked.occurred_at > seen.occurred_at:
                latest[acked.alert] = acked
        firing = {a for a, acked in latest.items() if acked.status == "firing"}
        by_id = {a.id: a for a in self._alerts}
        statuses = {
            s: "major_outage" if any(by_id[a].service == s for a in firing) else "operational"
            for s in SERVICES
        }
        return statuses, {f"Down: {a}" for a in firing}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _payload(
    alert: Alert, status: str, started: datetime, ended: datetime | None
) -> dict[str, Any]:
    labels = {"alertname": "Down", "service": alert.service, "alert_id": alert.id}
    return {
        "version": "4",
        "status": status,
        "receiver": "beacon",
        "groupKey": f'{{}}:{{alert_id="{alert.id}"}}',
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": f"{alert.id} is down"},
                "startsAt": _iso(started),
                "endsAt": _iso(ended) if ended else "0001-01-01T00:00:00Z",
                "fingerprint": f"fp{alert.id}",
            }
        ],
    }
