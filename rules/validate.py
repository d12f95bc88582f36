"""Checking rule files: syntax, schema, references and the engine's limits, all at once.

`check(sources, known)` never stops at the first problem: `beacon rules check` prints every
problem with `file:line:column` and the rule id, and `apply` refuses the files if there is
any. References resolve within a team (DESIGN.md: "A rule acts within the team of the alert
source that sent the event"): a rule that can only hear sources of some teams must name
services, templates and channels that exist in each of those teams.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .errors import RuleProblem, RulesInvalid, did_you_mean
from .schema import Condition, Rule, RuleFile, exclusive_problems
from .yamlpos import Located, load

# Beyond these the compiled rulesets would cross durable_rules' measured limits (512 rules
# testing one field hang; 255 event properties raise error 302), even after partitioning.
MAX_RULES = 5000
MAX_CONDITIONS_PER_RULE = 64


@dataclass(frozen=True)
class TeamKeys:
    """The keys declared in one team: what a rule acting there may name."""

    services: frozenset[str] = frozenset()
    templates: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    sources: Mapping[str, str] = field(default_factory=dict)  # source key -> source type


@dataclass(frozen=True)
class Known:
    """Every team's keys, from the config file or from the store."""

    teams: Mapping[str, TeamKeys]


def known_keys(
    teams: Iterable[str],
    keys: Callable[[str, str], Iterable[str]],
    source_types: Mapping[tuple[str, str], str],
) -> Known:
    """What rules may name, per team: the one way everything builds it (`apply`, `rules
    check` and `rules test` with `--config`, `rules check` against the store, the web UI's
    rule editor).

    `keys(kind, team)` gives the keys of a kind ("services", "incident_templates",
    "channels", "alert_sources") in a team; `source_types` each source's adapter type."""
    return Known(
        {
            team: TeamKeys(
                services=frozenset(keys("services", team)),
                templates=frozenset(keys("incident_templates", team)),
                channels=frozenset(keys("channels", team)),
                # A source the models refused has no type to go by.
                sources={k: source_types.get((team, k), "") for k in keys("alert_sources", team)},
            )
            for team in sorted(teams)
        }
    )


@dataclass(frozen=True)
class LocatedRule:
    """A validated rule, its position in the global order and where it was written."""

    rule: Rule
    index: int
    file: str
    line: int
    column: int = 1
    #: The teams whose sources this rule hears (its file's owners); None: every team.
    teams: frozenset[str] | None = None

    def hears(self, team: str | None) -> bool:
        """Whether an event from a source of `team` (None: not known) may reach this rule."""
        return self.teams is None or team is None or team in self.teams


@dataclass(frozen=True)
class RuleBookSpec:
    """All rules of a rule set, in evaluation order, plus a digest of their text."""

    rules: tuple[LocatedRule, ...]
    digest: str
    files: Mapping[str, str]


def stored_spec(
    files: Mapping[str, str] | None, owners: Mapping[str, Iterable[str]] | None = None
) -> RuleBookSpec:
    """The rules of a stored rule set version (None: no rules), each file's rules hearing
    only its owners' sources when `owners` is given. They were validated when published;
    references may have changed since, which is a run-time rule error, not a reason to stop
    evaluating, so they are checked without the world."""
    return check(dict(files), None, owners) if files else RuleBookSpec((), "", {})


def check(
    files: Mapping[str, str],
    known: Known | None,
    owners: Mapping[str, Iterable[str]] | None = None,
) -> RuleBookSpec:
    """Validate `files` ({name: text}, evaluated in sorted name order) against `known`
    (None skips reference checks); raises `RulesInvalid` listing every problem. With
    `owners` ({name: team keys}) each file's rules hear only those teams' sources, and
    their references are checked in those teams only."""
    problems: list[RuleProblem] = []
    ordered: list[LocatedRule] = []
    seen: dict[str, str] = {}
    for name in sorted(files):
        for rule, (line, column), where in _rules_of(name, files[name], problems):
            if rule.id in seen:
                problems.append(
                    RuleProblem(
                        name, *where, f"duplicate rule id (also in {seen[rule.id]})", rule.id
                    )
                )
                continue
            seen[rule.id] = f"{name}:{line}"
            # A file without owners (say, added in the web UI) hears every team.
            teams = frozenset(owners[name]) if owners is not None and name in owners else None
            ordered.append(LocatedRule(rule, len(ordered), name, line, column, teams))
    if len(ordered) > MAX_RULES:
        problems.append(RuleProblem(sorted(files)[-1], 1, 1, f"more than {MAX_RULES} rules"))
    if known is not None:
        for located in ordered:
            problems.extend(check_references(located, _only(known, located.teams)))
    if problems:
        raise RulesInvalid(sorted(set(problems)))
    return RuleBookSpec(tuple(ordered), digest(files, owners), dict(files))


def _only(known: Known, teams: frozenset[str] | None) -> Known:
    if teams is None:
        return known
    return Known({team: keys for team, keys in known.teams.items() if team in teams})


def digest(files: Mapping[str, str], owners: Mapping[str, Iterable[str]] | None = None) -> str:
    """A digest of rule texts by relative path, and of their owners when given: equal
    texts (and owners), equal digest (the version a `beacon apply` or a publish compares
    with the stored one)."""
    canonical = "\0".join(f"{name}\0{files[name]}" for name in sorted(files))
    if owners is not None:
        canonical += "\0owners\0" + "\0".join(
            f"{name}\0{','.join(sorted(owners[name]))}" for name in sorted(owners)
        )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _rules_of(
    name: str, text: str, problems: list[RuleProblem]
) -> Iterable[tuple[Rule, tuple[int, int], tuple[int, int]]]:
    located, load_problems = load(text, name)
    if located is None:
        problems.extend(load_problems)
        return
    problems.extend(_with_rule_ids(load_problems, located))
    data = located.data
    if not isinstance(data, dict):
        problems.append(
            RuleProblem(name, 1, 1, "a rule file is a mapping with `version` and `rules`")
        )
        return
    try:
        RuleFile.model_validate({"version": data.get("version"), "rules": []})
    except ValidationError:
        where = located.where(("version",))
        problems.append(RuleProblem(name, *where, "`version: 1` is required"))
    for key in data:
        if key not in ("version", "rules"):
            problems.append(
                RuleProblem(name, *located.where((key,), key=True), f"unknown field '{key}'")
            )
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        problems.append(RuleProblem(name, *located.where(("rules",)), "`rules` must be a list"))
        return
    for index, raw in enumerate(raw_rules):
        path = ("rules", index)
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        rule_id = rule_id if isinstance(rule_id, str) else None
        if isinstance(raw, dict):
            for key, message in exclusive_problems(raw):
                problems.append(
                    RuleProblem(name, *located.where((*path, key), key=True), message, rule_id)
                )
        try:
            rule = Rule.model_validate(raw)
        except ValidationError as exc:
            problems.extend(
                p for p in _problems(exc, name, located, path, rule_id) if p not in problems
            )
            continue
        conditions = sum(len(c.operators()) for c in rule.match.values())
        if conditions > MAX_CONDITIONS_PER_RULE:
            problems.append(
                RuleProblem(name, *located.where((*path, "match")), "too many conditions", rule.id)
            )
            continue
        yield rule, located.where(path), located.where((*path, "id"))


def _with_rule_ids(problems: list[RuleProblem], located: Located) -> list[RuleProblem]:
    """Name the rule each problem is in (duplicate keys are found before any rule exists)."""
    rules = located.data.get("rules") if isinstance(located.data, dict) else None
    if not isinstance(rules, list):
        return problems
    starts = [
        (located.values[("rules", i)][0], raw.get("id"))
        for i, raw in enumerate(rules)
        if isinstance(raw, dict) and isinstance(raw.get("id"), str)
    ]
    named = []
    for problem in problems:
        owners = [rule_id for line, rule_id in starts if line <= problem.line]
        rule_id = owners[-1] if owners else None
        named.append(
            RuleProblem(problem.file, problem.line, problem.column, problem.message, rule_id)
        )
    return named


def _problems(
    exc: ValidationError, name: str, located: Located, path: tuple[Any, ...], rule_id: str | None
) -> list[RuleProblem]:
    result = []
    for error in exc.errors():
        is_key = "[key]" in error["loc"]
        loc = tuple(item for item in error["loc"] if item != "[key]")
        full = (*path, *loc)
        kind = error["type"]
        if kind == "extra_forbidden":
            message = f"unknown field '{loc[-1]}'" if loc else "unknown field"
            if len(loc) == 1:
                message += did_you_mean(str(loc[0]), _names(Rule))
            if len(loc) >= 3 and loc[0] == "match":
                message = f"unknown operator '{loc[-1]}' in condition on '{loc[1]}'"
                message += did_you_mean(str(loc[-1]), _names(Condition))
            where = located.where(full, key=True)
        elif kind == "missing":
            message = f"missing field '{loc[-1]}'"
            where = located.where(full[:-1])
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            if loc and kind not in ("value_error",):
                message = f"{'.'.join(str(p) for p in loc)}: {message}"
            where = located.where(full, key=is_key)
        result.append(RuleProblem(name, *where, message, rule_id))
    return result


def _names(model: type[Any]) -> list[str]:
    """The field names of a rule model as they are written (`for`, `continue`, `in`)."""
    return [f.alias or name for name, f in model.model_fields.items()]


def teams_for(rule: Rule, known: Known) -> tuple[dict[str, TeamKeys], str | None]:
    """The teams whose sources can trigger `rule` (by its `source`/`source_type`
    conditions), and a problem message when a named source or type exists nowhere."""
    keys = _values(rule, "source")
    types = _values(rule, "source_type")
    teams = {}
    for team, team_keys in known.teams.items():
        sources = team_keys.sources
        hits = [
            k
            for k, t in sources.items()
            if (keys is None or k in keys) and (types is None or t in types)
        ]
        if hits:
            teams[team] = team_keys
    if not teams:
        if keys is not None:
            near = {k for keys_of in known.teams.values() for k in keys_of.sources}
            hint = did_you_mean(next(iter(keys)), near) if len(keys) == 1 else ""
            return {}, f"unknown source {', '.join(repr(k) for k in sorted(keys))}{hint}"
        if types is not None:
            near = {t for keys_of in known.teams.values() for t in keys_of.sources.values()}
            hint = did_you_mean(next(iter(types)), near) if len(types) == 1 else ""
            return {}, f"no alert source of type {', '.join(repr(t) for t in sorted(types))}{hint}"
    return teams, None


def _values(rule: Rule, field_name: str) -> set[str] | None:
    condition = rule.match.get(field_name)
    if condition is None:
        return None
    values: set[str] | None = None
    for op, arg in condition.operators():
        if op == "eq":
            values = {str(arg)}
        elif op == "in":
            values = {str(v) for v in arg}
    return values


def check_references(located: LocatedRule, known: Known) -> list[RuleProblem]:
    """Problems with the services, templates, channels and sources `located` names."""
    rule = located.rule
    teams, problem = teams_for(rule, known)

    def at(message: str) -> RuleProblem:
        return RuleProblem(located.file, located.line, located.column, message, rule.id)

    if problem:
        return [at(problem)]
    problems = []
    wanted: list[tuple[str, str, str]] = [("service", "services", s) for s in rule.services or []]
    if rule.incident:
        wanted.append(("template", "templates", rule.incident.template))
    wanted += [("channel", "channels", c) for c in rule.channels]
    for what, attr, key in wanted:
        missing = sorted(t for t, keys in teams.items() if key not in getattr(keys, attr))
        if teams and len(missing) == len(teams):
            near = {k for keys in teams.values() for k in getattr(keys, attr)}
            problems.append(at(f"unknown {what} '{key}'{did_you_mean(key, near)}"))
        elif missing and (_values(rule, "source") or _values(rule, "source_type")):
            problems.append(
                at(
                    f"{what} '{key}' is not declared in team {', '.join(missing)}, "
                    "whose sources this rule also hears"
                )
            )
    return problems


__all__ = ["Known", "LocatedRule", "RuleBookSpec", "RulesInvalid", "TeamKeys", "check", "digest"]
