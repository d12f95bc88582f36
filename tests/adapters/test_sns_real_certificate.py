"""SNS signature checks against a real SNS signing certificate and messages AWS signed with
it (see `sns_real/README.md` for their sources). Offline: nothing is fetched."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from adapters.alert_sources import SignatureError
from adapters.alert_sources.sns_signature import (
    SNS_CERT_SUBJECT,
    TrustSettings,
    canonical_string,
    verify_envelope,
)
from tests.support import LocalCA, count_chain_checks, pem

REAL = Path(__file__).parent / "sns_real"
LEAF = (REAL / "SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem").read_bytes()
M01 = (REAL / "amazon-rsa-2048-m01.pem").read_bytes()
#: A minute after the later message was sent, inside the certificate's validity.
NOW = datetime(2026, 3, 6, 20, 1, 26, tzinfo=UTC)
#: The system's CAs (Amazon Root CA 1 among them) and Amazon's published intermediate.
AMAZON = TrustSettings(intermediates_pem=M01)


def message(name: str) -> dict[str, Any]:
    return dict(json.loads((REAL / name).read_text()))


def test_the_real_certificate_is_the_one_the_messages_name() -> None:
    for name in ("notification-signature-v2.json", "notification-with-subject.json"):
        url = message(name)["SigningCertURL"]
        assert (
            url.rsplit("/", 1)[1]
            == "SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem"
        )


@pytest.mark.parametrize(
    "name", ["notification-signature-v2.json", "notification-with-subject.json"]
)
def test_a_message_signed_by_aws_verifies_against_the_real_certificate(name: str) -> None:
    verify_envelope(message(name), LEAF, AMAZON, NOW)


def test_the_real_certificate_passes_the_name_check_by_its_subject_and_san() -> None:
    leaf = x509.load_pem_x509_certificate(LEAF)
    names = [a.value for a in leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    names += leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    assert names == ["sns.amazonaws.com", "sns.amazonaws.com"]
    assert all(re.fullmatch(SNS_CERT_SUBJECT, str(n)) for n in names)


def test_the_real_certificate_under_a_stricter_name_is_refused_by_the_name_check() -> None:
    # The chain holds, so this refusal can only come from the name check.
    strict = AMAZON.model_copy(update={"subject_pattern": r"sns\.eu-west-1\.amazonaws\.com"})
    with pytest.raises(SignatureError, match="not for SNS"):
        verify_envelope(message("notification-signature-v2.json"), LEAF, strict, NOW)


def test_a_changed_real_message_fails() -> None:
    changed = {**message("notification-signature-v2.json"), "Message": "This message was changed."}
    with pytest.raises(SignatureError, match="does not match"):
        verify_envelope(changed, LEAF, AMAZON, NOW)


def test_the_real_certificate_is_not_trusted_without_amazons_intermediate() -> None:
    with pytest.raises(SignatureError, match="certificate not trusted"):
        verify_envelope(message("notification-signature-v2.json"), LEAF, TrustSettings(), NOW)


def test_the_real_certificate_is_not_trusted_after_it_expired() -> None:
    later = datetime(2026, 10, 15, tzinfo=UTC)
    trust = AMAZON.model_copy(update={"max_age_seconds": None})
    with pytest.raises(SignatureError, match="certificate not trusted"):
        verify_envelope(message("notification-signature-v2.json"), LEAF, trust, later)
    verify_envelope(
        message("notification-signature-v2.json"), LEAF, trust, later - timedelta(days=1)
    )


# The names AWS's own SDK (aws-sdk-java-v2, SnsHostProvider.signingCertCommonName) expects
# a signing certificate to carry, by region.
AWS_SIGNING_NAMES = [
    "sns.amazonaws.com",  # most regions
    "sns-signing.af-south-1.amazonaws.com",  # regions enabled on request
    "sns-signing.ap-southeast-7.amazonaws.com",
    "sns-cn-north-1.amazonaws.com.cn",  # China
    "sns-cn-northwest-1.amazonaws.com.cn",
    "sns-us-gov-west-1.amazonaws.com",  # both GovCloud regions
]


@pytest.fixture(scope="module")
def root() -> LocalCA:
    return LocalCA("Beacon Test Root", valid_from=NOW - timedelta(days=1))


def signed_by(root: LocalCA, name: str) -> tuple[dict[str, Any], bytes, TrustSettings]:
    """The real v2 message signed again by a certificate named `name` under `root`."""
    leaf = root.issue(name)
    envelope = message("notification-signature-v2.json")
    signature = leaf.key.sign(canonical_string(envelope), padding.PKCS1v15(), hashes.SHA256())
    envelope["Signature"] = base64.b64encode(signature).decode()
    return envelope, pem(leaf.cert), TrustSettings(anchors_pem=pem(root.cert))


@pytest.mark.parametrize("name", AWS_SIGNING_NAMES)
def test_every_signing_name_aws_uses_passes_the_name_check(root: LocalCA, name: str) -> None:
    verify_envelope(*signed_by(root, name), NOW)


@pytest.mark.parametrize(
    "name",
    [
        "sns.amazonaws.com.evil.example",
        "evil-sns.amazonaws.com",
        "sns-signing.amazonaws.com.evil.example",
        "s3.amazonaws.com",
        "sns.amazonaws.co",
    ],
)
def test_names_that_only_look_like_sns_fail_the_name_check(root: LocalCA, name: str) -> None:
    with pytest.raises(SignatureError, match="not for SNS"):
        verify_envelope(*signed_by(root, name), NOW)


def test_a_kept_real_certificate_checks_signatures_without_verifying_its_chain_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked = count_chain_checks(monkeypatch)
    trusted = verify_envelope(message("notification-signature-v2.json"), LEAF, AMAZON, NOW)
    assert checked == [LEAF]
    verify_envelope(message("notification-with-subject.json"), trusted, AMAZON, NOW)
    changed = {**message("notification-signature-v2.json"), "Message": "This message was changed."}
    with pytest.raises(SignatureError, match="does not match"):
        verify_envelope(changed, trusted, AMAZON, NOW)
    assert checked == [LEAF]


def test_a_kept_real_certificate_is_refused_once_its_chain_expired() -> None:
    trust = AMAZON.model_copy(update={"max_age_seconds": None})
    trusted = verify_envelope(message("notification-signature-v2.json"), LEAF, trust, NOW)
    # The leaf is the first of its chain to expire, at the end of 2026-10-14.
    leaf = x509.load_pem_x509_certificate(LEAF)
    assert trusted.valid_until == leaf.not_valid_after_utc
    later = datetime(2026, 10, 15, tzinfo=UTC)
    with pytest.raises(SignatureError, match="certificate not trusted"):
        verify_envelope(message("notification-signature-v2.json"), trusted, trust, later)
    verify_envelope(
        message("notification-signature-v2.json"), trusted, trust, later - timedelta(days=1)
    )
