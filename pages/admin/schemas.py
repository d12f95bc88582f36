"""The admin API's shapes: input models (strict: unknown fields are 422) and output models.

Input, stored and public shapes are separate (STYLE.md 5): these are the API's own, and the
OpenAPI document is generated from them, so the document and the validation cannot drift.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePath
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, computed_field

from engine import origins
from engine.models import (
    DOMAIN_PATTERN,
    KEY_PATTERN,
    RATE_LIMIT_PATTERN,
    SLUG_PATTERN,
    Impact,
    IncidentStatus,
    MaintenanceStatus,
    OnEnd,
    PageType,
    Role,
    ServiceStatus,
)

MAX_ID = 2**31 - 1


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the store.
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
Key = Annotated[str, Field(pattern=KEY_PATTERN)]
Name = Annotated[Text, Field(min_length=1, max_length=200)]
LongText = Annotated[Text, Field(max_length=10_000)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
#: A service named by its id (a number) or its key in the team (a string).
ServiceRef = Annotated[Id | Key, Field(description="a service's id, or its key in the team")]
#: An `impacts` map's key: a service id (digits) or a service key.
ImpactKey = Annotated[str, Field(pattern=rf"^([1-9][0-9]{{0,9}}|{KEY_PATTERN[1:-1]})$")]
Position = Annotated[int, Field(ge=0, le=100_000)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Declared(BaseModel):
    """Where a config-manageable object comes from (`engine.origins`)."""

    origin: str | None = Field(
        default=None,
        description="the config file that declares the object (its path), or `ui`, `api` or "
        "`cli` where it was made. An object a config file declares can still be edited "
        "here; `beacon apply --dry-run` of the file reports the edit as drift, and the next "
        "`beacon apply` of it sets the file's values back",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def config_file(self) -> str | None:
        """The name of the config file that declares the object, if one does."""
        return PurePath(self.origin).name if origins.from_config(self.origin) else None


# --- teams, users, keys ---------------------------------------------------------------------


class TeamIn(Body):
    key: Key
    name: Annotated[Text, Field(max_length=200)] = ""
    private: bool = False


class TeamPatch(Body):
    name: Annotated[Text, Field(max_length=200)] | None = None
    private: bool | None = None


class TeamOut(Out, Declared):
    id: int
    key: str
    name: str
    private: bool
    created_at: datetime


class UserIn(Body):
    email: Annotated[Text, Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
    role: Role
    name: Annotated[Text, Field(max_length=200)] = ""
    teams: list[Key] = Field(default_factory=list, max_length=100)
    password: Annotated[Text, Field(min_length=8, max_length=200)] | None = None


class UserPatch(Body):
    name: Annotated[Text, Field(max_length=200)] | None = None
    role: Role | None = None
    teams: list[Key] | None = Field(default=None, max_length=100)
    active: bool | None = None
    password: Annotated[Text, Field(min_length=8, max_length=200)] | None = None


class UserOut(Out):
    id: int
    email: str
    name: str
    role: Role
    teams: list[str]
    active: bool
    created_at: datetime


class ApiKeyIn(Body):
    name: Name
    team: Key | None = None
    admin: bool = False


class FeedLinkIn(Body):
    page: Annotated[str, Field(min_length=1, max_length=100, description="the page's slug")]


class FeedLinkUrls(BaseModel):
    rss: str
    atom: str
    calendar: str


class FeedLinkOut(Out):
    id: int
    prefix: str
    page: str
    page_name: str
    created_at: datetime
    last_used_at: datetime | None
    urls: FeedLinkUrls | None = Field(
        default=None, description="only in the answer that makes the link (kept as a hash)"
    )


class ApiKeyOut(Out):
    id: int
    name: str
    team: str | None
    admin: bool
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself: shown once, only its hash is kept")


# --- services, overrides, groups -----------------------------------------------------------------


class ServiceIn(Body):
    key: Key
    name: Name
    team: Key | None = Field(default=None, description="defaults to the API key's team")
    group: Name | None = None
    description: Annotated[Text, Field(max_length=2000)] = ""
    position: Position = 0


class ServicePatch(Body):
    name: Name | None = None
    group: Name | None = Field(default=None, description="null removes the service from its group")
    description: Annotated[Text, Field(max_length=2000)] | None = None
    position: Position | None = None


class OverrideOut(Out):
    status: ServiceStatus
    until: datetime | None
    reason: str | None
    by: str | None


class ServiceOut(Out, Declared):
    id: int
    key: str
    team: str
    name: str
    description: str
    group: str | None
    position: int
    status: ServiceStatus
    status_since: datetime
    override: OverrideOut | None
    created_at: datetime
    updated_at: datetime


class OverrideIn(Body):
    status: ServiceStatus
    until: AwareDatetime | None = Field(
        default=None, description="when the override ends by itself (in the future)"
    )
    reason: Annotated[Text, Field(max_length=2000)] | None = None


class GroupIn(Body):
    name: Name
    team: Key | None = None
    services: list[ServiceRef] = Field(min_length=1, max_length=500)


class GroupPatch(Body):
    name: Name | None = None
    services: list[ServiceRef] | None = Field(default=None, min_length=1, max_length=500)


class GroupOut(Out):
    team: str
    name: str
    services: list[int]


# --- pages ---------------------------------------------------------------------------------------


class PageIn(Body):
    slug: Annotated[str, Field(pattern=SLUG_PATTERN)]
    name: Name
    type: PageType = PageType.PUBLIC
    teams: list[Key] = Field(
        default_factory=list, max_length=20, description="managing teams; defaults to the key's"
    )
    services: list[ServiceRef] = Field(default_factory=list, max_length=500)
    time_zone: Annotated[Text, Field(max_length=64)] = "UTC"
    custom_domain: Annotated[str, Field(max_length=253, pattern=DOMAIN_PATTERN)] | None = None
    active: bool = False
    hide_uptime: bool = False
    notify_component_changes: bool = False


class PagePatch(Body):
    name: Name | None = None
    type: PageType | None = None
    teams: list[Key] | None = Field(default=None, min_length=1, max_length=20)
    services: list[ServiceRef] | None = Field(default=None, max_length=500)
    time_zone: Annotated[Text, Field(max_length=64)] | None = None
    custom_domain: Annotated[str, Field(max_length=253, pattern=DOMAIN_PATTERN)] | None = None
    active: bool | None = None
    hide_uptime: bool | None = None
    notify_component_changes: bool | None = None


class PageOut(Out, Declared):
    id: int
    public_id: str
    slug: str
    name: str
    type: PageType
    teams: list[str]
    services: list[int]
    time_zone: str
    custom_domain: str | None
    #: Served on its custom domain only once DNS showed the domain is the page's.
    domain_verified: bool = False
    #: Why the periodic re-check stopped serving a domain verified before (DNS lost it).
    domain_withdrawn_because: str | None = None
    active: bool
    hide_uptime: bool
    notify_component_changes: bool
    has_logo: bool
    has_favicon: bool
    url: str
    created_at: datetime
    updated_at: datetime


# --- incident templates ---------------------------------------------------------------------


class TemplateIn(Body):
    key: Key
    team: Key | None = None
    title: Annotated[Text, Field(min_length=1, max_length=500)]
    message: LongText = ""
    resolve_message: LongText = ""
    status: IncidentStatus = IncidentStatus.INVESTIGATING
    services: dict[Key, ServiceStatus] = Field(default_factory=dict, max_length=500)


class TemplatePatch(Body):
    title: Annotated[Text, Field(min_length=1, max_length=500)] | None = None
    message: LongText | None = None
    resolve_message: LongText | None = None
    status: IncidentStatus | None = None
    services: dict[Key, ServiceStatus] | None = Field(default=None, max_length=500)


class TemplateOut(Out, Declared):
    id: int
    key: str
    team: str
    title: str
    message: str
    resolve_message: str
    status: IncidentStatus
    services: dict[str, ServiceStatus]
    created_at: datetime
    updated_at: datetime


# --- incidents --------------------------------------------------------------------------------


class IncidentIn(Body):
    team: Key | None = None
    title: Annotated[Text, Field(min_length=1, max_length=500)]
    status: IncidentStatus = IncidentStatus.INVESTIGATING
    message: LongText = ""
    impacts: dict[ImpactKey, ServiceStatus] = Field(
        default_factory=dict,
        max_length=500,
        description="service id or key -> the status the incident puts on it",
    )
    started_at: AwareDatetime | None = Field(default=None, description="backdates the incident")
    impact_override: Impact | None = None
    notify: bool = True


class IncidentPatch(Body):
    title: Annotated[Text, Field(min_length=1, max_length=500)] | None = None
    started_at: AwareDatetime | None = None
    impact_override: Impact | None = Field(default=None, description="null clears the override")


class AffectedOut(Out):
    service_id: int
    impact: ServiceStatus


class IncidentOut(Out):
    id: int
    public_id: str
    team: str
    title: str
    status: IncidentStatus
    impact: Impact
    impact_override: Impact | None
    started_at: datetime
    identified_at: datetime | None
    monitoring_at: datetime | None
    resolved_at: datetime | None
    managed_by: str
    services: list[AffectedOut]
    created_at: datetime
    updated_at: datetime


class UpdateIn(Body):
    status: IncidentStatus | None = None
    message: LongText = ""
    impacts: dict[ImpactKey, ServiceStatus] | None = Field(
        default=None,
        max_length=500,
        description="service id or key -> status; replaces the affected services",
    )
    display_at: AwareDatetime | None = Field(default=None, description="backdates the update")
    notify: bool = True


class UpdatePatch(Body):
    message: LongText | None = None
    display_at: AwareDatetime | None = None


class UpdateOut(Out):
    id: int
    public_id: str
    incident_id: int
    status: IncidentStatus
    body: str
    display_at: datetime
    author: str | None
    deliver_notifications: bool
    affected: list[dict[str, Any]] | None
    created_at: datetime


# --- maintenance ------------------------------------------------------------------------------


class MaintenanceIn(Body):
    team: Key | None = None
    key: Key | None = None
    title: Annotated[Text, Field(min_length=1, max_length=500)]
    message: LongText = ""
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    services: list[ServiceRef] = Field(min_length=1, max_length=500)
    notify: bool = False
    on_end: OnEnd = OnEnd.REPLAY


class MaintenancePatch(Body):
    title: Annotated[Text, Field(min_length=1, max_length=500)] | None = None
    message: LongText | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    services: list[ServiceRef] | None = Field(default=None, min_length=1, max_length=500)
    notify: bool | None = None
    on_end: OnEnd | None = None


class MaintenanceOut(Out, Declared):
    id: int
    public_id: str
    key: str | None
    team: str
    title: str
    message: str
    starts_at: datetime
    ends_at: datetime
    services: list[int]
    notify: bool
    on_end: OnEnd
    status: MaintenanceStatus
    started_at: datetime | None
    completed_at: datetime | None


# --- alert sources ---------------------------------------------------------------------------


IntegrationKey = Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


class AlertSourceIn(Body):
    key: Key
    name: Name
    type: Annotated[str, Field(min_length=1, max_length=40)]
    team: Key | None = None
    integration_key: IntegrationKey | None = Field(
        default=None, description="generated when left out"
    )
    signing_secret: Annotated[Text, Field(min_length=1, max_length=500)] | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    rate_limit: Annotated[str, Field(pattern=RATE_LIMIT_PATTERN)] | None = None
    enabled: bool = True


class AlertSourcePatch(Body):
    name: Name | None = None
    signing_secret: Annotated[Text, Field(min_length=1, max_length=500)] | None = Field(
        default=None, description="null removes the secret"
    )
    settings: dict[str, Any] | None = None
    rate_limit: Annotated[str, Field(pattern=RATE_LIMIT_PATTERN)] | None = None
    enabled: bool | None = None


class AlertSourceOut(Out, Declared):
    id: int
    key: str
    team: str
    name: str
    type: str
    integration_key: str | None = Field(
        description="only in the answer that creates the source (the store keeps a digest); "
        "a new one comes from rotate-key"
    )
    webhook_url: str | None = Field(description="with integration_key, only when created")
    key_hint: str | None = Field(
        description="the key's last 4 characters (keys of 20 or more), to those who manage it"
    )
    has_signing_secret: bool
    settings: dict[str, Any]
    rate_limit: str | None
    enabled: bool
    last_event_at: datetime | None
    created_at: datetime
    updated_at: datetime


# --- channels -----------------------------------------------------------------------------------


class ChannelIn(Body):
    key: Key
    type: Annotated[str, Field(min_length=1, max_length=40)]
    team: Key | None = None
    url: Annotated[str, Field(max_length=2048, pattern=r"^https?://")] | None = None
    address: Annotated[Text, Field(min_length=3, max_length=320)] | None = None
    secret: Annotated[Text, Field(max_length=500)] | None = None
    enabled: bool = True


class ChannelPatch(Body):
    url: Annotated[str, Field(max_length=2048, pattern=r"^https?://")] | None = None
    address: Annotated[Text, Field(min_length=3, max_length=320)] | None = None
    secret: Annotated[Text, Field(max_length=500)] | None = Field(
        default=None, description="null removes the secret"
    )
    enabled: bool | None = None


class ChannelOut(Out, Declared):
    id: int
    key: str
    team: str
    type: str
    url: str | None = Field(
        description="only in the answer to the request that set it: the store keeps it encrypted"
    )
    address: str | None = Field(description="only for those who manage the channel")
    has_secret: bool
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
