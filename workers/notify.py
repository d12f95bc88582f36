"""Deliver notifications to team channels (a rule's `notify` action), each delivery recorded.

Outbox kind `notify.channel`, payload `{"channel_id", "dedup_key", "subject", "text",
"payload"}`. A delivery row is created once per `dedup_key`; it is sent only while it is
pending ("mark sending if pending"), so a retried batch or a second worker never sends twice.
A temporary failure puts it back to pending and raises, so the outbox retries the batch with
backoff; a permanent one marks it failed and disables the channel with the reason.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from adapters.channels import ChannelError, Context, Message, get_channel
from engine.channels import target as channel_target
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import channels, deliveries, utcnow

from .dispatch import Retry

log = logging.getLogger(__name__)

#: A delivery in `sending` whose lease was not renewed this long (its worker died mid-send)
#: is tried again; a run renews the lease of what it is sending.
SENDING_LEASE = timedelta(minutes=2)


class DeliveryRetry(Retry):
    """Some deliveries of the batch failed temporarily; the outbox retries the batch."""


def context(settings: Settings) -> Context:
    return Context(
        sendgrid_api_key=settings.sendgrid_api_key.get_secret_value(),
        sendgrid_api_url=settings.sendgrid_api_url,
        email_from=settings.email_from,
        smtp_url=settings.smtp_url.get_secret_value(),
        twilio_account_sid=settings.twilio_account_sid,
        twilio_auth_token=settings.twilio_auth_token.get_secret_value(),
        twilio_from=settings.twilio_from,
        twilio_api_url=settings.twilio_api_url,
        allow_private=settings.webhook_allow_private,
        outbound_deadline=settings.webhook_timeout,
        twilio_rate=settings.twilio_rate,
        webhook_concurrency=settings.webhook_concurrency,
        outbox_dir=str(settings.email_outbox) if settings.email_transport == "outbox" else "",
    )


def channel_module(kind: str, ctx: Context) -> str:
    """The channel module for a team channel's type (`email` goes through SendGrid when it
    is configured, else SMTP when that is, else, in embedded mode, to the outbox folder)."""
    if kind == "email":
        if ctx.sendgrid_api_key:
            return "email"
        return "email-outbox" if ctx.outbox_dir and not ctx.smtp_url else "smtp"
    return kind


def handle_notify_channel(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    ctx = context(rt.settings)
    retry = []
    waits = []
    for payload in payloads:
        try:
            deliver_to_channel(rt, payload, ctx)
        except DeliveryRetry as exc:
            retry.append(str(exc))
            waits.append(exc.retry_after or 0.0)
    if retry:
        raise DeliveryRetry("; ".join(retry), retry_after=max(waits) or None)


def insert_ignore(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert delivery rows, skipping those whose dedup key is already there."""
    if not rows:
        return
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(deliveries)
    # Parameters as a list (executemany: SQLAlchemy batches them into few statements), not
    # `.values(rows)`, which compiles one statement with a bind per value, 40 ms a row.
    conn.execute(insert.on_conflict_do_nothing(index_elements=["dedup_key"]), rows)


def claimable(now: datetime) -> sa.ColumnElement[bool]:
    """Deliveries a worker may take: pending and due (no `next_attempt_at`, or past it), or
    stuck in `sending` past the lease (their worker died mid-send)."""
    return sa.or_(
        sa.and_(
            deliveries.c.status == "pending",
            sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
        ),
        sa.and_(deliveries.c.status == "sending", deliveries.c.updated_at < now - SENDING_LEASE),
    )


def deliver_to_channel(rt: Runtime, payload: dict[str, Any], ctx: Context) -> None:
    """Send one notification to a team channel, at most once per dedup key."""
    now = utcnow()
    message = {k: payload.get(k) for k in ("subject", "text", "payload")}
    if payload.get("link_path"):
        # A rule's message links to its incident or page (engine.rule_messages).
        message["link"] = rt.settings.base_url.rstrip("/") + str(payload["link_path"])
    with rt.store.begin() as conn:
        insert_ignore(
            conn,
            [
                {
                    "dedup_key": payload["dedup_key"],
                    "channel_id": payload["channel_id"],
                    "kind": "channel",
                    "message": message,
                    "status": "pending",
                    "created_at": now,
                    "updated_at": now,
                },
            ],
        )
        claimed = conn.execute(
            deliveries.update()
            .where(deliveries.c.dedup_key == payload["dedup_key"])
            .where(claimable(now))
            .values(status="sending", attempts=deliveries.c.attempts + 1, updated_at=now)
        ).rowcount
        channel = conn.execute(
            sa.select(channels).where(channels.c.id == payload["channel_id"])
        ).first()
        channel_config = channel_target(conn, channel) if channel is not None else {}
    if not claimed:
        return  # already sent, failed for good, or being sent by another worker
    if channel is None or not channel.enabled:
        _finish(rt, payload["dedup_key"], "failed", "the channel is deleted or disabled")
        return
    try:
        module = get_channel(channel_module(channel.type, ctx))
        module.send(
            Message(
                subject=message["subject"] or "",
                text=message["text"] or "",
                payload=message["payload"] or {},
                link=message.get("link") or "",
                id="msg_" + hashlib.sha256(payload["dedup_key"].encode()).hexdigest()[:32],
            ),
            channel_config,
            ctx,
        )
    except ChannelError as exc:
        if exc.permanent:
            _finish(rt, payload["dedup_key"], "failed", str(exc))
            with rt.store.begin() as conn:
                conn.execute(
                    channels.update()
                    .where(channels.c.id == channel.id)
                    .values(enabled=False, disabled_reason=str(exc), updated_at=utcnow())
                )
            log.warning("channel %s disabled: %s", channel.key, exc)
            return
        _finish(rt, payload["dedup_key"], "pending", str(exc))
        raise DeliveryRetry(f"{channel.key}: {exc}", retry_after=exc.retry_after) from None
    _finish(rt, payload["dedup_key"], "sent", None)


def _finish(rt: Runtime, dedup_key: str, status: str, error: str | None) -> None:
    now = utcnow()
    with rt.store.begin() as conn:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.dedup_key == dedup_key, deliveries.c.status == "sending")
            .values(
                status=status,
                last_error=error,
                sent_at=now if status == "sent" else None,
                updated_at=now,
            )
        )
