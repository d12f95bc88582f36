"""A team's notification channels (the targets of rules' `notify` action): every write of
one, for the admin API and `beacon apply`.

A channel's `config` holds its target (`url` or `address`), an optional `secret`, and its
adapter's settings. A channel disabled after a permanent delivery failure keeps the reason
until someone enables it again, which clears the reason.

A chat hook's URL is its credential, so `url` and `secret` are kept encrypted
(engine.vault); `config_of` opens them for whoever sends through the channel or compares
it with a config file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from . import crud, vault
from .changes import UNSET, Unset, given
from .errors import ValidationError
from .tables import channels

#: What each built-in channel type needs in its config (adapters/channels read `url` or
#: `address`). Which types exist is the adapters' registry's to say, checked by the callers.
#: The one copy: the config file's model (config.models.ChannelSpec) checks against it too,
#: so a file and the admin API never disagree on what a channel needs.
CHANNEL_TARGET = {
    "slack": "url",
    "discord": "url",
    "teams": "url",
    "webhook": "url",
    "email": "address",
    "smtp": "address",
    "sms": "address",
}


#: Config entries kept encrypted: the credentials of a channel.
SEALED_FIELDS = ("url", "secret")
_COLUMN = "channels.config"  # engine.reseal and migration 0016 seal under the same name


def config_of(conn: Connection, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """A channel row's `config` with its sealed entries opened."""
    return vault.of(conn).reveal_fields(stored or {}, SEALED_FIELDS, _COLUMN)


def _sealed(conn: Connection, config: dict[str, Any]) -> dict[str, Any]:
    return vault.of(conn).seal_fields(config, SEALED_FIELDS, _COLUMN)


@dataclass(frozen=True)
class ChannelFields:
    """A new channel; `config` entries that are None are left out."""

    key: str
    type: str
    config: Mapping[str, Any]
    enabled: bool = True


@dataclass(frozen=True)
class ChannelChanges:
    """A change to a channel; `config` replaces the whole config."""

    type: str | Unset = UNSET
    config: Mapping[str, Any] | Unset = UNSET
    enabled: bool | Unset = UNSET


def create(conn: Connection, team_id: int, fields: ChannelFields, *, actor: str) -> int:
    """Create a channel in team `team_id`; returns its id."""
    crud.key_free(conn, channels, team_id, fields.key, "channel")
    channel_id = crud.insert(
        conn,
        channels,
        {
            "team_id": team_id,
            "key": fields.key,
            "type": fields.type,
            "config": _sealed(conn, checked_config(fields.type, fields.config)),
            "enabled": fields.enabled,
        },
    )
    crud.created(conn, channels, channel_id, actor, "channel", fields.key, team_id=team_id)
    return channel_id


def update(conn: Connection, channel_id: int, changes: ChannelChanges, *, actor: str) -> None:
    """Change a channel (nothing given: nothing happens); enabling it clears the reason it
    was disabled for."""
    row = crud.row(conn, channels, channel_id, "channel")
    values = given(changes)
    if not values:
        return
    kind = values.get("type", row.type)
    if "type" in values or "config" in values:
        config = values["config"] if "config" in values else config_of(conn, row.config)
        values["config"] = _sealed(conn, checked_config(kind, config))
    if values.get("enabled"):
        values["disabled_reason"] = None
    crud.update(conn, channels, channel_id, values)
    crud.audit(
        conn,
        actor,
        "update",
        "channel",
        row.key,
        team_id=row.team_id,
        detail={"fields": sorted(given(changes))},
    )


def delete(conn: Connection, channel_id: int, *, actor: str) -> None:
    """Delete a channel (its pending deliveries go with it)."""
    row = crud.row(conn, channels, channel_id, "channel")
    conn.execute(channels.delete().where(channels.c.id == channel_id))
    crud.audit(conn, actor, "delete", "channel", row.key, team_id=row.team_id)


def target(conn: Connection, row: Any) -> dict[str, Any]:
    """What a channel's adapter reads to send (`url` or `address`, `secret`, its settings):
    the one place a stored channel's config is read for sending, its secrets opened."""
    return config_of(conn, row.config)


def checked_config(channel_type: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as stored (None values left out), or `ValidationError` on the target field
    a channel of `channel_type` needs."""
    stored = {k: v for k, v in config.items() if v is not None}
    needed = CHANNEL_TARGET.get(channel_type)
    if needed and not stored.get(needed):
        raise ValidationError(f"a {channel_type} channel needs it", field=needed)
    return stored
