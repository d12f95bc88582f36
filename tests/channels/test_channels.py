"""Each channel against a real server on loopback: success, temporary and permanent failure."""

from __future__ import annotations

import base64
import json
import time
from email import message_from_bytes
from typing import Any
from urllib.parse import parse_qs

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from adapters.channels import CHANNELS, ChannelError, Context, Message, get_channel
from engine.channels import CHANNEL_TARGET
from tests.conftest import free_port
from tests.support import RecordingServer, SmtpSink

MESSAGE = Message(subject="API down", text="The API is down.", payload={"incident": {"id": "x"}})


def _ctx(server: RecordingServer, **values: Any) -> Context:
    return Context(allow_private=True, **values)


def test_every_channel_kind_names_the_target_its_config_needs() -> None:
    # The registry says which kinds exist, engine.channels what each one's config needs: a
    # kind added to one and not the other would be stored without its `url` or `address`.
    assert set(CHANNEL_TARGET) == set(CHANNELS)
    assert set(CHANNEL_TARGET.values()) == {"url", "address"}


SECRET = "whsec_" + base64.b64encode(b"a secret of thirty-two bytes....").decode()


def test_a_webhook_is_signed_as_standard_webhooks_and_verifies_with_its_library(
    server: RecordingServer,
) -> None:
    message = Message(subject="", text="", payload={"incident": {"id": "x"}}, id="msg_42")
    for _attempt in range(2):
        get_channel("webhook").send(
            message, {"url": server.url + "/hook", "secret": SECRET}, _ctx(server)
        )
    first, second = server.requests
    body = first["body"]
    headers = first["headers"]
    assert isinstance(body, bytes) and isinstance(headers, dict)
    assert Webhook(SECRET).verify(body, headers) == {"incident": {"id": "x"}}
    assert headers["webhook-signature"].startswith("v1,")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    # The same id on every attempt: receivers deduplicate on it.
    assert headers["webhook-id"] == second["headers"]["webhook-id"] == "msg_42"  # type: ignore[index]
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"another secret").decode()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)


def test_a_malformed_signing_secret_is_a_permanent_failure(server: RecordingServer) -> None:
    with pytest.raises(ChannelError, match="signing secret is not valid") as caught:
        get_channel("webhook").send(MESSAGE, {"url": server.url, "secret": "whsec_"}, _ctx(server))
    assert caught.value.permanent and server.requests == []


def test_it_refuses_webhooks_to_private_addresses_unless_allowed(server: RecordingServer) -> None:
    webhook = get_channel("webhook")
    with pytest.raises(ChannelError, match="127.0.0.1, a loopback address") as caught:
        webhook.send(MESSAGE, {"url": server.url + "/x"}, Context(allow_private=False))
    assert caught.value.permanent
    assert server.requests == []
    webhook.send(MESSAGE, {"url": server.url + "/x"}, Context(allow_private=True))
    assert len(server.requests) == 1
    with pytest.raises(ChannelError, match="not an http"):
        webhook.send(MESSAGE, {"url": "file:///etc/passwd"}, Context(allow_private=True))


def test_a_5xx_or_429_is_temporary_and_a_404_permanent(server: RecordingServer) -> None:
    slack = get_channel("slack")
    for status, permanent in ((503, False), (429, False), (404, True)):
        server.answer(status, {"error": "x"})
        with pytest.raises(ChannelError) as caught:
            slack.send(MESSAGE, {"url": server.url}, _ctx(server))
        assert caught.value.permanent is permanent


def test_an_unreachable_host_is_a_temporary_error() -> None:
    with pytest.raises(ChannelError, match="could not reach") as caught:
        get_channel("slack").send(
            MESSAGE, {"url": f"http://127.0.0.1:{free_port()}"}, Context(allow_private=True)
        )
    assert not caught.value.permanent


def test_sendgrid_gets_the_mail_through_its_sdk(server: RecordingServer) -> None:
    server.answer(202, {})
    ctx = _ctx(
        server, sendgrid_api_key="SG.test", sendgrid_api_url=server.url, email_from="status@x.test"
    )
    get_channel("email").send(MESSAGE, {"address": "ops@acme.test"}, ctx)
    (request,) = server.requests
    assert request["path"] == "/v3/mail/send"
    headers = request["headers"]
    assert isinstance(headers, dict) and headers["Authorization"] == "Bearer SG.test"
    mail = json.loads(request["body"])  # type: ignore[arg-type]
    assert mail["personalizations"][0]["to"] == [{"email": "ops@acme.test"}]
    assert mail["subject"] == "API down"
    assert mail["from"] == {"email": "status@x.test"}


def test_a_sendgrid_400_is_permanent(server: RecordingServer) -> None:
    server.answer(400, {"errors": [{"message": "bad address"}]})
    ctx = _ctx(server, sendgrid_api_key="SG.test", sendgrid_api_url=server.url)
    with pytest.raises(ChannelError) as caught:
        get_channel("email").send(MESSAGE, {"address": "bounced@invalid.test"}, ctx)
    assert caught.value.permanent


def test_it_refuses_an_email_address_without_an_at_sign() -> None:
    ctx = Context(sendgrid_api_key="SG.test")
    with pytest.raises(ChannelError, match="not an email address") as caught:
        get_channel("email").send(MESSAGE, {"address": "nope"}, ctx)
    assert caught.value.permanent


def test_twilio_gets_the_sms_through_its_sdk(server: RecordingServer) -> None:
    server.answer(201, {"sid": "SM1", "status": "queued"})
    ctx = _ctx(
        server,
        twilio_account_sid="AC1",
        twilio_auth_token="tok",
        twilio_from="+15550001111",
        twilio_api_url=server.url,
    )
    get_channel("sms").send(
        Message(subject="", text="API down\u00a0now"), {"address": "+15552223333"}, ctx
    )
    (request,) = server.requests
    assert request["path"] == "/2010-04-01/Accounts/AC1/Messages.json"
    form = parse_qs(request["body"].decode())  # type: ignore[union-attr]
    assert form["To"] == ["+15552223333"] and form["From"] == ["+15550001111"]
    assert form["Body"] == ["API down now"]  # no non-breaking space: it would make the SMS UCS-2


def test_it_disables_on_twilio_invalid_number(server: RecordingServer) -> None:
    server.answer(400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400})
    ctx = _ctx(
        server,
        twilio_account_sid="AC1",
        twilio_auth_token="tok",
        twilio_from="+1",
        twilio_api_url=server.url,
    )
    with pytest.raises(ChannelError, match="invalid phone number") as caught:
        get_channel("sms").send(MESSAGE, {"address": "+0"}, ctx)
    assert caught.value.permanent


def test_smtp_delivers_to_a_real_smtp_server() -> None:
    with SmtpSink() as smtp:
        ctx = Context(smtp_url=smtp.url, email_from="status@x.test")
        get_channel("smtp").send(MESSAGE, {"address": "ops@acme.test"}, ctx)
    (raw,) = smtp.received
    mail = message_from_bytes(raw)
    assert mail["To"] == "ops@acme.test" and mail["Subject"] == "API down"
