"""Beacon's settings: built once from the environment at start and passed in from there.

Nothing below the entry points (the CLI) reads `os.environ`; it receives a `Settings`.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

from .errors import ConfigError
from .sandbox import MAX_OUTPUT_BYTES_CEILING, Limits

SECRET_KEY_FILE = "secret_key"
#: Shorter keys are refused: sessions and tokens are only as strong as the key signing them.
MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class Lifetimes:
    """How long a session lives: `idle` without a request, `absolute` in all."""

    idle: timedelta
    absolute: timedelta


class Settings(BaseModel):
    """Every knob of DESIGN.md's "Environment", typed. `embedded` is true without Redis."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Path("beacon-data")
    database_url: str = ""
    redis_url: str = ""
    secret_key: SecretStr = SecretStr("")
    #: Earlier secret keys whose stored secrets are still read (engine.vault), never written.
    previous_secret_keys: tuple[SecretStr, ...] = ()
    base_url: str = "http://127.0.0.1:8000"
    config_path: Path | None = None
    pages_domain: str = ""
    sendgrid_api_key: SecretStr = SecretStr("")
    sendgrid_api_url: str = "https://api.sendgrid.com"
    email_from: str = "status@beacon.invalid"
    smtp_url: SecretStr = SecretStr("")
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_from: str = ""
    twilio_api_url: str = "https://api.twilio.com"
    webhook_allow_private: bool = False
    #: SMS sent per second by one process (Twilio queues what a number cannot send at once:
    #: 1/s for a long code, 3/s toll-free, 100/s for a short code; more only fills its queue).
    twilio_rate: float = 10.0
    #: Webhook requests in flight at once per sending batch.
    webhook_concurrency: int = 50
    #: Seconds one outbound webhook or chat-hook request may take in all (the lookup,
    #: connecting, TLS, sending and reading the answer): a receiver that drips its answer
    #: holds a sending lane this long at most.
    webhook_timeout: float = 10.0
    #: People's notifications (workers.coalesce): steps of one incident, window or
    #: component within this many seconds go out as one message (0: each at once), and at
    #: most this many messages an hour reach one subscriber (0: no limit).
    notify_window: float = 30.0
    notify_hourly_cap: int = 20
    # Operational knobs with sane defaults; documented in docs/operations.md.
    max_body_bytes: int = 1024 * 1024
    sqlite_synchronous: str = "FULL"
    event_retention_days: int = 30
    #: Retention (docs/operations.md, "Retention"): finished deliveries, subscribers who
    #: never confirmed, audit rows; 0 keeps them for ever.
    delivery_retention_days: int = 90
    unconfirmed_retention_days: int = 7
    audit_retention_days: int = 365
    #: Incident templates (docs/operations.md, "Limits"): the bytes one rendered field may
    #: have and the seconds one render may take.
    template_max_output_bytes: int = 65536
    template_render_seconds: float = 2.0
    embedded_workers: int = 2
    #: Worker threads for notifications alone (embedded mode): slow receivers and providers
    #: never hold the threads that evaluate and render.
    embedded_notify_workers: int = 2
    #: Group commits in flight at once per `beacon serve` on PostgreSQL (SQLite: always one).
    intake_writers: int = 1
    #: Embedded mode: 1 commits the intake's batches in a store process of their own
    #: (`engine.store_process`), 0 in the web process.
    store_process: int = 1
    redis_prefix: str = ""
    #: Seconds Beacon waits for Redis to connect or answer one command before it counts
    #: Redis as down (and pages, the intake and readiness carry on without it).
    redis_timeout: float = 1.0
    #: Seconds an outbox row's claim lasts without being renewed (engine.outbox): how long
    #: work whose job died with its worker, or was lost with Redis, waits before another
    #: dispatcher takes it. Every process of a deployment must use the same.
    outbox_lease_seconds: float = 60.0
    #: Open live-update streams (SSE) per page, and per client address, in one process.
    live_per_page: int = 2000
    live_per_client: int = 32
    # AWS SNS (CloudWatch sources): PEM files of the CAs that signing certificates must chain
    # to (and that the certificate's HTTPS host must present), and of extra intermediates.
    # Unset: the system's CAs. Tests point these at a CA of their own.
    sns_trust_anchors: Path | None = None
    sns_intermediates: Path | None = None
    # Accounts (docs/security.md): sessions end after this long without a request, and
    # this long after sign-in whatever happens.
    session_idle_minutes: int = 12 * 60
    session_max_hours: int = 7 * 24
    #: Addresses or networks of reverse proxies whose X-Forwarded-For and X-Forwarded-Proto
    #: are believed (the client's address for sign-in limits, https for Secure cookies).
    trusted_proxies: tuple[str, ...] = ()
    # Single sign-on with OpenID Connect (docs/security.md): on when the issuer is set.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_name: str = "single sign-on"
    oidc_scopes: str = "openid email profile"
    #: The ID token claims that name a user's role and teams ("" ignores the claim).
    oidc_role_claim: str = ""
    oidc_teams_claim: str = ""
    oidc_default_role: str = "stakeholder"
    #: Operator-only network settings. `dns_server`: the DNS server (host[:port]) custom
    #: domains are checked against (empty: the system's). `sns_host_pattern`: the hosts
    #: AWS SNS signing certificates and confirmations may come from (a regex).
    dns_server: str = ""
    sns_host_pattern: str = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
    #: Static export (docs/static-export.md): every render of an active public page is also
    #: written as files under `export_dir` and/or as objects of an S3-compatible bucket.
    export_dir: Path | None = None
    export_s3_bucket: str = ""
    #: Prepended to every object key (`status/` puts pages at `status/p/<slug>/...`).
    export_s3_prefix: str = ""
    #: Another S3-compatible service (MinIO, R2, a loopback stand-in); empty: AWS itself.
    export_s3_endpoint_url: str = ""
    export_s3_region: str = ""
    #: Empty: boto3's own chain (AWS_* variables, ~/.aws, an instance role).
    export_s3_access_key_id: str = ""
    export_s3_secret_access_key: SecretStr = SecretStr("")

    @property
    def session_lifetimes(self) -> Lifetimes:
        return Lifetimes(
            idle=timedelta(minutes=self.session_idle_minutes),
            absolute=timedelta(hours=self.session_max_hours),
        )

    @property
    def template_limits(self) -> Limits:
        """What one incident template render may take."""
        return Limits(self.template_max_output_bytes, self.template_render_seconds)

    @property
    def outbox_lease(self) -> timedelta:
        return timedelta(seconds=self.outbox_lease_seconds)

    @property
    def embedded(self) -> bool:
        return not self.redis_url

    @property
    def email_transport(self) -> str:
        """How email leaves: `sendgrid`, `smtp`, `outbox` (embedded mode without a provider:
        `.eml` files in the data directory's `outbox/` and the log), or `none` (scaled mode
        without a provider: email cannot be sent)."""
        if self.sendgrid_api_key.get_secret_value():
            return "sendgrid"
        if self.smtp_url.get_secret_value():
            return "smtp"
        return "outbox" if self.embedded else "none"

    @property
    def email_outbox(self) -> Path:
        """Where the `outbox` transport keeps the messages it did not send."""
        return self.data_dir / "outbox"

    @property
    def effective_database_url(self) -> str:
        """The SQLAlchemy URL: `BEACON_DATABASE_URL`, else SQLite in the data directory."""
        url = self.database_url
        if not url:
            return f"sqlite:///{(self.data_dir / 'beacon.db').resolve()}"
        # Accept the libpq spelling and use psycopg 3.
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Settings from `BEACON_*` variables. Embedded mode generates and keeps a secret key
        in the data directory; scaled mode (Redis set) refuses to start without one, since
        several processes must share it."""

        def flag(name: str) -> bool:
            return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}

        data_dir = Path(env.get("BEACON_DATA_DIR") or "beacon-data")
        values: dict[str, object] = {
            "data_dir": data_dir,
            "database_url": env.get("BEACON_DATABASE_URL", ""),
            "redis_url": env.get("BEACON_REDIS_URL", ""),
            "base_url": (env.get("BEACON_BASE_URL") or "http://127.0.0.1:8000").rstrip("/"),
            "config_path": Path(env["BEACON_CONFIG"]) if env.get("BEACON_CONFIG") else None,
            "pages_domain": env.get("BEACON_PAGES_DOMAIN", "").strip().lower(),
            "sendgrid_api_key": env.get("BEACON_SENDGRID_API_KEY", ""),
            "email_from": env.get("BEACON_EMAIL_FROM") or "status@beacon.invalid",
            "smtp_url": env.get("BEACON_SMTP_URL", ""),
            "twilio_account_sid": env.get("BEACON_TWILIO_ACCOUNT_SID", ""),
            "twilio_auth_token": env.get("BEACON_TWILIO_AUTH_TOKEN", ""),
            "twilio_from": env.get("BEACON_TWILIO_FROM", ""),
            "webhook_allow_private": flag("BEACON_WEBHOOK_ALLOW_PRIVATE"),
            "redis_prefix": env.get("BEACON_REDIS_PREFIX", ""),
        }
        for name, key in (
            ("BEACON_SNS_TRUST_ANCHORS", "sns_trust_anchors"),
            ("BEACON_SNS_INTERMEDIATES", "sns_intermediates"),
        ):
            if env.get(name):
                values[key] = Path(env[name])
        if env.get("BEACON_SENDGRID_API_URL"):
            values["sendgrid_api_url"] = env["BEACON_SENDGRID_API_URL"].rstrip("/")
        if env.get("BEACON_TWILIO_API_URL"):
            values["twilio_api_url"] = env["BEACON_TWILIO_API_URL"].rstrip("/")
        values["trusted_proxies"] = _networks(env.get("BEACON_TRUSTED_PROXIES", ""))
        values.update(_oidc(env))
        values.update(_export(env))
        for name, key in (
            ("BEACON_DNS_SERVER", "dns_server"),
            ("BEACON_SNS_HOST_PATTERN", "sns_host_pattern"),
        ):
            if env.get(name, "").strip():
                values[key] = env[name].strip()
        try:
            re.compile(str(values.get("sns_host_pattern", cls().sns_host_pattern)))
        except re.error as exc:
            raise ConfigError(
                f"BEACON_SNS_HOST_PATTERN is not a regular expression: {exc}"
            ) from None
        for name, key in (
            ("BEACON_SESSION_IDLE_MINUTES", "session_idle_minutes"),
            ("BEACON_SESSION_MAX_HOURS", "session_max_hours"),
            ("BEACON_MAX_BODY_BYTES", "max_body_bytes"),
            ("BEACON_EVENT_RETENTION_DAYS", "event_retention_days"),
            ("BEACON_DELIVERY_RETENTION_DAYS", "delivery_retention_days"),
            ("BEACON_UNCONFIRMED_RETENTION_DAYS", "unconfirmed_retention_days"),
            ("BEACON_AUDIT_RETENTION_DAYS", "audit_retention_days"),
            ("BEACON_EMBEDDED_WORKERS", "embedded_workers"),
            ("BEACON_EMBEDDED_NOTIFY_WORKERS", "embedded_notify_workers"),
            ("BEACON_WEBHOOK_CONCURRENCY", "webhook_concurrency"),
            ("BEACON_NOTIFY_HOURLY_CAP", "notify_hourly_cap"),
            ("BEACON_INTAKE_WRITERS", "intake_writers"),
            ("BEACON_STORE_PROCESS", "store_process"),
            ("BEACON_LIVE_PER_PAGE", "live_per_page"),
            ("BEACON_LIVE_PER_CLIENT", "live_per_client"),
            ("BEACON_TEMPLATE_MAX_OUTPUT_BYTES", "template_max_output_bytes"),
        ):
            if env.get(name):
                try:
                    values[key] = int(env[name])
                except ValueError:
                    raise ConfigError(f"{name} must be a whole number, got {env[name]!r}") from None

        if env.get("BEACON_TWILIO_RATE"):
            values["twilio_rate"] = _rate("BEACON_TWILIO_RATE", env["BEACON_TWILIO_RATE"])
        if int(str(values.get("webhook_concurrency", 1))) < 1:
            raise ConfigError(
                "BEACON_WEBHOOK_CONCURRENCY must be 1 or more, "
                f"got {env['BEACON_WEBHOOK_CONCURRENCY']!r}"
            )
        if env.get("BEACON_TEMPLATE_RENDER_SECONDS"):
            values["template_render_seconds"] = _seconds(
                "BEACON_TEMPLATE_RENDER_SECONDS", env["BEACON_TEMPLATE_RENDER_SECONDS"]
            )
        output = int(str(values.get("template_max_output_bytes", 1)))
        if not 1 <= output <= MAX_OUTPUT_BYTES_CEILING:
            raise ConfigError(
                f"BEACON_TEMPLATE_MAX_OUTPUT_BYTES must be from 1 to {MAX_OUTPUT_BYTES_CEILING}"
                " (the renderer's memory must hold it), "
                f"got {env['BEACON_TEMPLATE_MAX_OUTPUT_BYTES']!r}"
            )
        for name, key in (
            ("BEACON_EVENT_RETENTION_DAYS", "event_retention_days"),
            ("BEACON_DELIVERY_RETENTION_DAYS", "delivery_retention_days"),
            ("BEACON_UNCONFIRMED_RETENTION_DAYS", "unconfirmed_retention_days"),
            ("BEACON_AUDIT_RETENTION_DAYS", "audit_retention_days"),
        ):
            if int(str(values.get(key, 0))) < 0:
                raise ConfigError(
                    f"{name} must be 0 (keep for ever) or more days, got {env[name]!r}"
                )
        if env.get("BEACON_NOTIFY_WINDOW"):
            values["notify_window"] = _window(env["BEACON_NOTIFY_WINDOW"])
        if int(str(values.get("notify_hourly_cap", 0))) < 0:
            raise ConfigError(
                "BEACON_NOTIFY_HOURLY_CAP must be 0 (no limit) or more, "
                f"got {env['BEACON_NOTIFY_HOURLY_CAP']!r}"
            )
        if env.get("BEACON_WEBHOOK_TIMEOUT"):
            values["webhook_timeout"] = _seconds(
                "BEACON_WEBHOOK_TIMEOUT", env["BEACON_WEBHOOK_TIMEOUT"]
            )
        if env.get("BEACON_REDIS_TIMEOUT"):
            values["redis_timeout"] = _seconds("BEACON_REDIS_TIMEOUT", env["BEACON_REDIS_TIMEOUT"])
        if env.get("BEACON_OUTBOX_LEASE_SECONDS"):
            values["outbox_lease_seconds"] = _lease(env["BEACON_OUTBOX_LEASE_SECONDS"])

        for name, key in (
            ("BEACON_SESSION_IDLE_MINUTES", "session_idle_minutes"),
            ("BEACON_SESSION_MAX_HOURS", "session_max_hours"),
        ):
            if int(str(values.get(key, 1))) < 1:
                raise ConfigError(f"{name} must be 1 or more, got {env[name]!r}")
        if int(str(values.get("store_process", 1))) not in (0, 1):
            raise ConfigError(
                f"BEACON_STORE_PROCESS must be 1 or 0, got {env['BEACON_STORE_PROCESS']!r}"
            )
        if int(str(values.get("intake_writers", 1))) < 1:
            raise ConfigError(
                f"BEACON_INTAKE_WRITERS must be 1 or more, got {env['BEACON_INTAKE_WRITERS']!r}"
            )

        synchronous = (env.get("BEACON_SQLITE_SYNCHRONOUS") or "FULL").strip().upper()
        if synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(
                "BEACON_SQLITE_SYNCHRONOUS must be FULL or NORMAL, "
                f"got {env['BEACON_SQLITE_SYNCHRONOUS']!r}"
            )
        values["sqlite_synchronous"] = synchronous

        secret = env.get("BEACON_SECRET_KEY", "")
        if not secret:
            if values["redis_url"]:
                raise ConfigError(
                    "BEACON_SECRET_KEY is required in scaled mode (BEACON_REDIS_URL is set): "
                    "every process must sign sessions and tokens with the same key"
                )
            secret = _embedded_secret(data_dir)
        elif len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"BEACON_SECRET_KEY is {len(secret.encode())} bytes; it must be at least "
                f"{MIN_SECRET_BYTES} (make one with: python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(48))')"
            )
        values["secret_key"] = secret
        previous = (env.get("BEACON_PREVIOUS_SECRET_KEYS") or "").split()
        for i, old in enumerate(previous, 1):
            if len(old.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(
                    f"BEACON_PREVIOUS_SECRET_KEYS: key {i} is {len(old.encode())} bytes; a "
                    f"secret key has at least {MIN_SECRET_BYTES}"
                )
        values["previous_secret_keys"] = tuple(previous)
        return cls.model_validate(values)


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {text!r}") from None
    if not 0 < value <= 60:
        raise ConfigError(f"{name} must be more than 0 and at most 60 seconds, got {text!r}")
    return value


#: The shortest and longest outbox lease a setting may ask for. Below a few seconds a job
#: still waiting in its queue (a claim is renewed only once its job runs) would be taken
#: over and queued again on every dispatcher pass.
LEASE_RANGE = (5.0, 3600.0)


def _lease(text: str) -> float:
    name = "BEACON_OUTBOX_LEASE_SECONDS"
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {text!r}") from None
    low, high = LEASE_RANGE
    if not low <= value <= high:
        raise ConfigError(f"{name} must be from {low:.0f} to {high:.0f} seconds, got {text!r}")
    return value


def _window(text: str) -> float:
    name = "BEACON_NOTIFY_WINDOW"
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {text!r}") from None
    if not 0 <= value <= 3600:
        raise ConfigError(f"{name} must be from 0 (off) to 3600 seconds, got {text!r}")
    return value


def _rate(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number per second, got {text!r}") from None
    if not 0 < value <= 10_000:
        raise ConfigError(f"{name} must be more than 0 and at most 10000 per second, got {text!r}")
    return value


def _export(env: Mapping[str, str]) -> dict[str, object]:
    """The static export's settings (`BEACON_EXPORT_DIR`, `BEACON_EXPORT_S3_*`)."""
    values: dict[str, object] = {}
    if env.get("BEACON_EXPORT_DIR", "").strip():
        values["export_dir"] = Path(env["BEACON_EXPORT_DIR"].strip())
    for name, key in (
        ("BEACON_EXPORT_S3_BUCKET", "export_s3_bucket"),
        ("BEACON_EXPORT_S3_PREFIX", "export_s3_prefix"),
        ("BEACON_EXPORT_S3_ENDPOINT_URL", "export_s3_endpoint_url"),
        ("BEACON_EXPORT_S3_REGION", "export_s3_region"),
        ("BEACON_EXPORT_S3_ACCESS_KEY_ID", "export_s3_access_key_id"),
        ("BEACON_EXPORT_S3_SECRET_ACCESS_KEY", "export_s3_secret_access_key"),
    ):
        if env.get(name, "").strip():
            values[key] = env[name].strip()
    others = [n for n in env if n.startswith("BEACON_EXPORT_S3_") and env[n].strip()]
    if others and not values.get("export_s3_bucket"):
        raise ConfigError(f"{sorted(others)[0]} is set: BEACON_EXPORT_S3_BUCKET is required too")
    if bool(values.get("export_s3_access_key_id")) != bool(
        values.get("export_s3_secret_access_key")
    ):
        raise ConfigError(
            "BEACON_EXPORT_S3_ACCESS_KEY_ID and BEACON_EXPORT_S3_SECRET_ACCESS_KEY go together"
        )
    prefix = str(values.get("export_s3_prefix", ""))
    if prefix.startswith("/") or ".." in prefix.split("/"):
        raise ConfigError(f"BEACON_EXPORT_S3_PREFIX must be a relative key prefix, got {prefix!r}")
    if values.get("export_s3_bucket") and importlib.util.find_spec("boto3") is None:
        raise ConfigError(
            "BEACON_EXPORT_S3_BUCKET is set but boto3 is not installed (pip install 'beacon[s3]')"
        )
    return values


def _oidc(env: Mapping[str, str]) -> dict[str, object]:
    """The `BEACON_OIDC_*` settings; an issuer needs a client id and secret."""
    issuer = env.get("BEACON_OIDC_ISSUER", "").strip()
    if not issuer:
        return {}
    values: dict[str, object] = {"oidc_issuer": issuer.rstrip("/")}
    for name, key in (
        ("BEACON_OIDC_CLIENT_ID", "oidc_client_id"),
        ("BEACON_OIDC_CLIENT_SECRET", "oidc_client_secret"),
    ):
        if not env.get(name, "").strip():
            raise ConfigError(f"BEACON_OIDC_ISSUER is set: {name} is required too")
        values[key] = env[name].strip()
    for name, key in (
        ("BEACON_OIDC_NAME", "oidc_name"),
        ("BEACON_OIDC_SCOPES", "oidc_scopes"),
        ("BEACON_OIDC_ROLE_CLAIM", "oidc_role_claim"),
        ("BEACON_OIDC_TEAMS_CLAIM", "oidc_teams_claim"),
        ("BEACON_OIDC_DEFAULT_ROLE", "oidc_default_role"),
    ):
        if env.get(name, "").strip():
            values[key] = env[name].strip()
    if values.get("oidc_default_role", "stakeholder") not in ("admin", "responder", "stakeholder"):
        raise ConfigError(
            "BEACON_OIDC_DEFAULT_ROLE must be admin, responder or stakeholder, "
            f"got {env['BEACON_OIDC_DEFAULT_ROLE']!r}"
        )
    return values


def _networks(text: str) -> tuple[str, ...]:
    """`BEACON_TRUSTED_PROXIES`: addresses or CIDR networks, comma- or space-separated."""
    found = []
    for item in text.replace(",", " ").split():
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(
                f"BEACON_TRUSTED_PROXIES: {item!r} is not an IP address or network "
                "(e.g. 10.0.0.5, 10.0.0.0/8, ::1)"
            ) from None
    return tuple(found)


def _embedded_secret(data_dir: Path) -> str:
    """The data directory's secret key, generated (mode 0600) on first use.

    An empty file (a crash between creating and writing it, before writes were atomic) gets
    a new key, never an empty one: nothing can have been signed with it that must survive.
    A short key someone wrote there is refused, as in the environment."""
    path = data_dir / SECRET_KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        if len(key.encode()) >= MIN_SECRET_BYTES:
            return key
        if key:
            raise ConfigError(
                f"{path}: the secret key is {len(key.encode())} bytes; it must be at least "
                f"{MIN_SECRET_BYTES} (delete the file to have a new one generated)"
            )
    # Made here, the data directory is its user's alone (the database, the email outbox).
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Written whole or not at all: a temporary file, then renamed over the name.
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".secret_key.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return key
