"""The store's schema: SQLAlchemy Core tables for every domain object of DESIGN.md.

Alembic migrations (`engine/migrations`) create these; a test checks that the migrated
schema and this module agree. Internal keys are integers; objects that appear in public
URLs or in the Statuspage API also carry a stable random `public_id`.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_public_id() -> str:
    """A 12-character lower-case id in Statuspage's style (`p31zjtct2jer`)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(12))


def utcnow() -> datetime:
    return datetime.now(UTC)


def _new_selector() -> str:
    # engine.subscriber_links.new_selector, which imports this module: 128 random bits.
    return secrets.token_urlsafe(16)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _id() -> sa.Column[Any]:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def _created() -> sa.Column[Any]:
    return sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow)


def _updated() -> sa.Column[Any]:
    return sa.Column("updated_at", UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)


def _team_fk(nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(
        "team_id", sa.Integer, sa.ForeignKey("teams.id", ondelete="CASCADE"), nullable=nullable
    )


def _origin() -> list[sa.Column[Any]]:
    """Where a config-manageable object comes from (`engine.origins`): the config file that
    declares it (its absolute path) or `ui`, `api`, `cli`; and the fields that file last
    set, so an edit made elsewhere since shows as drift."""
    return [
        sa.Column("origin", sa.String(500), nullable=True),
        sa.Column("applied", JSONType, nullable=True),
    ]


# --- accounts ---------------------------------------------------------------------------

teams = sa.Table(
    "teams",
    metadata,
    _id(),
    sa.Column("key", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("private", sa.Boolean, nullable=False, default=False),
    *_origin(),
    _created(),
    _updated(),
)

users = sa.Table(
    "users",
    metadata,
    _id(),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("password_hash", sa.String(300), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    _created(),
    _updated(),
)

team_members = sa.Table(
    "team_members",
    metadata,
    sa.Column(
        "team_id", sa.Integer, sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
)

# Server-side sessions: the cookie carries a random token, the row is keyed by its SHA-256
# (a copy of this table signs nobody in). Deleting a row ends the session; deleting the user
# deletes its rows, so a reused user id can never inherit an old cookie.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("method", sa.String(20), nullable=False, default="password"),
    _created(),
    sa.Column("last_seen_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)

# Emailed links that act for a user once: invitations (set a first password) and password
# resets. Only the token's SHA-256 is kept; `used_at` makes it single-use.
account_tokens = sa.Table(
    "account_tokens",
    metadata,
    _id(),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    _created(),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=True),
)

# Personal feed links: a user reads one private page's feeds and calendar through a URL
# with a random token (feed readers and calendar apps send no cookie). Only the token's
# SHA-256 is kept; revoked by its user, and all of a user's at deactivation.
feed_tokens = sa.Table(
    "feed_tokens",
    metadata,
    _id(),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column(
        "page_id",
        sa.Integer,
        sa.ForeignKey("status_pages.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    _created(),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    _id(),
    sa.Column("name", sa.String(200), nullable=False),
    _team_fk(nullable=True),
    sa.Column("admin", sa.Boolean, nullable=False, default=False),
    # The key is shown once; only its SHA-256 is kept. `prefix` identifies it in listings.
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    _created(),
)

# --- services and their status -------------------------------------------------------------

services = sa.Table(
    "services",
    metadata,
    _id(),
    _team_fk(),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("group_name", sa.String(200), nullable=True),
    sa.Column("position", sa.Integer, nullable=False, default=0),
    # The effective status, kept current by engine.status whenever one of its inputs changes.
    sa.Column("status", sa.String(20), nullable=False, default="operational"),
    sa.Column("status_since", UTCDateTime, nullable=False, default=utcnow),
    # A manual override wins until cleared or until it expires.
    sa.Column("override_status", sa.String(20), nullable=True),
    sa.Column("override_until", UTCDateTime, nullable=True),
    sa.Column("override_reason", sa.Text, nullable=True),
    sa.Column("override_by", sa.String(320), nullable=True),
    *_origin(),
    _created(),
    _updated(),
    sa.UniqueConstraint("team_id", "key"),
)

status_changes = sa.Table(
    "status_changes",
    metadata,
    _id(),
    sa.Column(
        "service_id", sa.Integer, sa.ForeignKey("services.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("old_status", sa.String(20), nullable=True),
    sa.Column("new_status", sa.String(20), nullable=False),
    # cause_kind: rule | incident | maintenance | override | user | expiry | system
    sa.Column("cause_kind", sa.String(20), nullable=False),
    sa.Column("cause", JSONType, nullable=False, default=dict),
    sa.Column("at", UTCDateTime, nullable=False, default=utcnow),
    sa.Index("ix_status_changes_service_at", "service_id", "at"),
)

# --- pages -------------------------------------------------------------------------------

assets = sa.Table(
    "assets",
    metadata,
    _id(),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    _created(),
)

status_pages = sa.Table(
    "status_pages",
    metadata,
    _id(),
    sa.Column("public_id", sa.String(16), nullable=False, unique=True, default=new_public_id),
    _team_fk(),  # the first managing team: owner of the page's subscribers
    sa.Column("slug", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("type", sa.String(10), nullable=False, default="public"),
    sa.Column("time_zone", sa.String(64), nullable=False, default="UTC"),
    sa.Column("custom_domain", sa.String(253), nullable=True, unique=True),
    # The custom domain is served only once verified (engine.domains): by the CNAME to the
    # page's own host, or by `domain_token` in a TXT record.
    sa.Column("domain_token", sa.String(64), nullable=True),
    sa.Column("domain_verified_at", UTCDateTime, nullable=True),
    # Why a verified domain stopped being served: the re-check found its proof gone.
    sa.Column("domain_error", sa.Text, nullable=True),
    sa.Column("logo_asset_id", sa.Integer, sa.ForeignKey("assets.id"), nullable=True),
    sa.Column("favicon_asset_id", sa.Integer, sa.ForeignKey("assets.id"), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, default=False),
    sa.Column("activated_at", UTCDateTime, nullable=True),
    sa.Column("hide_uptime", sa.Boolean, nullable=False, default=False),
    # People (email, SMS, users) also hear bare status changes (webhooks always do).
    sa.Column("notify_component_changes", sa.Boolean, nullable=False, default=False),
    sa.Column("settings", JSONType, nullable=False, default=dict),
    *_origin(),
    _created(),
    _updated(),
)

page_teams = sa.Table(
    "page_teams",
    metadata,
    sa.Column(
        "page_id",
        sa.Integer,
        sa.ForeignKey("status_pages.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "team_id", sa.Integer, sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("position", sa.Integer, nullable=False, default=0),
)

page_groups = sa.Table(
    "page_groups",
    metadata,
    _id(),
    sa.Column("public_id", sa.String(16), nullable=False, unique=True, default=new_public_id),
    sa.Column(
        "page_id", sa.Integer, sa.ForeignKey("status_pages.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("position", sa.Integer, nullable=False, default=0),
    _created(),
    _updated(),
    sa.UniqueConstraint("page_id", "name"),
)

# One row per page and service: the page's component (its `public_id` is the component id).
page_services = sa.Table(
    "page_services",
    metadata,
    _id(),
    sa.Column("public_id", sa.String(16), nullable=False, unique=True, default=new_public_id),
    sa.Column(
        "page_id", sa.Integer, sa.ForeignKey("status_pages.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column(
        "service_id", sa.Integer, sa.ForeignKey("services.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column(
        "group_id", sa.Integer, sa.ForeignKey("page_groups.id", ondelete="SET NULL"), nullable=True
    ),
    sa.Column("position", sa.Integer, nullable=False, default=0),
    _created(),
    _updated(),
    sa.UniqueConstraint("page_id", "service_id"),
)

# --- incidents and maintenance ----------------------------------------------------------------

incident_templates = sa.Table(
    "incident_templates",
    metadata,
    _id(),
    _team_fk(),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("resolve_message", sa.Text, nullable=False, default=""),
    sa.Column("status", sa.String(20), nullable=False, default="investigating"),
    # {service key: impact status}
    sa.Column("services", JSONType, nullable=False, default=dict),
    *_origin(),
    _created(),
    _updated(),
    sa.UniqueConstraint("team_id", "key"),
)

incidents = sa.Table(
    "incidents",
    metadata,
    _id(),
    sa.Column("public_id", sa.String(16), nullable=False, unique=True, default=new_public_id),
    _team_fk(),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("status", sa.String(20), nullable=False, default="investigating"),
    # The peak impact (kept after resolving) unless `impact_override` is set.
    sa.Column("impact", sa.String(20), nullable=False, default="none"),
    sa.Column("impact_override", sa.String(20), nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("identified_at", UTCDateTime, nullable=True),
    sa.Column("monitoring_at", UTCDateTime, nullable=True),
    sa.Column("resolved_at", UTCDateTime, nullable=True),
    sa.Column(
        "template_id",
        sa.Integer,
        sa.ForeignKey("incident_templates.id", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column("activation_id", sa.Integer, nullable=True),
    # "automation" while rules drive it; "human" once a person took it over.
    sa.Column("managed_by", sa.String(20), nullable=False, default="human"),
    _created(),
    _updated(),
    sa.Index("ix_incidents_team_status", "team_id", "status"),
)

incident_services = sa.Table(
    "incident_services",
    metadata,
    sa.Column(
        "incident_id",
        sa.Integer,
        sa.ForeignKey("incidents.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "service_id", sa.Integer, sa.ForeignKey("services.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("impact", sa.String(20), nullable=False),
)

incident_updates = sa.Table(
    "incident_updates",
    metadata,
    _id(),
    sa.Column("public_id", sa.String(16), nullable=False, unique=True, default=new_public_id),
    sa.Column(
        "incident_id", sa.Integer, sa.ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("body", sa.Text, nullable=False, default=""),
    sa.Column("display_at", UTCDateTime, nullable=False, default=utcnow),
    # [{service_id, old_status, new_status}] or null
    sa.Column("affected", JSONType, nullable=True),
    sa.Column("deliver_notifications", sa.Boolean, nullable=False, default=True),
    sa.Column("author", sa.String(320), nullable=True),
    _created(),
    _updated(),
    sa.Index("ix_incident_updates_incident", "incident_id"),
)

incident_alerts = sa.Table(
    "incident_alerts",
    metadata,
    sa.Column(
        "incident_id",
        sa.Integer,
        sa.ForeignKey("incidents.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "event_id",
        sa.Integer,
        sa.ForeignKey("alert_events.id", ondelete="CASCADE"),
        primary_key=True,
    ),
)

maintenance_windows = sa.Table(
    "maintenance_windows",
    metadata,
    _id(),
    sa.Column("public_id", sa.String(16), nullable=False, unique=True, default=new_public_id),
    _team_fk(),
    sa.Column("key", sa.String(64), nullable=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("starts_at", UTCDateTime, nullable=False),
    sa.Column("ends_at", UTCDateTime, nullable=False),
    sa.Column("notify", sa.Boolean, nullable=False, default=False),
    sa.Column("on_end", sa.String(10), nullable=False, default="replay"),
    sa.Column("status", sa.String(20), nullable=False, default="scheduled"),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("completed_at", UTCDateTime, nullable=True),
    *_origin(),
    _created(),
    _updated(),
    sa.UniqueConstraint("team_id", "key"),
)

maintenance_services = sa.Table(
    "maintenance_services",
    metadata,
    sa.Column(
        "window_id",
        sa.Integer,
        sa.ForeignKey("maintenance_windows.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "service_id", sa.Integer, sa.ForeignKey("services.id", ondelete="CASCADE"), primary_key=True
    ),
)

maintenance_updates = sa.Table(
    "maintenance_updates",
    metadata,
    _id(),
    sa.Column("public_id", sa.String(16), nullable=False, unique=True, default=new_public_id),
    sa.Column(
        "window_id",
        sa.Integer,
        sa.ForeignKey("maintenance_windows.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("body", sa.Text, nullable=False, default=""),
    sa.Column("display_at", UTCDateTime, nullable=False, default=utcnow),
    _created(),
)

# --- alert sources and events -------------------------------------------------------------------

alert_sources = sa.Table(
    "alert_sources",
    metadata,
    _id(),
    _team_fk(),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    # The integration key is shown once; the store keeps its keyed digest (engine.vault) and
    # its last characters when it is long enough to spare them (`key_hint`, for listings).
    sa.Column("key_digest", sa.String(80), nullable=False, unique=True),
    sa.Column("key_hint", sa.String(8), nullable=True),
    # After a rotation the previous key keeps working until `previous_key_expires_at`.
    sa.Column("previous_key_digest", sa.String(80), nullable=True, unique=True),
    sa.Column("previous_key_expires_at", UTCDateTime, nullable=True),
    # Encrypted (engine.vault): the intake reads it back to check signatures.
    sa.Column("signing_secret", sa.Text, nullable=True),
    sa.Column("settings", JSONType, nullable=False, default=dict),
    sa.Column("rate_limit", sa.String(20), nullable=True),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("last_event_at", UTCDateTime, nullable=True),
    *_origin(),
    _created(),
    _updated(),
    sa.UniqueConstraint("team_id", "key"),
)

# Deliveries the intake refused (4xx but 429): what the tool sent and why it was refused,
# the last `engine.rejections.KEEP` per source; `source_id` null when no source has the key.
rejected_deliveries = sa.Table(
    "rejected_deliveries",
    metadata,
    _id(),
    sa.Column(
        "source_id",
        sa.Integer,
        sa.ForeignKey("alert_sources.id", ondelete="CASCADE"),
        nullable=True,
    ),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("content_type", sa.String(200), nullable=True),
    sa.Column("bytes", sa.Integer, nullable=False, default=0),
    sa.Column("user_agent", sa.String(200), nullable=True),
    sa.Column("client", sa.String(64), nullable=True),
    # Without a source: the first characters of the key that matched none, to recognise it.
    sa.Column("key_hint", sa.String(16), nullable=True),
    sa.Index("ix_rejected_deliveries_source", "source_id", "id"),
)

alert_events = sa.Table(
    "alert_events",
    metadata,
    _id(),
    sa.Column(
        "source_id",
        sa.Integer,
        sa.ForeignKey("alert_sources.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("dedup_key", sa.String(512), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("severity", sa.String(10), nullable=False),
    sa.Column("summary", sa.Text, nullable=False, default=""),
    sa.Column("details", sa.Text, nullable=False, default=""),
    sa.Column("labels", JSONType, nullable=False, default=dict),
    sa.Column("links", JSONType, nullable=False, default=list),
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("raw", JSONType, nullable=True),
    sa.Column("test", sa.Boolean, nullable=False, default=False),
    # Recognises a retried delivery: the tool's delivery id, else a hash of
    # (source, dedup key, status, occurred_at). Unique per source.
    sa.Column("fingerprint", sa.String(128), nullable=False),
    # Evaluation: null until evaluated; `outcome` says which rule matched and what it did,
    # or why nothing happened ("what happened to my alert?").
    sa.Column("partition", sa.String(200), nullable=False, default=""),
    sa.Column("evaluated_at", UTCDateTime, nullable=True),
    sa.Column("outcome", JSONType, nullable=True),
    sa.UniqueConstraint("source_id", "fingerprint"),
    sa.Index("ix_alert_events_source_received", "source_id", "received_at"),
    sa.Index("ix_alert_events_pending", "evaluated_at", "partition"),
)

# --- rules state (DESIGN.md "State": keyed by rule and group, changed with its effects) ---

rule_sets = sa.Table(
    "rule_sets",
    metadata,
    _id(),
    # The whole validated rule text, versioned; the newest active row is in force.
    sa.Column("version", sa.Integer, nullable=False, unique=True),
    sa.Column("files", JSONType, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    # Which teams each file's rules are for ({file: [team keys]}): `beacon apply` records
    # the teams of the config file that declared them. Null (rules published without an
    # owner): every file's rules hear every team's sources.
    sa.Column("owners", JSONType, nullable=True),
    _created(),
)

activations = sa.Table(
    "activations",
    metadata,
    _id(),
    _team_fk(),
    sa.Column("rule_id", sa.String(128), nullable=False),
    sa.Column("group_key", sa.String(1024), nullable=False),
    # pending (waiting for `for` or the window) | active (acting) | resolving (damping) | ended
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("spec", JSONType, nullable=False, default=dict),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("acted_at", UTCDateTime, nullable=True),
    sa.Column("last_firing_at", UTCDateTime, nullable=True),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.Column("end_reason", sa.String(40), nullable=True),
    sa.Column(
        "incident_id", sa.Integer, sa.ForeignKey("incidents.id", ondelete="SET NULL"), nullable=True
    ),
    sa.Column("error", sa.Text, nullable=True),
    # When the activation next needs the clock (`for`, window expiry, resolve.after,
    # resolve.timeout); null when only an event can change it.
    sa.Column("due_at", UTCDateTime, nullable=True),
    # How many of its `activation_alerts` fire, kept by `engine.activations.store` with
    # them: whether an activation still fires is asked for every resolve, and an alert
    # storm's activation groups thousands of alerts. The daily purge recounts it
    # (`recount_firing_alerts`) and logs any correction.
    sa.Column("firing_alerts", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Index("ix_activations_rule_group_state", "rule_id", "group_key", "state"),
    sa.Index("ix_activations_due", "due_at"),
)

activation_alerts = sa.Table(
    "activation_alerts",
    metadata,
    _id(),
    sa.Column(
        "activation_id",
        sa.Integer,
        sa.ForeignKey("activations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column(
        "source_id",
        sa.Integer,
        sa.ForeignKey("alert_sources.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("dedup_key", sa.String(512), nullable=False),
    sa.Column("firing", sa.Boolean, nullable=False, default=True),
    sa.Column("first_fired_at", UTCDateTime, nullable=False),
    sa.Column("last_occurred_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime, nullable=True),
    sa.Column("last_event_id", sa.Integer, nullable=True),
    sa.UniqueConstraint("activation_id", "source_id", "dedup_key"),
    sa.Index("ix_activation_alerts_source_dedup", "source_id", "dedup_key"),
)

claims = sa.Table(
    "claims",
    metadata,
    _id(),
    sa.Column(
        "service_id", sa.Integer, sa.ForeignKey("services.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column(
        "activation_id",
        sa.Integer,
        sa.ForeignKey("activations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("rule_id", sa.String(128), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.Column("released_at", UTCDateTime, nullable=True),
    sa.Column("released_by", sa.String(320), nullable=True),
    sa.Index("ix_claims_service_open", "service_id", "released_at"),
)

held_alerts = sa.Table(
    "held_alerts",
    metadata,
    _id(),
    sa.Column(
        "window_id",
        sa.Integer,
        sa.ForeignKey("maintenance_windows.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column(
        "event_id", sa.Integer, sa.ForeignKey("alert_events.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("rule_id", sa.String(128), nullable=False),
    sa.Column("released_at", UTCDateTime, nullable=True),
)

rule_errors = sa.Table(
    "rule_errors",
    metadata,
    _id(),
    sa.Column("rule_id", sa.String(128), nullable=False),
    sa.Column(
        "event_id", sa.Integer, sa.ForeignKey("alert_events.id", ondelete="SET NULL"), nullable=True
    ),
    sa.Column(
        "service_id", sa.Integer, sa.ForeignKey("services.id", ondelete="CASCADE"), nullable=True
    ),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False, default=utcnow),
)

# --- notifications ------------------------------------------------------------------------

channels = sa.Table(
    "channels",
    metadata,
    _id(),
    _team_fk(),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    # `url` and `secret` in it are encrypted (engine.vault, engine.channels.SEALED_FIELDS).
    sa.Column("config", JSONType, nullable=False, default=dict),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("disabled_reason", sa.Text, nullable=True),
    *_origin(),
    _created(),
    _updated(),
    sa.UniqueConstraint("team_id", "key"),
)

subscribers = sa.Table(
    "subscribers",
    metadata,
    _id(),
    sa.Column(
        "page_id", sa.Integer, sa.ForeignKey("status_pages.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("channel", sa.String(10), nullable=False),
    # An email, a phone number, an account user's email; for a webhook, the keyed lookup
    # digest of its page and URL (engine.subscribers.webhook_columns): the URL is a secret.
    sa.Column("address", sa.String(2048), nullable=False),
    # A webhook's URL, encrypted (engine.vault), and its scheme and host, which managers see.
    sa.Column("webhook_url", sa.Text, nullable=True),
    sa.Column("webhook_host", sa.String(2048), nullable=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    # Service keys the subscriber follows; null means every service of the page.
    sa.Column("services", JSONType, nullable=True),
    sa.Column("confirmed", sa.Boolean, nullable=False, default=False),
    # The stored half of the subscriber's own links (engine.subscriber_links): the token
    # is this and a verifier derived from the secret key, made again for each message and
    # never stored. A new confirmation round gets a new confirm selector.
    sa.Column("link_selector", sa.String(32), nullable=False, unique=True, default=_new_selector),
    sa.Column("confirm_selector", sa.String(32), nullable=True, unique=True),
    # Links sent before tokens were derived (migration 0022): the keyed digest of the
    # random token they carry (engine.vault), so they keep working.
    sa.Column("legacy_link_digest", sa.String(80), nullable=True, unique=True),
    sa.Column("legacy_confirm_digest", sa.String(80), nullable=True, unique=True),
    # Encrypted (engine.vault): the sender signs each delivery with it.
    sa.Column("webhook_secret", sa.Text, nullable=True),
    sa.Column("disabled_reason", sa.Text, nullable=True),
    # Permanent failures in a row (a success resets it); the third disables the subscriber.
    sa.Column("permanent_failures", sa.Integer, nullable=False, default=0, server_default="0"),
    # Set on rows an admin imported: who did, when, and whether they skipped the double
    # opt-in (the subscriber said yes elsewhere, as the importer vouched).
    sa.Column("imported_by", sa.String(320), nullable=True),
    sa.Column("imported_at", UTCDateTime, nullable=True),
    sa.Column(
        "confirmation_skipped", sa.Boolean, nullable=False, default=False, server_default=sa.false()
    ),
    _created(),
    sa.UniqueConstraint("page_id", "channel", "address"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    _id(),
    # Deterministic: what is sent, to whom (e.g. "incident-update:42:subscriber:7"), so that a
    # retried fan-out never creates a second delivery.
    sa.Column("dedup_key", sa.String(300), nullable=False, unique=True),
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=True,
    ),
    sa.Column(
        "channel_id", sa.Integer, sa.ForeignKey("channels.id", ondelete="CASCADE"), nullable=True
    ),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("message", JSONType, nullable=False),
    # pending | sending | sent | failed, or, for people's notifications that a later step
    # carried or that changed nothing (workers.coalesce), superseded | unchanged
    sa.Column("status", sa.String(10), nullable=False, default="pending"),
    # Real send attempts (a claim that sent nothing is not one).
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    # A pending delivery that failed for now is not tried again before this (its backoff,
    # or the provider's Retry-After).
    sa.Column("next_attempt_at", UTCDateTime, nullable=True),
    # People's notifications: what they continue ("incident:<id>:page:<id>") and their
    # order in it, so that steps close together go out as one message (workers.coalesce).
    sa.Column("thread", sa.String(120), nullable=True),
    sa.Column("step", sa.BigInteger, nullable=True),
    _created(),
    _updated(),
    # The retention purge (finished ones by last change) and the sweeps (pending or sending
    # ones past a time) read by these two.
    sa.Index("ix_deliveries_status_updated", "status", "updated_at"),
    sa.Index("ix_deliveries_subscriber_thread", "subscriber_id", "thread", "step"),
)

# --- audit, outbox, deadlines --------------------------------------------------------------------

audit_log = sa.Table(
    "audit_log",
    metadata,
    _id(),
    sa.Column("at", UTCDateTime, nullable=False, default=utcnow),
    _team_fk(nullable=True),
    sa.Column("actor", sa.String(320), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("object_kind", sa.String(40), nullable=False),
    sa.Column("object_key", sa.String(200), nullable=False),
    sa.Column("detail", JSONType, nullable=False, default=dict),
)

outbox = sa.Table(
    "outbox",
    metadata,
    _id(),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("payload", JSONType, nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    # A dispatcher's claim; a claim older than the lease is taken over by another dispatcher.
    sa.Column("claimed_at", UTCDateTime, nullable=True),
    sa.Column("claimed_by", sa.String(100), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("done_at", UTCDateTime, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_outbox_pending", "done_at", "id"),
)

deadlines = sa.Table(
    "deadlines",
    metadata,
    _id(),
    sa.Column("kind", sa.String(40), nullable=False),
    # (kind, key) is unique: rescheduling the same deadline moves it rather than adding one.
    sa.Column("key", sa.String(300), nullable=False),
    sa.Column("due_at", UTCDateTime, nullable=False),
    sa.Column("payload", JSONType, nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    sa.UniqueConstraint("kind", "key"),
    sa.Index("ix_deadlines_due", "due_at"),
)


def _ids_never_reused() -> None:
    """A deleted row's id never names a new row: sessions, outbox dedup keys and links rely on
    it. PostgreSQL's sequences never go back; SQLite gives out the largest id in use plus one
    unless the table is AUTOINCREMENT, so every table with an integer `id` is. Set here for
    all of them, so a new table cannot forget (migration 0007 rebuilt the older ones)."""
    for table in metadata.tables.values():
        if "id" in table.c and table.c.id.primary_key:
            table.dialect_options["sqlite"]["autoincrement"] = True


_ids_never_reused()
