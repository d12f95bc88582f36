"""Each channel against a real server on loopback: success, temporary and permanent failure."""

from __future__ import annotations

import hashlib
import hmac
import json
from email import message_from_bytes
from typing import Any
from urllib.parse import parse_qs

import pytest

from adapters.channels import ChannelError, Context, Message, get_channel
from tests.conftest import free_port
from tests.support import RecordingServer, SmtpSink

MESSAGE = Message(subject="API down", text="The API is down.", payload={"incident": {"id": "x"}})


def _ctx(server: RecordingServer, **values: Any) -> Context:
    return Context(allow_private=True, **values)


def test_a_webhook_is_signed_over_timestamp_and_body(server: RecordingServer) -> None:
    get_channel("webhook").send(
        MESSAGE, {"url": server.url + "/hook", "secret": "s3cret"}, _ctx(server)
    )
    (request,) = server.requests
    body = request["body"]
    assert isinstance(body, bytes) and json.loads(body) == {"incident": {"id": "x"}}
    headers = request["headers"]
    assert isinstance(headers, dict)
    stamp, v1 = (part.split("=", 1)[1] for part in headers["X-Beacon-Signature"].split(","))
    expected = hmac.new(b"s3cret", f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected)


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
