"""Checks for an alert source's type and adapter settings, shared by apply and the API."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel, ValidationError

from .models import readable


def source_problems(
    source_type: str, settings: dict[str, Any]
) -> list[tuple[tuple[Any, ...], str]]:
    """Problems with a source's `type` and `settings`, each as (path under the source, message).

    The type must be a key of `adapters.alert_sources.ADAPTERS`; when the adapter module
    defines a `Settings` model, the settings must validate against it.
    """
    from adapters.alert_sources import ADAPTERS

    if source_type not in ADAPTERS:
        known = ", ".join(sorted(ADAPTERS))
        return [(("type",), f"unknown alert source type {source_type!r} (known: {known})")]
    try:
        module = importlib.import_module(ADAPTERS[source_type])
    except ImportError:
        return []  # registered but not installed yet: nothing to check against
    model = getattr(module, "Settings", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    try:
        model.model_validate(settings)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = "unknown field" if err["type"] == "extra_forbidden" else readable(err)
            problems.append((("settings", *err["loc"]), f"settings.{name}: {msg}"))
        return problems
    return []
