"""Without SendGrid, subscriber email goes through SMTP, with the same one-click headers."""

from __future__ import annotations

from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path

from engine import incidents
from engine.runtime import Runtime
from engine.security import new_token
from engine.tables import subscribers
from tests.support import RecordingServer, SmtpSink

from .conftest import drain, make_site, settings_for


def test_subscriber_mail_goes_through_a_real_smtp_server(
    tmp_path: Path, server: RecordingServer, make_runtime: Callable[..., Runtime]
) -> None:
    with SmtpSink() as smtp:
        settings = settings_for(
            tmp_path, server, BEACON_SENDGRID_API_KEY="", BEACON_SMTP_URL=smtp.url
        )
        rt = make_runtime(settings)
        site = make_site(rt)
        with rt.store.begin() as conn:
            conn.execute(
                subscribers.insert().values(
                    page_id=site.page_id,
                    channel="email",
                    address="eve@example.com",
                    confirmed=True,
                    link_selector=new_token(16),
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
    (raw,) = smtp.received
    mail = message_from_bytes(raw, policy=policy.default)
    assert mail["To"] == "eve@example.com" and mail["Subject"] == "[Acme Status] API errors"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/p/acme/subscriptions/unsubscribe/" in mail["List-Unsubscribe"]
    kinds = [part.get_content_type() for part in mail.walk()]
    assert "text/plain" in kinds and "text/html" in kinds
    assert server.requests == []  # SendGrid was not asked
