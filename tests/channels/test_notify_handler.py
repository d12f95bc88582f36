"""Team-channel notifications: one delivery per dedup key, recorded, retried or disabled."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import channels, deliveries
from tests.factories import team
from tests.support import RecordingServer
from workers.notify import DeliveryRetry, handle_notify_channel


@pytest.fixture
def rt(tmp_path: Path, make_runtime: Callable[..., Runtime]) -> Runtime:
    settings = Settings.from_env(
        {"BEACON_DATA_DIR": str(tmp_path), "BEACON_WEBHOOK_ALLOW_PRIVATE": "true"}
    )
    return make_runtime(settings)


def _channel(rt: Runtime, url: str) -> int:
    with rt.store.begin() as conn:
        team_id = team(conn, name="Platform")
        inserted = conn.execute(
            channels.insert().values(
                team_id=team_id, key="ops-slack", type="slack", config={"url": url}
            )
        ).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def _payload(channel_id: int, key: str = "activation:1:notify:0") -> dict[str, object]:
    return {
        "channel_id": channel_id,
        "dedup_key": key,
        "subject": "API down",
        "text": "The API is down.",
    }


def _delivery(rt: Runtime) -> sa.Row[tuple[object, ...]]:
    with rt.store.read() as conn:
        return conn.execute(sa.select(deliveries)).one()


def test_a_notification_is_sent_once_even_when_its_batch_runs_twice(
    rt: Runtime, server: RecordingServer
) -> None:
    channel_id = _channel(rt, server.url)
    handle_notify_channel(rt, [_payload(channel_id)])
    handle_notify_channel(rt, [_payload(channel_id)])
    assert len(server.requests) == 1
    delivery = _delivery(rt)
    assert delivery.status == "sent" and delivery.attempts == 1 and delivery.sent_at is not None


def test_a_temporary_failure_is_retried_and_then_sent(rt: Runtime, server: RecordingServer) -> None:
    channel_id = _channel(rt, server.url)
    server.answer(503, {"error": "busy"})
    with pytest.raises(DeliveryRetry, match="ops-slack"):
        handle_notify_channel(rt, [_payload(channel_id)])
    assert _delivery(rt).status == "pending"
    handle_notify_channel(rt, [_payload(channel_id)])
    delivery = _delivery(rt)
    assert delivery.status == "sent" and delivery.attempts == 2
    assert len(server.requests) == 2


def test_it_disables_the_channel_on_a_permanent_failure(
    rt: Runtime, server: RecordingServer
) -> None:
    channel_id = _channel(rt, server.url)
    server.answer(404, {"error": "no such hook"})
    handle_notify_channel(rt, [_payload(channel_id)])
    assert _delivery(rt).status == "failed"
    with rt.store.read() as conn:
        channel = conn.execute(sa.select(channels)).one()
    assert not channel.enabled and "404" in (channel.disabled_reason or "")
    handle_notify_channel(rt, [_payload(channel_id, key="another")])
    assert len(server.requests) == 1  # a disabled channel gets nothing more


def test_a_429s_retry_after_holds_the_next_try_that_long(
    rt: Runtime, server: RecordingServer
) -> None:
    """Slack and Discord answer 429 with how long to wait: retrying sooner only earns another
    429, so the outbox's backoff waits at least that long."""
    from datetime import timedelta

    from engine import outbox
    from engine.runtime import install
    from engine.tables import outbox as outbox_table
    from engine.tables import utcnow
    from workers.dispatch import dispatch_once

    channel_id = _channel(rt, server.url)
    server.answer(429, {"ok": False}, headers={"Retry-After": "120"})
    with rt.store.begin() as conn:
        outbox.emit(conn, "notify.channel", _payload(channel_id))
    install(rt)
    dispatch_once(rt)
    rt.queues.worker().work(burst=True, logging_level="WARNING")
    with rt.store.read() as conn:
        row = conn.execute(
            sa.select(outbox_table).where(outbox_table.c.kind == "notify.channel")
        ).one()
    free_at = row.claimed_at + outbox.LEASE
    assert free_at - utcnow() > timedelta(seconds=110), (free_at, row.error)
    assert "ops-slack" in (row.error or "") and _delivery(rt).status == "pending"
    assert dispatch_once(rt) == 0  # nothing is tried again before then
