"""Errors of the rule language: every one names the file, line, column and rule it is about."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class RuleProblem:
    """One problem in a rule file, printed as `file:line:column: [rule id] message`."""

    file: str
    line: int
    column: int
    message: str
    rule_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        rule = f" rule '{self.rule_id}':" if self.rule_id else ""
        return f"{where}:{rule} {self.message}"


class RulesError(Exception):
    """Base of the rule language's errors."""


class RulesInvalid(RulesError):
    """One or more rule files have problems; `problems` lists every one, in file order."""

    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
