"""Without SendGrid, subscriber email goes through SMTP, with the same one-click headers."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from engine import incidents, migrate
from engine.security import new_token
from engine.tables import subscribers
from tests.conftest import free_port
from tests.support import RecordingServer
from workers.runtime import Runtime, uninstall

from .conftest import drain, make_site, settings_for


def test_subscriber_mail_goes_through_a_real_smtp_server(
    tmp_path: Path, server: RecordingServer
) -> None:
    from aiosmtpd.controller import Controller

    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            received.append(envelope.content)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    settings = settings_for(
        tmp_path, server, BEACON_SENDGRID_API_KEY="", BEACON_SMTP_URL=f"smtp://127.0.0.1:{port}"
    )
    rt = Runtime.build(settings)
    try:
        migrate.upgrade(rt.store)
        site = make_site(rt)
        with rt.store.begin() as conn:
            conn.execute(
                subscribers.insert().values(
                    page_id=site.page_id,
                    channel="email",
                    address="eve@example.com",
                    confirmed=True,
                    unsubscribe_token=new_token(),
                )
            )
            incidents.create(
                conn,
                team_id=site.team_id,
                title="API errors",
                message="Looking into it.",
                impacts={site.service_ids["api"]: "partial_outage"},
            )
        drain(rt)
    finally:
        controller.stop()
        rt.close()
        uninstall()
    (raw,) = received
    mail = message_from_bytes(raw, policy=policy.default)
    assert mail["To"] == "eve@example.com" and mail["Subject"] == "[Acme Status] API errors"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/p/acme/subscriptions/unsubscribe/" in mail["List-Unsubscribe"]
    kinds = [part.get_content_type() for part in mail.walk()]
    assert "text/plain" in kinds and "text/html" in kinds
    assert server.requests == []  # SendGrid was not asked
