"""The rule file format of DESIGN.md ("Rule files") as strict pydantic models.

Unknown fields and operators are errors, durations are written with a unit (`30s`, `5m`,
`2h`, `1d`, or combined as `1h30m`), regular expressions must compile, and `gt` and its
friends take numbers only. References to services, templates, channels and sources are
checked separately (`rules.validate`), because they depend on the config.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from engine.models import ServiceStatus, Severity

from . import regex

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
KEY_PATTERN = r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$"
RULE_ID_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
EVENT_FIELDS = ("source", "source_type", "dedup_key", "severity", "summary", "details")
LABEL_PREFIX = "labels."


def parse_duration(value: Any) -> timedelta:
    """`30s`, `5m`, `2h`, `1d` or combinations like `1h30m` as a timedelta."""
    if isinstance(value, timedelta):
        return value
    text = value.strip() if isinstance(value, str) else None
    match = _DURATION.match(text) if text else None
    if not text or not match:
        raise ValueError(
            f"bad duration {value!r}: write a number with a unit, like 30s, 5m, 2h, 1d or 1h30m"
        )
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def check_field_path(value: str) -> str:
    """An event field name, or `labels.<name>` where the name may itself contain dots."""
    if value in EVENT_FIELDS:
        return value
    if value.startswith(LABEL_PREFIX) and len(value) > len(LABEL_PREFIX):
        return value
    known = ", ".join(EVENT_FIELDS)
    raise ValueError(f"unknown field '{value}': use labels.<name> or one of {known}")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
FieldPath = Annotated[str, BeforeValidator(lambda v: check_field_path(_text(v, "field name")))]
Scalar = StrictStr | StrictInt | StrictFloat | StrictBool
Number = StrictInt | StrictFloat
Key = Annotated[str, Field(pattern=KEY_PATTERN, max_length=64)]


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, not {type(value).__name__}")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Condition(Strict):
    """The operators of one `match` entry; a bare value is `eq`. All given must hold."""

    eq: Scalar | None = None
    ne: Scalar | None = None
    in_: list[Scalar] | None = Field(None, alias="in", min_length=1, max_length=200)
    not_in: list[Scalar] | None = Field(None, min_length=1, max_length=200)
    gt: Number | None = None
    gte: Number | None = None
    lt: Number | None = None
    lte: Number | None = None
    startswith: StrictStr | None = None
    endswith: StrictStr | None = None
    contains: StrictStr | None = None
    exists: StrictBool | None = None
    matches: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_value_is_eq(cls, value: Any) -> Any:
        if isinstance(value, dict):
            if "eq" in value:
                raise ValueError("write `field: value` for equality, there is no 'eq' operator")
            if not value:
                raise ValueError("a condition needs at least one operator")
            return value
        if isinstance(value, list):
            raise ValueError("a list is not a condition: write {in: [...]} for one of several")
        if value is None:
            raise ValueError("a condition needs a value")
        return {"eq": value}

    @field_validator("matches")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                regex.compile_pattern(value)
            except regex.RegexError as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    def operators(self) -> list[tuple[str, Any]]:
        """`(operator, argument)` pairs in declaration order (`in` for `in_`)."""
        return [
            ("in" if name == "in_" else name, getattr(self, name))
            for name in type(self).model_fields
            if getattr(self, name) is not None
        ]


class Window(Strict):
    count: int = Field(ge=1, le=1000)
    within: Duration


class IncidentOnEnd(StrEnum):
    RESOLVE = "resolve"
    KEEP = "keep"


class ResolvePolicy(Strict):
    after: Duration = timedelta(0)
    timeout: Duration | None = None
    incident: IncidentOnEnd = IncidentOnEnd.RESOLVE


class OpenIncident(Strict):
    template: Key
    notify: StrictBool = True


class Notify(Strict):
    channel: Key


class Action(Strict):
    """One entry of `then`: exactly one of `set_status`, `open_incident`, `notify`."""

    set_status: ServiceStatus | None = None
    open_incident: OpenIncident | None = None
    notify: Notify | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Action:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "each `then` entry is exactly one of set_status, open_incident, notify"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.set_status in (ServiceStatus.OPERATIONAL, ServiceStatus.UNDER_MAINTENANCE):
            raise ValueError(
                f"set_status: {self.set_status} is not a claim a rule can make"
                " (use degraded, partial_outage or major_outage)"
            )
        return self


class Rule(Strict):
    """One rule: when `match` holds on a firing event, the activation does `then`."""

    id: str = Field(pattern=RULE_ID_PATTERN, max_length=128)
    description: str = ""
    match: dict[FieldPath, Condition] = Field(default_factory=dict, max_length=64)
    services: list[Key] | None = Field(None, min_length=1)
    service_from: FieldPath | None = None
    for_: Duration | None = Field(None, alias="for")
    window: Window | None = None
    group_by: list[FieldPath] | None = Field(None, min_length=1, max_length=10)
    then: list[Action] = Field(min_length=1, max_length=20)
    resolve: ResolvePolicy = ResolvePolicy()
    continue_: StrictBool = Field(False, alias="continue")

    @field_validator("match")
    @classmethod
    def _fields_known(cls, value: dict[str, Condition]) -> dict[str, Condition]:
        for name, condition in value.items():
            _check_values(name, condition)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        for problem in exclusive_problems(self.model_dump(by_alias=True, exclude_none=True)):
            raise ValueError(problem[1])
        if self.claims and self.services is None and self.service_from is None:
            raise ValueError("set_status needs `services` or `service_from`")
        if self.window is not None and self.window.count > 1 and not self.group_by:
            # Without group_by each alert is its own group: a count above 1 could never be
            # reached, and the rule would silently never act.
            raise ValueError(
                "window.count above 1 needs `group_by` (each alert is its own group otherwise)"
            )
        return self

    @property
    def claims(self) -> list[ServiceStatus]:
        return [a.set_status for a in self.then if a.set_status is not None]

    @property
    def incident(self) -> OpenIncident | None:
        return next((a.open_incident for a in self.then if a.open_incident), None)

    @property
    def channels(self) -> list[str]:
        return [a.notify.channel for a in self.then if a.notify is not None]


def exclusive_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for options that exclude each other, checked on the raw mapping so
    that `rules check` reports them together with every field error."""
    problems = []
    if raw.get("for") is not None and raw.get("window") is not None:
        problems.append(("window", "`for` and `window` cannot be used together"))
    if raw.get("services") is not None and raw.get("service_from") is not None:
        problems.append(("service_from", "use either `services` or `service_from`, not both"))
    return problems


def _check_values(name: str, condition: Condition) -> None:
    if name != "severity":
        return
    allowed = {s.value for s in Severity}
    for op, arg in condition.operators():
        values = arg if isinstance(arg, list) else [arg]
        if op in ("eq", "ne", "in", "not_in"):
            for v in values:
                if v not in allowed:
                    raise ValueError(
                        f"severity {v!r} never occurs: events carry one of {', '.join(allowed)}"
                    )


class RuleFile(Strict):
    version: Literal[1]
    rules: list[Rule] = Field(default_factory=list)
