"""SMS through Twilio's Messages API, with the official SDK."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from . import gsm7
from .base import Context, Message, is_permanent, retry_after
from .errors import ChannelError

#: Twilio error codes that retrying cannot fix (https://www.twilio.com/docs/api/errors).
PERMANENT_CODES = {
    21211: "invalid phone number",
    21408: "no permission to send to this region",
    21610: "the recipient has opted out (STOP)",
    21614: "not a mobile number",
}


class _Pace:
    """Spaces the sends of every thread of the process `1 / rate` seconds apart."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            time.sleep(at - now)


# One pace per sending number and rate in the process: the rate is the number's, and every
# thread that sends from it shares it.
_paces: dict[tuple[str, float], _Pace] = {}
_paces_lock = threading.Lock()


def _pace(sender: str, rate: float) -> _Pace:
    with _paces_lock:
        return _paces.setdefault((sender, rate), _Pace(rate))


class _KeepsAnswer(TwilioHttpClient):
    """The SDK's HTTP client, keeping the last answer: `TwilioRestException` drops the
    headers, and with them a 429's `Retry-After`."""

    answer: Response | None = None

    def request(self, *args: Any, **kwargs: Any) -> Response:
        self.answer = super().request(*args, **kwargs)
        return self.answer


def send(message: Message, target: Mapping[str, Any], ctx: Context) -> None:
    if not (ctx.twilio_account_sid and ctx.twilio_auth_token and ctx.twilio_from):
        raise ChannelError("Twilio is not configured (BEACON_TWILIO_*)", permanent=True)
    http = _KeepsAnswer(timeout=10)
    client = Client(ctx.twilio_account_sid, ctx.twilio_auth_token, http_client=http)
    client.api.base_url = ctx.twilio_api_url
    # One message of GSM-7 where possible: one non-GSM character (a curly quote, a
    # non-breaking space) makes the whole message UCS-2 and cost twice as much.
    body = gsm7.fit(message.text, message.link)
    _pace(ctx.twilio_from, ctx.twilio_rate).wait()
    try:
        client.messages.create(to=str(target["address"]), from_=ctx.twilio_from, body=body)
    except TwilioRestException as exc:
        if exc.code in PERMANENT_CODES:
            raise ChannelError(
                f"Twilio {exc.code}: {PERMANENT_CODES[exc.code]}", permanent=True
            ) from None
        answer = http.answer
        raise ChannelError(
            f"Twilio answered {exc.status}: {exc.msg}",
            permanent=is_permanent(exc.status),
            retry_after=retry_after(answer.headers.get("Retry-After") if answer else None),
        ) from None
    except OSError as exc:
        raise ChannelError(f"could not reach Twilio: {exc}") from None
