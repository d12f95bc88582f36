"""Amazon SNS message signatures: the canonical string, the certificate chain, the check.

SNS signs with RSA over `name\nvalue\n` pairs of the message's signed fields
(`SignatureVersion` 1 = SHA1withRSA, 2 = SHA256withRSA) and publishes the signing
certificate at `SigningCertURL`. These functions are pure: the caller fetches the
certificate (see `adapters.alert_sources.cloudwatch` for what the intake does), and may keep
the `TrustedCertificate` a check returns, so that later messages signed with the same
certificate cost the signature check alone, not the chain's verification again.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .common import parse_time
from .errors import AdapterError, SignatureError

# The names SNS signing certificates carry, as AWS's own SDK expects them by region
# (aws-sdk-java-v2, SnsHostProvider): sns.amazonaws.com in most regions (a real one is in
# tests/adapters/sns_real), sns-signing.<region>.amazonaws.com in regions enabled on
# request (af-south-1, ap-east-1, ...), sns-<region>.amazonaws.com.cn in China and
# sns-us-gov-west-1.amazonaws.com in GovCloud; or a regional SNS host. The isolated and
# sovereign partitions (c2s.ic.gov, amazonaws.eu, ...) are not covered.
_REGION = r"[a-z]{2}(-[a-z]+)+-[0-9]"
SNS_CERT_SUBJECT = (
    r"sns(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?"
    rf"|sns-signing\.{_REGION}\.amazonaws\.com"
    rf"|sns-{_REGION}\.amazonaws\.com(\.cn)?"
)

# The fields SNS signs, in the order it signs them, per message type.
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED_FIELDS["UnsubscribeConfirmation"] = SIGNED_FIELDS["SubscriptionConfirmation"]
SIGNATURE_HASH: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


def compiles(value: str) -> str:
    """`value` if it is a valid regular expression, else a `ValueError` for pydantic."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


class TrustSettings(BaseModel):
    """What a signing certificate must chain to and be named for.

    `anchors_pem` None means the system's public CAs (Amazon's roots are among them).
    The `.pem` SNS serves holds only its leaf certificate: when the issuing intermediate is
    not in the anchors, pass it in `intermediates_pem` (Amazon publishes them).
    """

    model_config = ConfigDict(extra="forbid")

    anchors_pem: bytes | None = None
    intermediates_pem: bytes | None = None
    subject_pattern: str = SNS_CERT_SUBJECT
    # SNS retries a delivery for up to an hour under its default policies: a signed
    # message older than this is a replay.
    max_age_seconds: float | None = Field(default=3600, gt=0)

    @field_validator("subject_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        return compiles(value)


def canonical_string(envelope: Mapping[str, Any]) -> bytes:
    """The bytes SNS signs: `name\\nvalue\\n` for each signed field of the message type, in
    SNS's order; `Subject` only when present. `SignatureError` when a field is missing."""
    kind = envelope.get("Type")
    fields = SIGNED_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise SignatureError(f"Type: cannot verify a message of type {kind!r}")
    text = []
    for name in fields:
        value = envelope.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise SignatureError(f"{name}: missing, yet SNS signs it")
        text.append(f"{name}\n{value}\n")
    return "".join(text).encode()


@dataclass(frozen=True)
class TrustedCertificate:
    """A signing certificate whose chain to the trust anchors and whose SNS name held: its
    RSA `key` checks signatures while a time is inside the whole chain's validity
    (`valid_from` to `valid_until`), without the chain being verified again. It holds for
    the trust settings it was verified under only: a caller keeping it keys it by them."""

    key: rsa.RSAPublicKey
    valid_from: datetime
    valid_until: datetime

    def valid_at(self, now: datetime) -> bool:
        """Whether every certificate of the verified chain is valid at `now`."""
        return self.valid_from <= now <= self.valid_until


def trust_certificate(cert_pem: bytes, trust: TrustSettings, now: datetime) -> TrustedCertificate:
    """The certificate in `cert_pem` once it chains to `trust`'s anchors at `now`, is named
    for SNS and has an RSA key; `SignatureError` saying which of these failed."""
    leaf, chain = _trusted_leaf(cert_pem, trust, now)
    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("SigningCertURL: the certificate's key is not RSA")
    # The whole verified chain's window, its anchor's included: never longer than the
    # leaf's, and never a time at which the verification could have come out otherwise.
    return TrustedCertificate(
        key,
        max(c.not_valid_before_utc for c in chain),
        min(c.not_valid_after_utc for c in chain),
    )


def verify_envelope(
    envelope: Mapping[str, Any],
    cert: bytes | TrustedCertificate,
    trust: TrustSettings,
    now: datetime,
) -> TrustedCertificate:
    """Raise `SignatureError` unless `envelope` was signed by the certificate `cert`, that
    certificate chains to `trust`'s anchors at `now` and is named for SNS, and the message
    is not older than `trust.max_age_seconds`. `cert` is the PEM, or what an earlier call
    returned for it under the same trust settings: then only its validity at `now` is
    checked, not the chain again. Returns the trusted certificate."""
    algorithm = SIGNATURE_HASH.get(str(envelope.get("SignatureVersion")))
    if algorithm is None:
        raise SignatureError(
            f"SignatureVersion: expected '1' or '2', got {envelope.get('SignatureVersion')!r}"
        )
    try:
        signature = base64.b64decode(str(envelope.get("Signature") or ""), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("Signature: not base64") from None
    if not signature:
        raise SignatureError("Signature: missing")
    message = canonical_string(envelope)
    if isinstance(cert, TrustedCertificate):
        if not cert.valid_at(now):
            raise SignatureError(
                f"SigningCertURL: certificate not trusted (not valid at {now.isoformat()})"
            )
        trusted = cert
    else:
        trusted = trust_certificate(cert, trust, now)
    try:
        trusted.key.verify(signature, message, padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise SignatureError("Signature: does not match the message") from None
    if trust.max_age_seconds is not None:
        try:
            sent_at = parse_time(envelope.get("Timestamp"), field="Timestamp")
        except AdapterError as exc:
            raise SignatureError(str(exc)) from None
        if (now - sent_at).total_seconds() > trust.max_age_seconds:
            raise SignatureError(
                f"Timestamp: {sent_at.isoformat()} is older than {trust.max_age_seconds:g}s: "
                "stale or replayed message"
            )
    return trusted


def _trusted_leaf(
    cert_pem: bytes, trust: TrustSettings, now: datetime
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The leaf and the chain it was verified by, up to and including the anchor."""
    try:
        leaf, *intermediates = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise SignatureError("SigningCertURL: not a PEM certificate") from None
    try:
        if trust.intermediates_pem:
            intermediates += x509.load_pem_x509_certificates(trust.intermediates_pem)
        anchors = (
            x509.load_pem_x509_certificates(trust.anchors_pem)
            if trust.anchors_pem
            else list(_system_anchors())
        )
    except ValueError as exc:
        raise SignatureError(f"trust settings: unreadable certificates ({exc})") from None
    # SNS signing certificates are issued for TLS servers (serverAuth), not for clients or
    # code signing, so the leaf's extensions are not held to a purpose; the CAs are.
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(now)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise SignatureError(f"SigningCertURL: certificate not trusted ({exc})") from None
    names = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        pass
    if not any(re.fullmatch(trust.subject_pattern, str(name)) for name in names):
        raise SignatureError(f"SigningCertURL: certificate is for {names!r}, not for SNS")
    return leaf, list(verified.chain)


@lru_cache(maxsize=1)
def _system_anchors() -> tuple[x509.Certificate, ...]:
    """The system's CA bundle (certifi's where the system has none), read once."""
    cafile = ssl.get_default_verify_paths().cafile
    if not cafile or not Path(cafile).exists():
        import certifi

        cafile = certifi.where()
    anchors = []
    end = b"-----END CERTIFICATE-----"
    for block in Path(cafile).read_bytes().split(end)[:-1]:
        # Some long-lived roots break RFC 5280 (a negative serial, say): cryptography warns
        # about them today and will refuse them later. None of them is Amazon's: skip them.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            try:
                anchors.append(x509.load_pem_x509_certificate(block + end))
            except ValueError:
                continue
    return tuple(anchors)
