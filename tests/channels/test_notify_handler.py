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
