"""What every alert-source adapter receives and promises.

An adapter module is an `AlertSource`: it defines `SOURCE_TYPE` and

    parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]

and, when the tool signs its deliveries, it is a `SignedAlertSource` too:

    verify(delivery: Delivery, secret: str, settings: Mapping[str, Any], now: datetime) -> None

which raises `SignatureError` (`SnsAlertSource` is the SNS variant, whose signature the
intake checks against a fetched certificate). mypy checks every registered module against
these protocols (`adapters.alert_sources.__init__`). It may define `Settings`, a pydantic
model (extra="forbid") of its adapter settings, checked by `beacon apply`. Adapters are
pure: no store, no network, no clock (`delivery.received_at` and `now` are passed in), and
they never mutate their input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl

import orjson

from .errors import AdapterError

if TYPE_CHECKING:
    from engine.models import AlertEvent

    from .sns_signature import TrustedCertificate, TrustSettings


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery as the intake received it.

    `headers` has lower-case names. `form` holds the fields of a form or multipart body
    (the intake decodes the transport; the adapter decides what the fields mean), `query`
    the query string's fields.
    """

    body: bytes
    received_at: datetime
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, str] | None = None
    content_type: str = ""

    def json(self, *, expected: str) -> Any:
        """The body as JSON, or an `AdapterError` naming the `expected` format."""
        if not self.body.strip():
            raise AdapterError(f"empty body: expected {expected}")
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            placeholder = _placeholder_at(self.body, exc.pos)
            if placeholder is not None:
                raise AdapterError(
                    f"body is not valid JSON: {placeholder!r} at character {exc.pos} is an "
                    "unrendered template placeholder, so this is the tool's template, not a "
                    f"delivery: expected {expected}"
                ) from None
            raise AdapterError(f"body is not valid JSON ({exc}): expected {expected}") from None

    def fields(self) -> dict[str, str]:
        """Form fields, else query-string fields, else a urlencoded body: for tools that send
        key=value pairs rather than JSON (UptimeRobot, Gatus, Uptime Kuma 2.x GET)."""
        if self.form:
            return dict(self.form)
        if self.query:
            return dict(self.query)
        try:
            text = self.body.decode()
        except UnicodeDecodeError:
            return {}
        return dict(parse_qsl(text, keep_blank_values=True))


# Template placeholders tools leave in a body that was posted unrendered: Handlebars and Go
# templates ({{ x }}), ${x}, Healthchecks and Datadog ($NAME), Zabbix ({ALERT.SUBJECT}),
# UptimeRobot (*monitorURL*).
_PLACEHOLDER = re.compile(
    r"\{\{.*?\}\}|\$\{[^}\n]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\{[A-Z][A-Z0-9_.]*\}|\*[A-Za-z][A-Za-z0-9_]*\*"
)


def _placeholder_at(body: bytes, pos: int) -> str | None:
    """The placeholder where JSON parsing stopped at character `pos`, if one is there (a
    placeholder elsewhere in a body broken for another reason proves nothing)."""
    text = body.decode("utf-8", "replace")
    for match in _PLACEHOLDER.finditer(text, max(0, pos - 200), pos + 200):
        if match.start() <= pos + 1 and pos < match.end():
            return match.group(0)
    return None


def require_object(document: Any, *, expected: str) -> dict[str, Any]:
    """`document` if it is a JSON object, else an `AdapterError` naming the `expected` format."""
    if not isinstance(document, dict):
        raise AdapterError(f"expected a JSON object ({expected}), got {type(document).__name__}")
    return document


# --- what an adapter module is ------------------------------------------------------------


@runtime_checkable
class AlertSource(Protocol):
    """An adapter module: its source type (as the config file names it) and `parse`."""

    SOURCE_TYPE: str

    def parse(self, delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
        """The delivery's events; `AdapterError` (or a pydantic `ValidationError`) says what
        was wrong with it. Pure: no store, no network, no clock, input never mutated."""
        ...


@runtime_checkable
class SignedAlertSource(AlertSource, Protocol):
    """An adapter for a tool that signs its deliveries with the source's secret."""

    def verify(
        self, delivery: Delivery, secret: str, settings: Mapping[str, Any], now: datetime
    ) -> None:
        """Raise `SignatureError` unless `delivery` was signed with `secret` (and is recent
        enough at `now`, where the tool stamps a time); `AdapterError` for settings that
        cannot be used."""
        ...


@runtime_checkable
class SnsAlertSource(AlertSource, Protocol):
    """An adapter for deliveries through AWS SNS, signed with a certificate the intake
    fetches (`pages.sns`): the adapter names the URLs and checks, the intake fetches."""

    def refuse_unsigned(self, settings: Mapping[str, Any]) -> None:
        """`SignatureError` when the source takes only signed envelopes."""
        ...

    def signing_cert_url(
        self,
        envelope: Mapping[str, Any],
        settings: Mapping[str, Any] | None = ...,
        host_pattern: str = ...,
    ) -> str:
        """The certificate URL to fetch, only on an SNS host; `SignatureError` otherwise."""
        ...

    def subscription_confirm_url(
        self,
        delivery: Delivery,
        settings: Mapping[str, Any] | None = ...,
        host_pattern: str = ...,
    ) -> str | None:
        """The URL that confirms a subscription, when `delivery` asks for one."""
        ...

    def verify_signature(
        self,
        envelope: Mapping[str, Any],
        cert: bytes | TrustedCertificate,
        trust: TrustSettings,
        now: datetime,
        settings: Mapping[str, Any] | None = ...,
    ) -> TrustedCertificate:
        """`SignatureError` unless the certificate `cert`, trusted under `trust`, signed it."""
        ...
