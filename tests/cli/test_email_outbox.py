"""Embedded mode without an email provider (issue 19, item 2): emails are kept as `.eml`
files in `beacon-data/outbox/` and in the log, start-up says so, and the visitor is told
what really happened. A link found there works."""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from adapters.channels import Message, get_channel
from engine.db import create_store
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import subscribers
from pages.app import create_app
from tests.conftest import REDIS_URL
from tests.subscriptions.conftest import make_site
from tests.support import beacon, beacon_env, serve
from workers.notify import channel_module, context

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def _wait_for_eml(folder: Path, timeout: float = 30) -> Path:
    # Waiting for the embedded worker, not timing it: the deadline only bounds a broken run.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob("*.eml")) if folder.is_dir() else []
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no .eml file appeared in {folder}")


@pytest.mark.e2e
def test_a_subscriber_confirms_with_the_link_from_the_outbox_and_the_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    applied = beacon(["apply", "examples/beacon.yaml"], beacon_env(data))
    assert applied.returncode == 0, applied.stderr
    log = tmp_path / "serve.log"
    with serve(data, log_path=log) as base:
        started = log.read_text()
        assert "Email: no provider is set" in started and str(data / "outbox") in started
        page = httpx.post(
            f"{base}/p/northwind/subscribe",
            data={"channel": "email", "address": "eve@example.com"},
            headers=BROWSER,
            timeout=10,
        )
        assert page.status_code == 202
        # Never "Check your inbox": nothing will arrive there.
        assert "inbox" not in page.text and "cannot send email yet" in page.text
        eml = _wait_for_eml(data / "outbox")
        mail = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        assert mail["To"] == "eve@example.com"
        body = mail.get_body(preferencelist=("plain",))
        assert body is not None
        found = re.search(r"https?://\S+/subscriptions/confirm/[\w-]+", body.get_content())
        assert found, body.get_content()
        link = found.group(0)
        logged = log.read_text()
        assert link in logged and str(eml) in logged
        assert "Traceback" not in logged
        shown = httpx.get(link, timeout=10)
        assert shown.status_code == 200 and "Confirm subscription" in shown.text
        confirmed = httpx.post(link, timeout=10)
        assert confirmed.status_code == 200 and "Subscription confirmed" in confirmed.text
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data)}))
    try:
        with store.read() as conn:
            row = conn.execute(
                sa.select(subscribers.c.confirmed, subscribers.c.disabled_reason).where(
                    subscribers.c.address == "eve@example.com"
                )
            ).one()
        assert row.confirmed and row.disabled_reason is None
    finally:
        store.dispose()


def test_email_goes_to_a_provider_when_one_is_set_else_to_the_outbox_in_embedded_mode(
    tmp_path: Path,
) -> None:
    def module(env: dict[str, str]) -> str:
        settings = Settings.from_env({"BEACON_DATA_DIR": str(tmp_path), **env})
        return channel_module("email", context(settings))

    assert module({}) == "email-outbox"
    assert module({"BEACON_SENDGRID_API_KEY": "SG.x"}) == "email"
    assert module({"BEACON_SMTP_URL": "smtp://127.0.0.1:2525"}) == "smtp"
    scaled = {"BEACON_REDIS_URL": REDIS_URL, "BEACON_SECRET_KEY": "k" * 40}
    assert module(scaled) == "smtp"  # which says no provider is set, permanently


def test_the_outbox_keeps_each_message_as_an_eml_file_and_logs_its_text(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = context(settings)
    outbox = get_channel(channel_module("email", ctx))
    message = Message(subject="Hello", text="Follow https://status.test/x/1", html="<p>Hi</p>")
    with caplog.at_level("WARNING", "beacon.email"):
        outbox.send(message, {"address": "a@example.com"}, ctx)
        outbox.send(message, {"address": "b@example.com"}, ctx)
    files = sorted(settings.email_outbox.glob("*.eml"))
    assert len(files) == 2 and not list(settings.email_outbox.glob("*.tmp"))
    mail = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert mail["Subject"] == "Hello" and mail["X-Beacon-Outbox"].startswith("not sent")
    assert "https://status.test/x/1" in caplog.text and "a@example.com" in caplog.text


def test_an_address_with_a_line_break_never_reaches_the_outbox(settings: Settings) -> None:
    from adapters.channels import ChannelError

    ctx = context(settings)
    with pytest.raises(ChannelError) as refused:
        get_channel("email-outbox").send(
            Message(subject="s", text="t"), {"address": "a@x.test\nBcc: b@x.test"}, ctx
        )
    assert refused.value.permanent
    assert not settings.email_outbox.exists()


def test_the_subscribe_answer_says_the_email_was_kept_not_sent(runtime: Runtime) -> None:
    from starlette.testclient import TestClient

    make_site(runtime)
    with TestClient(create_app(runtime)) as client:
        answer = client.post(
            "/p/acme/subscribe", json={"channel": "email", "address": "eve@example.com"}
        )
    assert answer.status_code == 202
    assert "cannot send email yet" in answer.json()["message"]


def test_scaled_mode_without_a_provider_refuses_email_subscriptions(
    tmp_path: Path, redis_prefix: str, make_runtime: Callable[..., Runtime]
) -> None:
    from starlette.testclient import TestClient

    settings = Settings.from_env(
        {
            "BEACON_DATA_DIR": str(tmp_path / "data"),
            "BEACON_REDIS_URL": REDIS_URL,
            "BEACON_REDIS_PREFIX": redis_prefix,
            "BEACON_SECRET_KEY": "s" * 40,
        }
    )
    rt = make_runtime(settings)
    make_site(rt)
    with TestClient(create_app(rt)) as client:
        answer = client.post(
            "/p/acme/subscribe", json={"channel": "email", "address": "eve@example.com"}
        )
        assert answer.status_code == 422
        assert "cannot send email" in answer.json()["error"]["message"]
        webhook = client.post(
            "/p/acme/subscribe", json={"channel": "webhook", "address": "https://example.com/h"}
        )
        assert webhook.status_code == 201


def test_without_twilio_sms_subscriptions_are_refused_not_promised(runtime: Runtime) -> None:
    from starlette.testclient import TestClient

    make_site(runtime)
    with TestClient(create_app(runtime)) as client:
        answer = client.post(
            "/p/acme/subscribe", json={"channel": "sms", "address": "+4915112345678"}
        )
        page = client.post(
            "/p/acme/subscribe",
            data={"channel": "sms", "address": "+4915112345678"},
            headers=BROWSER,
        )
    assert answer.status_code == 422
    assert "cannot send text messages" in answer.json()["error"]["message"]
    assert page.status_code == 422 and "Check your phone" not in page.text


def test_the_data_directory_and_the_outbox_are_the_operators_alone(tmp_path: Path) -> None:
    """The data directory holds the database (people's addresses, password hashes) and the
    outbox, whose messages carry live account and subscriber links (a password reset:
    anyone reading it takes the account over). Made by Beacon, it is readable by its own
    user only, whatever the umask, as `secret_key` already was; so are the outbox's files."""
    data = tmp_path / "fresh" / "data"
    env = beacon_env(data)
    upgraded = beacon(["db", "upgrade"], env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert data.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "fresh").stat().st_mode & 0o077 != 0  # a parent is left as it was

    settings = Settings.from_env(env)
    ctx = context(settings)
    outbox = get_channel(channel_module("email", ctx))
    message = Message(subject="Reset", text="Choose a password: https://status.test/account/x")
    outbox.send(message, {"address": "a@example.com"}, ctx)
    [kept] = settings.email_outbox.glob("*.eml")
    assert settings.email_outbox.stat().st_mode & 0o077 == 0
    assert kept.stat().st_mode & 0o077 == 0
