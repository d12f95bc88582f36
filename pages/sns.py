"""AWS SNS deliveries (CloudWatch sources): signature checks and subscription confirmation.

The cloudwatch adapter is pure; the network part is here. For a signed SNS envelope the
intake fetches the signing certificate (only from an https URL on an SNS host, which the
adapter checks), verifies the signature against it and the configured trust anchors, and,
for a `SubscriptionConfirmation`, confirms the subscription by fetching its `SubscribeURL`
(again only on an SNS host, and only once the signature holds, so that nobody but SNS can
make Beacon fetch a URL). A body without an envelope is SNS's raw message delivery, which
is unsigned: the integration key in the URL is then the only secret.

The certificate's chain is verified once per cached certificate and trust settings, not per
delivery: the first delivery whose signature holds keeps the verified certificate with the
cached PEM, and later ones check their signature with it alone, while the PEM stays cached
and the whole chain is valid.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from adapters.alert_sources import AdapterError, Delivery, SignatureError, SnsAlertSource
from adapters.alert_sources.sns_signature import TrustedCertificate, TrustSettings
from engine.settings import Settings
from engine.sources import Source
from engine.tables import utcnow

from .state import PagesState
from .state import of as pages_state

log = logging.getLogger("beacon.intake.sns")

SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
#: SNS keeps a signing certificate for months; a few hours of caching saves a fetch per
#: delivery and still follows a rotation the same day.
CERT_CACHE_SECONDS = 6 * 3600
_CERT_CACHE_MAX = 64
TIMEOUT = httpx.Timeout(5.0)
# Intermediates are fetched from the leaf's "CA issuers" URL only on Amazon's own hosts; what
# is fetched must still chain to the trust anchors, so plain http does not weaken the check.
_ISSUER_HOST = re.compile(r"([a-z0-9-]+\.)*amazontrust\.com")


def envelope_of(delivery: Delivery) -> dict[str, Any] | None:
    """The SNS envelope of a delivery to an SNS source (`SnsAlertSource`), or None (a raw
    message delivery, or a body the adapter will refuse anyway)."""
    if not delivery.body.strip():
        return None
    try:
        document = orjson.loads(delivery.body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or document.get("Type") not in SNS_TYPES:
        return None
    return document


def refuse_unsigned(source: Source, adapter: SnsAlertSource) -> None:
    """A delivery without an SNS envelope to a source that takes only signed ones: 401."""
    try:
        adapter.refuse_unsigned(source.settings)
    except SignatureError as exc:
        raise HTTPException(401, f"{source.type} signature: {exc}") from None
    except AdapterError as exc:
        raise HTTPException(400, f"{source.type} source settings: {exc}") from None


async def handle(
    request: Request,
    source: Source,
    adapter: SnsAlertSource,
    delivery: Delivery,
    envelope: dict[str, Any],
) -> Response | None:
    """Verify the SNS `envelope` of `delivery` (`envelope_of`) and confirm a subscription;
    None means "go on and parse it", an HTTP error says why not."""
    if not envelope.get("Signature"):
        raise HTTPException(401, "SNS envelope without a Signature: refused")
    settings: Settings = request.app.state.settings
    try:
        cert_url = adapter.signing_cert_url(
            envelope, source.settings, host_pattern=settings.sns_host_pattern
        )
    except SignatureError as exc:
        raise HTTPException(401, f"cloudwatch signature: {exc}") from None
    except AdapterError as exc:
        raise HTTPException(400, f"cloudwatch source settings: {exc}") from None
    state = pages_state(request.app.state.runtime)
    client = http_client(request)
    cert = await signing_certificate(state, client, cert_url)
    configured = _read(state, settings.sns_intermediates) or b""
    trust = TrustSettings(
        anchors_pem=_read(state, settings.sns_trust_anchors),
        intermediates_pem=(configured + cert.intermediates) or None,
    )
    now = utcnow()
    known = cert.trusted_under(trust, now)
    try:
        trusted = adapter.verify_signature(envelope, known or cert.pem, trust, now, source.settings)
    except SignatureError as exc:
        raise HTTPException(401, f"cloudwatch signature: {exc}") from None
    if known is None:
        cert.keep(trusted, trust)
    if envelope.get("Type") != "SubscriptionConfirmation":
        return None
    confirm_url = adapter.subscription_confirm_url(
        delivery, source.settings, host_pattern=settings.sns_host_pattern
    )
    if confirm_url:
        await confirm(client, confirm_url, source)
    return None


def _read(state: PagesState, path: Path | None) -> bytes | None:
    if path is None:
        return None
    files = state.sns_files
    if path not in files:
        try:
            files[path] = path.read_bytes()
        except OSError as exc:
            log.error("cannot read SNS trust file %s: %s", path, exc)
            raise HTTPException(503, "SNS trust anchors are not readable (see the log)") from None
    return files[path]


def open_client(settings: Settings) -> httpx.AsyncClient:
    """The client every SNS fetch of an app goes through (certificates, their issuers,
    subscription confirmations): one connection pool, opened and closed by the app's
    lifespan (`pages.app.create_app`)."""
    verify: ssl.SSLContext | bool = True
    if settings.sns_trust_anchors is not None:
        verify = ssl.create_default_context(cafile=str(settings.sns_trust_anchors))
    return httpx.AsyncClient(timeout=TIMEOUT, verify=verify, follow_redirects=False)


def http_client(request: Request) -> httpx.AsyncClient:
    """The app's SNS client; a 503 when the app runs without its lifespan (which opens it)."""
    client: httpx.AsyncClient | None = request.app.state.sns_http
    if client is None:
        log.error("the SNS client is not open: the app was started without its lifespan")
        raise HTTPException(503, "not ready to verify SNS deliveries; retry later")
    return client


@dataclass
class SigningCertificate:
    """A fetched signing certificate (`pem`, and the `intermediates` its issuer URL gave),
    cached until `expires` (monotonic), with what a delivery verified of it."""

    pem: bytes
    intermediates: bytes
    expires: float
    # (the trust settings' key, the certificate verified under them): one attribute, so
    # that a reader never pairs one delivery's key with another's certificate.
    _trusted: tuple[tuple[Any, ...], TrustedCertificate] | None = None

    def trusted_under(self, trust: TrustSettings, now: datetime) -> TrustedCertificate | None:
        """The certificate as verified under the same `trust` while the whole chain is valid
        at `now`; None when the chain must be verified (again)."""
        kept = self._trusted
        if kept is None or kept[0] != _trust_key(trust) or not kept[1].valid_at(now):
            return None
        return kept[1]

    def keep(self, trusted: TrustedCertificate, trust: TrustSettings) -> None:
        """Keep what a delivery verified under `trust`, for as long as this PEM is cached."""
        self._trusted = (_trust_key(trust), trusted)


def _trust_key(trust: TrustSettings) -> tuple[Any, ...]:
    # Everything the chain and name checks depend on; max_age_seconds is checked per message.
    return (trust.anchors_pem, trust.intermediates_pem, trust.subject_pattern)


async def signing_certificate(
    state: PagesState, client: httpx.AsyncClient, url: str
) -> SigningCertificate:
    """The signing certificate at `url` and any intermediates its issuer URL gave, cached."""
    cache = state.sns_certs
    hit = cache.get(url)
    now = time.monotonic()
    if hit is not None and hit.expires > now:
        return hit
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        raise HTTPException(
            502, f"could not fetch the SNS signing certificate: {type(exc).__name__}"
        ) from None
    if response.status_code != 200:
        raise HTTPException(502, f"the SNS signing certificate URL answered {response.status_code}")
    pem = response.content
    intermediates = await _issuers(client, pem)
    if len(cache) >= _CERT_CACHE_MAX:
        cache.clear()
    cache[url] = fetched = SigningCertificate(pem, intermediates, now + CERT_CACHE_SECONDS)
    return fetched


async def _issuers(client: httpx.AsyncClient, pem: bytes) -> bytes:
    """The leaf's issuing certificate from its "CA issuers" URL on an Amazon host (SNS
    serves the leaf alone, and the system's CAs hold only Amazon's roots); empty when there
    is none or it cannot be had (verification then says what is missing)."""
    try:
        leaf = x509.load_pem_x509_certificate(pem)
        access = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (ValueError, x509.ExtensionNotFound):
        return b""
    for description in access:
        if description.access_method != AuthorityInformationAccessOID.CA_ISSUERS:
            continue
        url = str(description.access_location.value)
        if not _ISSUER_HOST.fullmatch(urlsplit(url).hostname or ""):
            continue
        try:
            response = await client.get(url)
            der = response.content if response.status_code == 200 else b""
            return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        except (httpx.HTTPError, ValueError):
            log.warning("could not fetch the SNS certificate's issuer from %s", url)
    return b""


async def confirm(client: httpx.AsyncClient, url: str, source: Source) -> None:
    """Confirm an SNS subscription by fetching its SubscribeURL; a failure answers 502 so
    that SNS retries the confirmation."""
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        raise HTTPException(
            502, f"could not confirm the SNS subscription: {type(exc).__name__}"
        ) from None
    if response.status_code != 200:
        raise HTTPException(
            502, f"confirming the SNS subscription: SNS answered {response.status_code}"
        )
    log.info("confirmed the SNS subscription of alert source %r", source.key)
