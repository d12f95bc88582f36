"""What an apply changes (or would change, with `--dry-run`), and how it is printed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: Fields whose values are secrets: the plan says that they change, never what they are.
SECRET_FIELDS = frozenset({"integration_key", "signing_secret", "config"})

_SIGNS = {"create": "+", "update": "~", "delete": "-"}


@dataclass(frozen=True)
class Change:
    """One object created, updated (with each changed field's old and new value) or deleted."""

    action: str
    kind: str
    key: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    #: Said in brackets after the key where fields are not: a rule's file, what changed.
    note: str = ""

    def render(self) -> str:
        line = f"  {_SIGNS[self.action]} {self.action} {self.kind} {self.key}"
        parts = [f"{name}: {_show(name, old, new)}" for name, (old, new) in self.fields.items()]
        if self.note:
            parts.append(self.note)
        return line + (" (" + "; ".join(parts) + ")" if parts else "")


def _value(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)


def _show(name: str, old: Any, new: Any) -> str:
    if name in SECRET_FIELDS:
        return "changed (secret, not shown)"
    return f"{_value(old)} -> {_value(new)}"


@dataclass(frozen=True)
class Drift:
    """A field of a config-declared object changed outside the file since it was applied:
    `was` is what the file set, `now` what the store holds, `by` who changed it."""

    kind: str
    key: str
    field: str
    was: Any
    now: Any
    by: str = "outside the file"

    def render(self) -> str:
        # Secrets never get here: what a file set is kept without them (`config.apply`).
        return (
            f"  {self.kind} {self.key}: {self.field} changed {self.by} from "
            f"{_value(self.was)} to {_value(self.now)}"
        )


@dataclass(frozen=True)
class Left:
    """An object the file does not declare that `--prune` leaves, or one the file now
    declares that was made elsewhere: its kind, key and origin (`engine.origins`)."""

    kind: str
    key: str
    origin: str

    def render(self) -> str:
        return f"  {self.kind} {self.key} (made in: {self.origin})"


@dataclass
class Plan:
    """The changes of one apply, in the order they are made, and the URLs to reach the
    declared pages and alert sources."""

    file: str
    dry_run: bool = False
    changes: list[Change] = field(default_factory=list)
    #: (slug, path) of the file's pages.
    pages: list[tuple[str, str]] = field(default_factory=list)
    #: (team/key, webhook path or a note) of the file's alert sources.
    sources: list[tuple[str, str]] = field(default_factory=list)
    base_url: str = ""
    warnings: list[str] = field(default_factory=list)
    #: Edits made outside the file to what it declares (the changes set them back).
    drift: list[Drift] = field(default_factory=list)
    #: What `--prune` left because no config file made it (`--prune-all` deletes it too).
    kept: list[Left] = field(default_factory=list)
    #: Objects made in the UI, the API or the CLI that the file declares from now on.
    adopted: list[Left] = field(default_factory=list)
    #: (id, slug) of the pages whose access this apply changed or which it deleted: their
    #: cached and exported copies must go now (`config.apply.evict_ended`), not at the next
    #: render. Empty for a dry run.
    ended: list[tuple[int, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def counts(self) -> dict[str, int]:
        found = {"create": 0, "update": 0, "delete": 0}
        for change in self.changes:
            found[change.action] += 1
        return found

    def render(self) -> str:
        """A human summary: the changes (or "no changes"), then the page and webhook URLs."""
        lines: list[str] = []
        suffix = " (dry run: nothing was written)" if self.dry_run else ""
        if not self.changes:
            lines.append(f"{self.file}: no changes{suffix}")
        else:
            c = self.counts()
            lines.append(
                f"{self.file}: {c['create']} to create, {c['update']} to update, "
                f"{c['delete']} to delete{suffix}"
                if self.dry_run
                else f"{self.file}: {c['create']} created, {c['update']} updated, "
                f"{c['delete']} deleted"
            )
            lines.extend(change.render() for change in self.changes)
        if self.drift:
            lines.append(
                "Drift: changed outside this file since it was applied "
                f"({'applying it would set' if self.dry_run else 'set'} them back):"
            )
            lines.extend(d.render() for d in self.drift)
        if self.kept:
            lines.append("Left by --prune, as they were not made by a config file (--prune-all):")
            lines.extend(k.render() for k in self.kept)
        if self.adopted:
            lines.append("Declared by this file from now on:")
            lines.extend(a.render() for a in self.adopted)
        lines.extend(f"warning: {w}" for w in self.warnings)
        if self.pages:
            lines.append("Status pages:")
            lines.extend(f"  {slug}: {self.base_url}{path}" for slug, path in self.pages)
        if self.sources:
            lines.append("Alert source webhook URLs:")
            for key, path in self.sources:
                url = f"{self.base_url}{path}" if path.startswith("/") else path
                lines.append(f"  {key}: {url}")
        return "\n".join(lines)
