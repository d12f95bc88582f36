"""Errors of the rule language: every one names the file, line, column and rule it is about."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the choice nearest to a misspelt `word` (the same letters
    in another case first, then difflib's closest), or "" when none is near."""
    options = sorted({c for c in choices if c != word})
    by_case = {c.lower(): c for c in options}
    found = by_case.get(word.lower())
    if found is None:
        close = difflib.get_close_matches(word, options, n=1)
        found = close[0] if close else None
    return f"; did you mean {found!r}?" if found else ""
