"""Typed partial updates for the write functions: a field left `UNSET` is not changed.

Each domain object has a frozen `...Changes` dataclass whose fields default to `UNSET`, so
"leave it alone" and "set it to None" stay apart (a PATCH with `"group": null` removes a
service from its group; a PATCH without `group` leaves it).
"""

from __future__ import annotations

from dataclasses import fields
from enum import Enum
from typing import Any, Final


class Unset(Enum):
    """The type of `UNSET`; a one-member enum so that mypy narrows `x is not UNSET`."""

    UNSET = "unset"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET


def given(changes: Any) -> dict[str, Any]:
    """The fields of a `...Changes` dataclass that are set, with their values, in field order."""
    found = {}
    for field in fields(changes):
        value = getattr(changes, field.name)
        if value is not UNSET:
            found[field.name] = value
    return found
