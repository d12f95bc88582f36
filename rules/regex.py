"""The regular expressions of `matches`, on RE2.

A rule's pattern is a tenant's text and a label's value is a tool's (up to the intake's body
cap, a megabyte): Python's backtracking `re` can take exponential time on a pattern like
`(a+)+$`, in the shared evaluation worker, stalling every other team's alerts behind it.
RE2 matches in time linear in the value's length, whatever the pattern. What it gives up is
what needs backtracking: lookarounds (`(?=`, `(?!`, `(?<=`, `(?<!`) and backreferences
(`\\1`); a rule using them is refused when it is checked, with the reason. `\\d`, `\\w` and
`\\s` are ASCII classes in RE2 (Python's are Unicode).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

_OPTIONS = re2.Options()
# RE2 would log every refused pattern to stderr; the refusal reaches the user as an error.
_OPTIONS.log_errors = False


class RegexError(ValueError):
    """A pattern RE2 cannot compile (a syntax error, or a feature that needs backtracking)."""


@lru_cache(maxsize=1024)
def compile_pattern(text: str) -> Any:
    """`text` compiled by RE2 (cached); raises `RegexError` saying why it cannot be."""
    try:
        return re2.compile(text, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        hint = ""
        if any(mark in text for mark in ("(?=", "(?!", "(?<=", "(?<!")) or "\\1" in text:
            hint = " (RE2 syntax: no lookarounds or backreferences)"
        raise RegexError(f"{reason}{hint}") from None


def search(text: str, value: str) -> bool:
    """Whether pattern `text` matches anywhere in `value`, in time linear in `value`."""
    return compile_pattern(text).search(value) is not None
