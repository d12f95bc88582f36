"""What every outbound channel receives, and the one HTTP helper they all send through.

A channel module defines `send(message: Message, target: Mapping[str, Any], ctx: Context)
-> None`, raising `ChannelError`: 2xx is success, 429/5xx/timeouts are temporary, other 4xx
permanent. Retries live in one place, the outbox's backoff; never in a loop here.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from .errors import ChannelError

#: Every outbound request has a deadline: a hung provider must not hold a worker.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class Message:
    """A notification: `subject` and `text` for people, `payload` for machines (webhooks)."""

    subject: str
    text: str
    html: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    #: Extra email headers (e.g. RFC 8058 `List-Unsubscribe`); other channels ignore them.
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """Provider credentials and policy, taken from Beacon's settings by the worker."""

    sendgrid_api_key: str = ""
    sendgrid_api_url: str = "https://api.sendgrid.com"
    email_from: str = "status@beacon.invalid"
    smtp_url: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from: str = ""
    twilio_api_url: str = "https://api.twilio.com"
    allow_private: bool = False


def check_public_url(url: str, *, allow_private: bool) -> None:
    """Refuse URLs that are not http(s), and (unless allowed) hosts that resolve to loopback,
    private, link-local or reserved addresses: a subscriber's webhook must not reach into
    the network Beacon runs in."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ChannelError(f"not an http(s) URL: {url!r}", permanent=True)
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ChannelError(f"cannot resolve {parts.hostname}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise ChannelError(
                f"{parts.hostname} resolves to a non-public address ({address}); "
                "set BEACON_WEBHOOK_ALLOW_PRIVATE=true to allow it",
                permanent=True,
            )


def post(
    url: str,
    *,
    json: Any = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    data: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST with the mandatory timeout, mapping failures onto `ChannelError`."""
    try:
        response = httpx.post(
            url,
            json=json,
            content=content,
            data=data,
            headers=dict(headers or {}),
            auth=auth,
            timeout=TIMEOUT,
            follow_redirects=False,
        )
    except httpx.TimeoutException:
        raise ChannelError(f"timed out posting to {_host(url)}") from None
    except httpx.HTTPError as exc:
        raise ChannelError(f"could not reach {_host(url)}: {type(exc).__name__}") from None
    raise_for_status(response.status_code, response.text, where=_host(url))
    return response


def is_permanent(status: int) -> bool:
    """True for an HTTP status that retrying cannot fix: a 4xx other than 429 (rate limited)."""
    return 400 <= status < 500 and status != 429


def raise_for_status(status: int, body: str, *, where: str) -> None:
    """Nothing for a 2xx; else `ChannelError` quoting the body, permanent as `is_permanent`."""
    if 200 <= status < 300:
        return
    raise ChannelError(f"{where} answered {status}: {body[:200]}", permanent=is_permanent(status))


def _host(url: str) -> str:
    return urlsplit(url).hostname or url
