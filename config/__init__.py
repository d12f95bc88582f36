"""The config file (`beacon apply`): loading, checking, planning and applying it."""

from __future__ import annotations

from .apply import apply_file
from .load import read_config
from .plan import Change, Plan

__all__ = ["Change", "Plan", "apply_file", "read_config"]
