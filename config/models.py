"""The config file's shape (DESIGN.md, "Config file"), as strict pydantic models.

Unknown fields are errors (a misspelt `stauts:` must not be silently ignored). These models
only check each object on its own; references between objects are checked by
`config.resolve`, which knows which team each object belongs to.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from engine.channels import CHANNEL_TARGET
from engine.models import (
    DOMAIN_PATTERN,
    KEY_PATTERN,
    RATE_LIMIT_PATTERN,
    SERVICE_REF_PATTERN,
    SLUG_PATTERN,
    IncidentStatus,
    OnEnd,
    PageType,
    ServiceStatus,
)
from rules.errors import did_you_mean

Key = Annotated[str, Field(pattern=KEY_PATTERN)]
# A service reference: its key in the referring object's team, or `team/key` on a page
# managed by several teams.
ServiceRef = Annotated[str, Field(pattern=SERVICE_REF_PATTERN)]
Name = Annotated[str, Field(min_length=1, max_length=200)]

_ZONES: set[str] = set()


def _time_zone(value: str) -> str:
    if not _ZONES:
        _ZONES.update(available_timezones())
    if value != "UTC" and value not in _ZONES:
        hint = did_you_mean(value, _ZONES) or " (use an IANA name such as Europe/Berlin)"
        raise ValueError(f"unknown time zone {value!r}{hint}")
    return value


TimeZone = Annotated[str, AfterValidator(_time_zone)]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: An environment variable's name, as `{env: NAME}` gives it.
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class EnvRef(Spec):
    """A secret the file does not hold: `{env: NAME}`, read from the environment of
    `beacon apply` (`config.desired` says what an unset one means)."""

    env: str = Field(pattern=ENV_NAME_PATTERN)


def _secret_form(value: Any) -> str:
    return "<env>" if isinstance(value, dict | EnvRef) else "<text>"


#: The forms of a secret field: the text itself, or `{env: NAME}`. The tags are dropped
#: from error locations (`config.load`), so an error names the field as before.
SECRET_TAGS = ("<text>", "<env>")

IntegrationKey = Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
SigningSecret = Annotated[str, Field(min_length=1, max_length=500)]
ChannelUrl = Annotated[str, Field(max_length=2048, pattern=r"^https?://")]
ChannelSecret = Annotated[str, Field(max_length=500)]


_T = TypeVar("_T")

#: A secret field of text type `_T`: the text, or `{env: NAME}`.
Secret = Annotated[
    Annotated[_T, Tag("<text>")] | Annotated[EnvRef, Tag("<env>")],
    Discriminator(_secret_form),
]


class TeamSpec(Spec):
    key: Key
    name: str = Field(default="", max_length=200)
    private: bool = False
    #: Emails of existing users (`beacon user create`); left out, membership is not managed.
    members: list[Annotated[str, Field(min_length=3, max_length=320)]] | None = None


class ServiceSpec(Spec):
    key: Key
    name: Name
    team: Key
    group: str | None = Field(default=None, min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    position: int | None = Field(default=None, ge=0, le=100_000)


class AlertSourceSpec(Spec):
    key: Key
    name: Name
    type: str = Field(min_length=1, max_length=40)
    team: Key
    integration_key: Secret[IntegrationKey] | None = None
    signing_secret: Secret[SigningSecret] | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    rate_limit: str | None = Field(default=None, pattern=RATE_LIMIT_PATTERN)
    enabled: bool = True


class ChannelSpec(Spec):
    """A team's notification target for rules' `notify` action."""

    key: Key
    team: Key
    type: str = Field(min_length=1, max_length=40)
    url: Secret[ChannelUrl] | None = None
    address: str | None = Field(default=None, min_length=3, max_length=320)
    secret: Secret[ChannelSecret] | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    @model_validator(mode="after")
    def _has_target(self) -> ChannelSpec:
        needed = CHANNEL_TARGET.get(self.type)
        if needed and not getattr(self, needed):
            raise ValueError(f"a {self.type} channel needs `{needed}`")
        return self

    def config(self) -> dict[str, Any]:
        """The channel's stored `config`: its target fields plus adapter settings (a secret
        given as `{env: NAME}` stays an `EnvRef` here: `config.desired` resolves it)."""
        found: dict[str, Any] = dict(self.settings)
        for name in ("url", "address", "secret"):
            value = getattr(self, name)
            if value is not None:
                found[name] = value
        return found


class TemplateSpec(Spec):
    key: Key
    team: Key
    title: str = Field(min_length=1, max_length=500)
    message: str = Field(default="", max_length=10_000)
    resolve_message: str = Field(default="", max_length=10_000)
    status: IncidentStatus = IncidentStatus.INVESTIGATING
    services: dict[Key, ServiceStatus] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _open_status(self) -> TemplateSpec:
        if self.status in (IncidentStatus.RESOLVED, IncidentStatus.POSTMORTEM):
            raise ValueError("a template opens an incident: status cannot be resolved/postmortem")
        return self


class MaintenanceSpec(Spec):
    key: Key
    team: Key
    title: str | None = Field(default=None, min_length=1, max_length=500)
    services: list[Key] = Field(min_length=1)
    start: AwareDatetime
    end: AwareDatetime
    message: str = Field(default="", max_length=10_000)
    notify: bool = False
    on_end: OnEnd = OnEnd.REPLAY

    @model_validator(mode="after")
    def _ends_after_start(self) -> MaintenanceSpec:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    @property
    def display_title(self) -> str:
        return self.title or (self.message.splitlines()[0] if self.message else self.key)


class PageSpec(Spec):
    slug: str = Field(pattern=SLUG_PATTERN)
    name: Name
    type: PageType = PageType.PUBLIC
    teams: list[Key] = Field(min_length=1)
    services: list[ServiceRef] = Field(default_factory=list)
    time_zone: TimeZone = "UTC"
    custom_domain: str | None = Field(default=None, max_length=253, pattern=DOMAIN_PATTERN)
    logo: str | None = Field(default=None, min_length=1)
    favicon: str | None = Field(default=None, min_length=1)
    active: bool = True
    hide_uptime: bool = False
    notify_component_changes: bool = False

    @property
    def team(self) -> str:
        return self.teams[0]


class ConfigFile(Spec):
    """The whole file. A kind left out is not managed by this file (and never pruned)."""

    teams: list[TeamSpec] | None = None
    services: list[ServiceSpec] | None = None
    alert_sources: list[AlertSourceSpec] | None = None
    channels: list[ChannelSpec] | None = None
    incident_templates: list[TemplateSpec] | None = None
    maintenance_windows: list[MaintenanceSpec] | None = None
    status_pages: list[PageSpec] | None = None
    rules: list[str] | None = None


#: The model of each kind's objects (`config.load` checks each object on its own).
KIND_MODELS: dict[str, type[Spec]] = {
    "teams": TeamSpec,
    "services": ServiceSpec,
    "alert_sources": AlertSourceSpec,
    "channels": ChannelSpec,
    "incident_templates": TemplateSpec,
    "maintenance_windows": MaintenanceSpec,
    "status_pages": PageSpec,
}


def declared_kinds(config: ConfigFile) -> set[str]:
    """The kinds the file declares (present, even as an empty list): the kinds prune touches."""
    return {name for name in ConfigFile.model_fields if getattr(config, name) is not None}


__all__ = [
    "KIND_MODELS",
    "SECRET_TAGS",
    "EnvRef",
    "AlertSourceSpec",
    "ChannelSpec",
    "ConfigFile",
    "MaintenanceSpec",
    "PageSpec",
    "ServiceSpec",
    "TeamSpec",
    "TemplateSpec",
    "declared_kinds",
]
