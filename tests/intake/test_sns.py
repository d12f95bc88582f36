"""AWS SNS deliveries to a CloudWatch source, against a local HTTPS "SNS" that serves the
signing certificate and takes subscription confirmations, under a CA of the test's own."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

import pages.sns
import pages.state
from adapters.alert_sources.cloudwatch import canonical_string
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import alert_events
from tests.conftest import FIXTURES
from tests.intake.conftest import Env, _env, add_source, add_team, api_key
from tests.support import FakeSNS, LocalCA, count_chain_checks, new_key, pem

SNS_DIR = FIXTURES / "alert_sources/aws-cloudwatch-sns"


class SigningSNS(FakeSNS):
    """The loopback SNS, with the key it signs messages with: its signing certificate is
    issued by the same CA as its TLS certificate."""

    def __init__(self, ca: LocalCA) -> None:
        self.signing = ca.issue("sns.eu-west-1.amazonaws.com")
        super().__init__(ca, pem(self.signing.cert))

    def sign(self, envelope: dict[str, Any], key: Any = None) -> dict[str, Any]:
        signed = {**envelope, "SignatureVersion": "2", "SigningCertURL": f"{self.url}/cert.pem"}
        signature = (key or self.signing.key).sign(
            canonical_string(signed), padding.PKCS1v15(), hashes.SHA256()
        )
        return {**signed, "Signature": base64.b64encode(signature).decode()}


@pytest.fixture
def sns(tmp_path: Path) -> Iterator[tuple[SigningSNS, Path]]:
    ca = LocalCA("Beacon Test SNS Root")
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(pem(ca.cert))
    fake = SigningSNS(ca)
    yield fake, anchors
    fake.close()


@pytest.fixture
def sns_env(
    settings: Settings, sns: tuple[SigningSNS, Path], make_runtime: Callable[..., Runtime]
) -> Iterator[tuple[Env, SigningSNS, str]]:
    fake, anchors = sns
    # The operator's settings (never a source's) say which hosts are SNS: here the loopback.
    trusted = {"sns_trust_anchors": anchors, "sns_host_pattern": r"127\.0\.0\.1"}
    for env in _env(make_runtime(settings.model_copy(update=trusted))):
        yield env, fake, cloudwatch_source(env)


def cloudwatch_source(env: Env) -> str:
    """A CloudWatch source (the runtime takes SNS on 127.0.0.1, the loopback SNS); its key."""
    _, key = add_source(env.store, env.team_id, "cw", type="cloudwatch")
    return key


def envelope(name: str, **changes: Any) -> dict[str, Any]:
    document = json.loads((SNS_DIR / name).read_text())
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {**document, "Timestamp": now, **changes}


def post(env: Env, key: str, document: dict[str, Any]) -> Any:
    return env.client.post(
        f"/api/v1/events/{key}",
        content=json.dumps(document).encode(),
        headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": document["Type"],
        },
    )


def stored(env: Env) -> list[sa.Row]:
    with env.store.read() as conn:
        return list(conn.execute(sa.select(alert_events).order_by(alert_events.c.id)))


def test_it_confirms_a_signed_subscription_on_the_sns_host(
    sns_env: tuple[Env, SigningSNS, str],
) -> None:
    env, fake, key = sns_env
    document = envelope(
        "subscription_confirmation_real_2015.json", SubscribeURL=f"{fake.url}/confirm?Token=t"
    )
    r = post(env, key, fake.sign(document))
    assert r.status_code == 202, r.text
    assert len(fake.confirmed) == 1
    [row] = stored(env)
    assert row.test  # acknowledged, never evaluated


def test_it_never_fetches_a_subscribe_url_off_the_sns_host(
    sns_env: tuple[Env, SigningSNS, str],
) -> None:
    env, fake, key = sns_env
    elsewhere = fake.url.replace("127.0.0.1", "localhost") + "/confirm?Token=t"
    document = envelope("subscription_confirmation_real_2015.json", SubscribeURL=elsewhere)
    r = post(env, key, fake.sign(document))
    assert r.status_code == 202
    assert fake.confirmed == []


def test_it_refuses_an_unsigned_subscription_without_fetching_anything(
    sns_env: tuple[Env, SigningSNS, str],
) -> None:
    env, fake, key = sns_env
    document = envelope(
        "subscription_confirmation_real_2015.json", SubscribeURL=f"{fake.url}/confirm?Token=t"
    )
    document.pop("Signature")
    assert post(env, key, document).status_code == 401
    assert fake.confirmed == fake.cert_fetches == []


def test_a_signed_alarm_notification_becomes_an_event(sns_env: tuple[Env, SigningSNS, str]) -> None:
    env, fake, key = sns_env
    r = post(env, key, fake.sign(envelope("ok_notification_real_2021.json")))
    assert r.status_code == 202, r.text
    [row] = stored(env)
    assert row.status == "resolved" and not row.test
    # The certificate is fetched once and kept.
    post(env, key, fake.sign(envelope("alarm_notification_real_2015.json")))
    assert len(fake.cert_fetches) == 1


def test_a_tampered_notification_is_refused(sns_env: tuple[Env, SigningSNS, str]) -> None:
    env, fake, key = sns_env
    signed = fake.sign(envelope("ok_notification_real_2021.json"))
    signed["Message"] = signed["Message"].replace('"OK"', '"ALARM"')
    r = post(env, key, signed)
    assert r.status_code == 401
    assert "Signature" in r.json()["error"]["message"]
    assert stored(env) == []


def test_a_signature_by_another_key_is_refused(sns_env: tuple[Env, SigningSNS, str]) -> None:
    env, fake, key = sns_env
    r = post(env, key, fake.sign(envelope("ok_notification_real_2021.json"), key=new_key()))
    assert r.status_code == 401


def test_a_certificate_url_off_the_sns_host_is_refused_unfetched(
    sns_env: tuple[Env, SigningSNS, str],
) -> None:
    env, fake, key = sns_env
    signed = fake.sign(envelope("ok_notification_real_2021.json"))
    signed["SigningCertURL"] = fake.url.replace("127.0.0.1", "localhost") + "/cert.pem"
    assert post(env, key, signed).status_code == 401
    assert fake.cert_fetches == []


def test_a_certificate_from_an_untrusted_ca_is_refused(
    settings: Settings,
    sns: tuple[SigningSNS, Path],
    tmp_path: Path,
    make_runtime: Callable[..., Runtime],
) -> None:
    fake, _anchors = sns
    other = tmp_path / "other.pem"
    # Same name as the trusted root, another key: trust is in the key, not the name.
    other.write_bytes(pem(LocalCA("Beacon Test SNS Root").cert))
    for env in _env(make_runtime(settings.model_copy(update={"sns_trust_anchors": other}))):
        key = cloudwatch_source(env)
        # The TLS handshake with the certificate host already fails: 502, SNS retries.
        r = post(env, key, fake.sign(envelope("ok_notification_real_2021.json")))
        assert r.status_code in (401, 502)
        assert stored(env) == []


def test_a_second_delivery_checks_its_signature_without_verifying_the_chain_again(
    sns_env: tuple[Env, SigningSNS, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, fake, key = sns_env
    checked = count_chain_checks(monkeypatch)
    assert post(env, key, fake.sign(envelope("ok_notification_real_2021.json"))).status_code == 202
    second = post(env, key, fake.sign(envelope("alarm_notification_real_2015.json")))
    assert second.status_code == 202, second.text
    # The signature itself is still checked on every delivery.
    tampered = fake.sign(envelope("ok_notification_real_2021.json"))
    tampered["Message"] = tampered["Message"].replace('"OK"', '"ALARM"')
    r = post(env, key, tampered)
    assert r.status_code == 401 and "Signature" in r.json()["error"]["message"]
    assert checked == [pem(fake.signing.cert)]
    assert len(fake.cert_fetches) == 1
    assert len(stored(env)) == 2


def test_the_chain_is_verified_again_when_the_certificate_is_fetched_again(
    sns_env: tuple[Env, SigningSNS, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, fake, key = sns_env
    checked = count_chain_checks(monkeypatch)
    assert post(env, key, fake.sign(envelope("ok_notification_real_2021.json"))).status_code == 202
    for cached in pages.state.of(env.runtime).sns_certs.values():
        cached.expires = 0.0  # the PEM cache's hours are over
    r = post(env, key, fake.sign(envelope("alarm_notification_real_2015.json")))
    assert r.status_code == 202, r.text
    assert len(fake.cert_fetches) == 2
    assert len(checked) == 2


def test_a_kept_certificate_past_its_validity_is_verified_again_and_refused(
    sns_env: tuple[Env, SigningSNS, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, fake, key = sns_env
    checked = count_chain_checks(monkeypatch)
    assert post(env, key, fake.sign(envelope("ok_notification_real_2021.json"))).status_code == 202
    expired = fake.signing.cert.not_valid_after_utc + timedelta(seconds=1)
    monkeypatch.setattr(pages.sns, "utcnow", lambda: expired)
    r = post(env, key, fake.sign(envelope("alarm_notification_real_2015.json")))
    assert r.status_code == 401
    assert "certificate not trusted" in r.json()["error"]["message"]
    assert len(checked) == 2
    assert len(fake.cert_fetches) == 1


def test_a_raw_message_delivery_needs_no_signature(sns_env: tuple[Env, SigningSNS, str]) -> None:
    env, _fake, key = sns_env
    body = (SNS_DIR / "ok_message_decoded_2021.json").read_bytes()
    r = env.client.post(f"/api/v1/events/{key}", content=body)
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    "strict",
    [{"raw_messages": False}, {"topic_arns": ["arn:aws:sns:eu-west-1:123456789012:alarms"]}],
)
def test_a_source_that_asks_for_signed_envelopes_refuses_a_raw_delivery(
    sns_env: tuple[Env, SigningSNS, str], strict: dict[str, Any]
) -> None:
    env, _fake, _key = sns_env
    _, key = add_source(env.store, env.team_id, "strict", type="cloudwatch", settings=strict)
    body = (SNS_DIR / "ok_message_decoded_2021.json").read_bytes()
    r = env.client.post(f"/api/v1/events/{key}", content=body)
    assert r.status_code == 401, r.text
    assert "unsigned raw message delivery refused" in r.json()["error"]["message"]
    with env.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(alert_events)).scalar() == 0


def test_the_trust_files_come_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "BEACON_DATA_DIR": str(tmp_path),
            "BEACON_SNS_TRUST_ANCHORS": "/etc/beacon/sns-roots.pem",
            "BEACON_SNS_INTERMEDIATES": "/etc/beacon/sns-intermediates.pem",
        }
    )
    assert settings.sns_trust_anchors == Path("/etc/beacon/sns-roots.pem")
    assert settings.sns_intermediates == Path("/etc/beacon/sns-intermediates.pem")
    assert Settings.from_env({"BEACON_DATA_DIR": str(tmp_path)}).sns_trust_anchors is None


def test_the_test_route_takes_a_pasted_raw_alarm_even_where_the_intake_wants_signatures(
    sns_env: tuple[Env, SigningSNS, str],
) -> None:
    # The caller is authenticated: the signature requirement is the network intake's.
    env, _fake, _key = sns_env
    add_source(
        env.store, env.team_id, "strict", type="cloudwatch", settings={"raw_messages": False}
    )
    body = (SNS_DIR / "ok_message_decoded_2021.json").read_bytes()
    r = env.client.post(
        "/api/v1/alert-sources/strict/test", content=body, headers=api_key(env.store, "platform")
    )
    assert r.status_code == 202, r.text


def test_the_migration_drops_a_stored_sns_host_pattern(tmp_path: Path) -> None:
    """A source that set `sns_host_pattern` before it became the operator's setting keeps
    working: the migration removes the key the adapter would now refuse."""
    from engine import migrate
    from engine.db import create_store
    from engine.tables import JSONType, UTCDateTime, alert_sources, utcnow

    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(tmp_path / "m")}))
    migrate.upgrade(store, "0008_sessions")
    team = add_team(store, "platform")
    # The row as releases of that time wrote it (the key in plain text, before 0016).
    old = sa.table(
        "alert_sources",
        *(sa.column(c) for c in ("team_id", "key", "name", "type", "integration_key")),
        sa.column("enabled"),
        sa.column("settings", JSONType),
        sa.column("created_at", UTCDateTime),
        sa.column("updated_at", UTCDateTime),
    )
    with store.begin() as conn:
        conn.execute(
            old.insert().values(
                team_id=team,
                key="cw",
                name="cw",
                type="cloudwatch",
                integration_key="cw-key-0123456789",
                enabled=True,
                settings={"raw_messages": True},
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    with store.begin() as conn:
        conn.execute(
            alert_sources.update().values(
                settings={"raw_messages": False, "sns_host_pattern": r"evil\.example"}
            )
        )
    migrate.upgrade(store)
    with store.read() as conn:
        assert conn.execute(sa.select(alert_sources.c.settings)).scalar_one() == {
            "raw_messages": False
        }
    store.dispose()
