"""Errors raised by the domain core."""

from __future__ import annotations


class BeaconError(Exception):
    """Base of Beacon's own errors."""


class ConfigError(BeaconError):
    """Settings or a config file are wrong; the message says where (file:line when known)."""


class NotFoundError(BeaconError):
    """The object does not exist, or is not visible to the caller (the same answer for both)."""


class ConflictError(BeaconError):
    """The change conflicts with existing state (a duplicate key, a referenced object)."""


class ValidationError(BeaconError):
    """A domain rule forbids the change; `field` names what was wrong when known."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
