"""Loopback stand-ins for SendGrid's and Twilio's APIs that check requests as the real ones do
(authentication, required fields, SendGrid's limit of 1,000 personalizations) and can
answer 429 with `Retry-After`, 5xx, or slowly. Used by tests and by `bench/fanout.py`.

What is checked follows the providers' reference documentation: SendGrid v3 `POST
/v3/mail/send` (202 with an empty body and `X-Message-Id`; 400/401 with `{"errors":
[{"message", "field", "help"}]}`); Twilio `POST /2010-04-01/Accounts/{AccountSid}/
Messages.json` (HTTP basic auth with the account SID and auth token; form fields `To`,
`From`, `Body`; 201 with the message resource; errors as `{"code", "message",
"more_info", "status"}`).
"""

# The providers' error messages are quoted whole, as they answer them.
# ruff: noqa: E501

from __future__ import annotations

import base64
import http.server
import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

MAX_PERSONALIZATIONS = 1000
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True


class StandIn:
    """Shared machinery: a threaded HTTP server on 127.0.0.1, failure injection, counters."""

    def __init__(
        self, *, fail_rate: float = 0.0, fail_first: int = 0, delay: float = 0.0, seed: int = 7
    ) -> None:
        #: Share of requests answered 429 (with Retry-After) or 503, half each.
        self.fail_rate = fail_rate
        #: The first this many requests fail whatever the rate: 429, 503, 429 ...
        self.fail_first = fail_first
        #: Seconds before each answer (a slow provider).
        self.delay = delay
        self.retry_after = "1"
        self._random = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = 0
        self.failed = 0
        #: Monotonic time of the last accepted message.
        self.last_accepted = 0.0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if outer.delay:
                    time.sleep(outer.delay)
                status, headers, answer = outer._answer(self.path, dict(self.headers), body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> StandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _answer(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.requests += 1
            roll = self._random.random()
            scripted = self.requests <= self.fail_first
            if roll < self.fail_rate or scripted:
                self.failed += 1
                # Half each, by the roll; scripted failures alternate, a 429 first.
                throttled = self.requests % 2 == 1 if scripted else roll < self.fail_rate / 2
            else:
                throttled = None
        if throttled is True:
            return 429, {"Retry-After": self.retry_after}, self._error(429, "too many requests")
        if throttled is False:
            return 503, {}, self._error(503, "service unavailable")
        return self.handle(path, headers, body)

    def handle(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def _error(self, status: int, message: str) -> bytes:
        raise NotImplementedError


class SendGrid(StandIn):
    """SendGrid's v3 mail send. `accepted` counts messages per recipient address; `mails`
    keeps each accepted request's JSON (unless `keep_mails=False`, for benchmarks)."""

    def __init__(self, api_key: str = "SG.test", *, keep_mails: bool = True, **kwargs: Any) -> None:
        self.api_key = api_key
        self.keep_mails = keep_mails
        self.accepted: Counter[str] = Counter()
        self.mails: list[dict[str, Any]] = []
        super().__init__(**kwargs)

    def _error(self, status: int, message: str, field: str | None = None) -> bytes:
        return json.dumps({"errors": [{"message": message, "field": field, "help": None}]}).encode()

    def handle(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if path != "/v3/mail/send":
            return 404, {}, self._error(404, "not found")
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            return (
                401,
                {},
                self._error(
                    401, "The provided authorization grant is invalid, expired, or revoked"
                ),
            )
        try:
            mail = json.loads(body)
        except ValueError:
            return 400, {}, self._error(400, "Bad Request", None)
        problem = _sendgrid_problem(mail)
        if problem is not None:
            return 400, {}, self._error(400, problem[1], problem[0])
        recipients = [to["email"].lower() for p in mail["personalizations"] for to in p["to"]]
        with self.lock:
            self.accepted.update(recipients)
            if self.keep_mails:
                self.mails.append(mail)
            self.last_accepted = time.monotonic()
        return 202, {"X-Message-Id": uuid.uuid4().hex}, b""

    def rendered(self) -> list[tuple[str, str, str]]:
        """Each accepted recipient's `(address, subject, text)`, substitutions applied as
        SendGrid applies them."""
        out = []
        for mail in self.mails:
            text = next(c["value"] for c in mail["content"] if c["type"] == "text/plain")
            for p in mail["personalizations"]:
                subject = p.get("subject", mail.get("subject", ""))
                body = text
                for key, value in (p.get("substitutions") or {}).items():
                    body = body.replace(key, value)
                    subject = subject.replace(key, value)
                out.extend((to["email"], subject, body) for to in p["to"])
        return out


def _sendgrid_problem(mail: Any) -> tuple[str | None, str] | None:
    """(field, message) of the first thing SendGrid would refuse, or None."""
    if not isinstance(mail, dict):
        return None, "Bad Request"
    personalizations = mail.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return (
            "personalizations",
            "The personalizations field is required and must have at least one personalization.",
        )
    if len(personalizations) > MAX_PERSONALIZATIONS:
        return (
            "personalizations",
            "You may not have more than 1000 personalizations per API request.",
        )
    for n, p in enumerate(personalizations):
        to = p.get("to") if isinstance(p, dict) else None
        if not isinstance(to, list) or not to:
            return (
                f"personalizations.{n}.to",
                "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
            )
        if any(not isinstance(t, dict) or "@" not in str(t.get("email", "")) for t in to):
            return f"personalizations.{n}.to", "Does not contain a valid address."
        if not mail.get("subject") and not p.get("subject"):
            return (
                "subject",
                "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
            )
        subs = p.get("substitutions") or {}
        if len(json.dumps(subs)) > 10000:
            return (
                f"personalizations.{n}.substitutions",
                "The total size of your substitutions must be less than 10000 bytes per personalization object.",
            )
    sender = mail.get("from")
    if not isinstance(sender, dict) or "@" not in str(sender.get("email", "")):
        return "from.email", "The from email does not contain a valid address."
    content = mail.get("content")
    if not mail.get("template_id"):
        if not isinstance(content, list) or not content:
            return (
                "content",
                "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block.",
            )
        if any(not c.get("value") for c in content):
            return (
                "content.0.value",
                "The content value must be a string at least one character in length.",
            )
        types = [c.get("type") for c in content]
        if "text/plain" in types and types[0] != "text/plain":
            return (
                "content.0.type",
                "If present, text/plain must be first, followed by text/html, followed by any other content.",
            )
    return None


class Twilio(StandIn):
    """Twilio's Messages API. `accepted` counts messages per `To` number; `messages` keeps
    each accepted message's form fields."""

    def __init__(
        self, account_sid: str = "AC123", auth_token: str = "token", **kwargs: Any
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.accepted: Counter[str] = Counter()
        self.messages: list[dict[str, str]] = []
        self.times: list[float] = []
        super().__init__(**kwargs)

    def _error(self, status: int, message: str, code: int | None = None) -> bytes:
        code = code or {429: 20429, 503: 20503, 401: 20003, 404: 20404}.get(status, 21000)
        return json.dumps(
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            }
        ).encode()

    def handle(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if path != f"/2010-04-01/Accounts/{self.account_sid}/Messages.json":
            return 404, {}, self._error(404, "The requested resource was not found")
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if auth != f"Basic {expected}":
            return 401, {}, self._error(401, "Authenticate")
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if not form.get("To"):
            return 400, {}, self._error(400, "A 'To' phone number is required.", 21604)
        if not _E164.match(form["To"]):
            return (
                400,
                {},
                self._error(
                    400, f"The 'To' number {form['To']} is not a valid phone number.", 21211
                ),
            )
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return 400, {}, self._error(400, "A 'From' phone number is required.", 21603)
        if not form.get("Body") and not form.get("MediaUrl"):
            return 400, {}, self._error(400, "Message body is required.", 21602)
        if len(form.get("Body", "")) > 1600:
            return (
                400,
                {},
                self._error(
                    400, "The concatenated message body exceeds the 1600 character limit.", 21617
                ),
            )
        sid = "SM" + uuid.uuid4().hex
        with self.lock:
            self.accepted[form["To"]] += 1
            self.messages.append(form)
            self.times.append(time.monotonic())
            self.last_accepted = time.monotonic()
        resource = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": form["To"],
            "from": form.get("From"),
            "body": form.get("Body"),
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        return 201, {"Content-Type": "application/json"}, json.dumps(resource).encode()
