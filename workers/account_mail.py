"""Account emails: invitation and password-reset links (outbox kind `accounts.email`,
payload `{"user_id", "kind"}`), sent through the email channel notifications use.

The job makes the link's token itself (engine.accounts.issue_token) just before sending, so
no usable token is ever stored: the outbox row names only the user and the kind, the
`account_tokens` row only the token's hash. A retried job makes a new token, which replaces
the one before (only the newest link works). A user deactivated meanwhile gets nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from adapters.channels import ChannelError, Message, get_channel
from engine import accounts
from engine.db import Store
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import users

from .notify import DeliveryRetry, channel_module, context

log = logging.getLogger(__name__)

_TEXTS = {
    accounts.INVITE: (
        "You are invited to Beacon",
        "You have been given an account on Beacon ({base}) as {email}.\n\n"
        "Choose your password here; the link works once, within 7 days:\n\n{link}\n",
    ),
    accounts.RESET: (
        "Reset your Beacon password",
        "Someone (we hope you) asked to reset the password of {email} on Beacon ({base}).\n\n"
        "Choose a new one here; the link works once, within an hour:\n\n{link}\n\n"
        "If it was not you, ignore this email: your password stays as it is.\n",
    ),
}


def send_account_email(settings: Settings, store: Store, user_id: int, kind: str) -> bool:
    """Make a `kind` link for `user_id` and email it; False when the user is not (or no
    longer) active. Raises `ChannelError` when the email could not be sent."""
    with store.begin() as conn:
        email = conn.execute(
            sa.select(users.c.email).where(users.c.id == user_id, users.c.active.is_(True))
        ).scalar()
        if email is None:
            return False
        token = accounts.issue_token(conn, user_id, kind)
    base = settings.base_url
    subject, text = _TEXTS[kind]
    link = f"{base}/account/{kind}/{token}"
    message = Message(subject=subject, text=text.format(base=base, email=email, link=link))
    ctx = context(settings)
    get_channel(channel_module("email", ctx)).send(message, {"address": email}, ctx)
    return True


def handle_account_email(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Send each payload's email; a temporary failure retries the batch, a permanent one is
    logged (the user can ask again)."""
    retry = []
    for payload in payloads:
        try:
            send_account_email(rt.settings, rt.store, int(payload["user_id"]), str(payload["kind"]))
        except ChannelError as exc:
            if not exc.permanent:
                retry.append(str(exc))
            else:
                log.warning("account email to user %s not sent: %s", payload["user_id"], exc)
    if retry:
        raise DeliveryRetry(f"account emails failed for now: {'; '.join(retry[:3])}")
