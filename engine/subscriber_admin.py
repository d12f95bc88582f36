"""A page's subscribers as its managers see them: listed and searched, removed, exported
and imported as CSV.

Importing is all or nothing: the whole file is checked first, and any problem (each named
by its row and column) refuses it before a row is written. An imported email or SMS
subscriber gets a confirmation message like one who subscribed on the page, unless the
importer says explicitly that they confirmed elsewhere (`skip_confirmation`); either way
each row records who imported it, when, and whether the confirmation was skipped.

Everything here works in the caller's transaction; authorization is the caller's.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import outbox
from . import subscriber_links as links
from .errors import ConflictError, ValidationError
from .models import SubscriberChannel
from .security import new_token
from .subscribers import (
    CONFIRM,
    Page,
    is_member,
    literal_private_host,
    normalise_address,
    page_service_keys,
    shown,
    subscribe,
    webhook_host,
)
from .tables import subscribers, users, utcnow

#: An import file's limits: beyond them the whole file is refused, saying which limit.
#: 1 MB leaves room under the 1 MiB every form and admin body is capped at (pages.bodycap,
#: pages.sessions), so the web UI's upload with its CSRF field fits as the API's does.
MAX_IMPORT_BYTES = 1_000_000
MAX_IMPORT_ROWS = 10_000
#: Problems reported for one refused file (the rest are counted, not listed).
MAX_PROBLEMS = 50
#: Columns an import reads; the other columns of an export are ignored, so an export of
#: email and SMS subscribers imports again as it is.
IMPORT_COLUMNS = ("channel", "address", "services")
EXPORT_COLUMNS = (
    "channel",
    "address",
    "services",
    "state",
    "created_at",
    "imported_by",
    "confirmation_skipped",
)
_SERVICE_SEPARATORS = re.compile(r"[\s,;]+")
_PHONE_LIKE = re.compile(r"^[\d\s().+-]*\d[\d\s().+-]*$")


class State(StrEnum):
    """Where a subscriber stands: waiting for its confirmation, hearing updates, or
    stopped (by permanent delivery failures, with the reason)."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    DISABLED = "disabled"


def state_of(row: Any) -> State:
    if row.disabled_reason is not None:
        return State.DISABLED
    return State.CONFIRMED if row.confirmed else State.PENDING


def shown_address(channel: str, address: str) -> str:
    """An address given as a URL (a form's, an answer's) as managers see it: a webhook's
    URL is the receiver's secret, so only its scheme and host are shown. A stored row is
    shown by `shown` (a webhook's `address` there is a digest)."""
    if channel == SubscriberChannel.WEBHOOK:
        return f"{webhook_host(address)}/…"
    return address


# --- listing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Search:
    """What to list: `q` a substring of the address (email, phone number or webhook URL,
    case-insensitive), a channel and a state (None: any)."""

    q: str = ""
    channel: SubscriberChannel | None = None
    state: State | None = None


def address_contains(q: str) -> Any:
    """A filter on subscribers whose address as managers see it (`shown`) contains `q`
    (case-insensitive). A webhook is searched by its shown part only (scheme and host,
    `webhook_host`): its URL is sealed, and matching its path would answer yes or no for
    any guess, spelling the receiver's secret out a character at a time. Its `address`, a
    digest, is never matched either."""
    webhook = subscribers.c.channel == SubscriberChannel.WEBHOOK.value
    matches = [sa.func.lower(subscribers.c.address).contains(q.lower(), autoescape=True)]
    if _PHONE_LIKE.match(q):
        # Phone numbers are stored without punctuation: "+49 151" finds "+49151...".
        digits = re.sub(r"[\s().-]", "", q)
        matches.append(subscribers.c.address.contains(digits, autoescape=True))
    shown_hook = sa.func.lower(subscribers.c.webhook_host + "/…")
    return sa.or_(
        sa.and_(sa.not_(webhook), sa.or_(*matches)),
        sa.and_(webhook, shown_hook.contains(q.lower(), autoescape=True)),
    )


def _where(conn: Connection, page_id: int, search: Search) -> list[Any]:
    conditions: list[Any] = [subscribers.c.page_id == page_id]
    q = search.q.strip()
    if q:
        conditions.append(address_contains(q))
    if search.channel is not None:
        conditions.append(subscribers.c.channel == search.channel.value)
    if search.state == State.DISABLED:
        conditions.append(subscribers.c.disabled_reason.isnot(None))
    elif search.state is not None:
        conditions.append(subscribers.c.disabled_reason.is_(None))
        conditions.append(subscribers.c.confirmed.is_(search.state == State.CONFIRMED))
    return conditions


@dataclass(frozen=True)
class Listing:
    rows: list[Any]
    #: How many subscribers match in all.
    total: int
    #: Pass as `before` for the next (older) rows; None on the last page.
    next_before: int | None


def search(
    conn: Connection, page_id: int, what: Search, *, limit: int = 100, before: int | None = None
) -> Listing:
    """The page's subscribers matching `what`, newest first, `limit` at a time (keyset
    pagination on the id: each page costs the same however far back it is)."""
    conditions = _where(conn, page_id, what)
    total = conn.execute(
        sa.select(sa.func.count()).select_from(subscribers).where(*conditions)
    ).scalar_one()
    query = sa.select(subscribers).where(*conditions)
    if before is not None:
        query = query.where(subscribers.c.id < before)
    rows = list(conn.execute(query.order_by(subscribers.c.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Listing(rows, int(total), rows[-1].id if more and rows else None)


def find(conn: Connection, page_id: int, subscriber_id: int) -> Any | None:
    """The page's subscriber `subscriber_id`, or None (another page's is None too)."""
    return conn.execute(
        sa.select(subscribers).where(
            subscribers.c.id == subscriber_id, subscribers.c.page_id == page_id
        )
    ).first()


def remove(conn: Connection, page_id: int, subscriber_id: int) -> Any | None:
    """Remove the page's subscriber (its pending deliveries go with it, as when it
    unsubscribes itself); returns the row it was, or None."""
    row = find(conn, page_id, subscriber_id)
    if row is not None:
        conn.execute(subscribers.delete().where(subscribers.c.id == row.id))
    return row


# --- export -----------------------------------------------------------------------------------


def csv_cell(value: str) -> str:
    """`value` safe in a spreadsheet: one starting with `=`, `+`, `-`, `@`, a tab or a
    carriage return would run as a formula (CSV injection), so it gets a leading `'`."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def export_rows(conn: Connection, page_id: int, batch: int = 2000) -> Iterator[list[str]]:
    """The header and one CSV row per subscriber of the page, oldest first, read `batch`
    at a time. Webhooks by scheme and host only (`shown`). A phone number keeps its `+`:
    quoting it would change the address, and a sheet reads `+49...` as a number, not a
    formula."""
    yield list(EXPORT_COLUMNS)
    after = 0
    while True:
        rows = list(
            conn.execute(
                sa.select(subscribers)
                .where(subscribers.c.page_id == page_id, subscribers.c.id > after)
                .order_by(subscribers.c.id)
                .limit(batch)
            )
        )
        for row in rows:
            address = shown(row)
            yield [
                row.channel,
                address if row.channel == SubscriberChannel.SMS else csv_cell(address),
                " ".join(row.services or []),
                state_of(row).value,
                row.created_at.isoformat() if row.created_at else "",
                csv_cell(row.imported_by or ""),
                "yes" if row.confirmation_skipped else "no",
            ]
        if len(rows) < batch:
            return
        after = rows[-1].id


def to_csv(lines: Iterator[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for line in lines:
        writer.writerow(line)
    return out.getvalue()


# --- import -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """What is wrong where: `row` counts the file's lines from 1 (the header)."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        where = [f"row {self.row}"] if self.row else []
        where += [f"column {self.column}"] if self.column else []
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ImportRefused(ValidationError):
    """The file was refused as a whole; nothing was imported."""

    def __init__(self, problems: Sequence[Problem], more: int = 0) -> None:
        first = str(problems[0]) if problems else "the file could not be read"
        extra = len(problems) - 1 + more
        message = first + (f" (and {extra} more problems)" if extra > 0 else "")
        super().__init__(message, field="file")
        self.problems = list(problems)
        self.more = more


@dataclass(frozen=True)
class ImportRow:
    row: int
    channel: SubscriberChannel
    address: str
    services: list[str] | None


@dataclass
class ImportResult:
    imported: int = 0
    #: Rows whose address the page had already: left as they were (a skipped confirmation
    #: confirms one still waiting, as the importer vouched).
    already_subscribed: int = 0
    confirmations_sent: int = 0
    confirmed_now: int = 0
    subscriber_ids: list[int] = field(default_factory=list)


def _decode(data: bytes) -> str:
    if len(data) > MAX_IMPORT_BYTES:
        raise ImportRefused(
            [Problem(0, "", f"the file is over the limit of {MAX_IMPORT_BYTES} bytes")]
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportRefused(
            [Problem(line, "", "the file is not UTF-8 text (save it as CSV UTF-8)")]
        ) from None
    if "\x00" in text:
        # No address holds one, and PostgreSQL cannot store it: refused, not dropped.
        line = text[: text.index("\x00")].count("\n") + 1
        raise ImportRefused([Problem(line, "", "the file holds a NUL character")])
    return text


def parse(conn: Connection, page: Page, data: bytes) -> list[ImportRow]:
    """The file's rows, checked against the page (channels it takes, addresses, its
    services); `ImportRefused` with every problem (up to `MAX_PROBLEMS`) otherwise.

    The first line names the columns: `address` is required, `channel` (`email`, the
    default, or `sms`) and `services` (service keys separated by spaces, commas or
    semicolons; empty: every service) are optional, an export's other columns are ignored
    and any other column is a problem."""
    if page.private:
        raise ImportRefused(
            [
                Problem(
                    0,
                    "",
                    "a private page's subscribers are its teams' members, who subscribe "
                    "while signed in: there is nothing to import",
                )
            ]
        )
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    problems: list[Problem] = []
    more = 0

    def problem(row: int, column: str, message: str) -> None:
        nonlocal more
        if len(problems) < MAX_PROBLEMS:
            problems.append(Problem(row, column, message))
        else:
            more += 1

    try:
        header = [h.strip().lower() for h in next(reader, [])]
    except csv.Error as exc:
        raise ImportRefused([Problem(1, "", f"not CSV: {exc}")]) from None
    if not any(header):
        raise ImportRefused([Problem(1, "", "the file is empty: the first line names the columns")])
    known = set(IMPORT_COLUMNS) | set(EXPORT_COLUMNS)
    for name in header:
        if name not in known:
            problem(1, name, f"unknown column (known: {', '.join(IMPORT_COLUMNS)})")
    if "address" not in header:
        problem(1, "address", "the address column is missing")
    if len(set(header)) != len(header):
        problem(1, "", "a column is named twice")
    if problems:
        raise ImportRefused(problems, more)
    keys = set(page_service_keys(conn, page.id).values())
    seen: dict[tuple[str, str], int] = {}
    out: list[ImportRow] = []
    line = 1
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue  # a blank line
            if len(out) >= MAX_IMPORT_ROWS:
                raise ImportRefused(
                    [
                        Problem(
                            line,
                            "",
                            f"more than {MAX_IMPORT_ROWS} subscribers: split the file "
                            "(nothing was imported)",
                        )
                    ]
                )
            if len(cells) != len(header):
                problem(line, "", f"{len(cells)} cells where the header has {len(header)}")
                continue
            found = _row(line, dict(zip(header, cells, strict=True)), keys, problem)
            if found is None:
                continue
            key = (found.channel.value, found.address)
            if key in seen:
                problem(line, "address", f"{found.address} is on row {seen[key]} already")
                continue
            seen[key] = line
            out.append(found)
    except csv.Error as exc:
        problem(reader.line_num, "", f"not CSV: {exc}")
    if problems:
        raise ImportRefused(problems, more)
    if not out:
        raise ImportRefused([Problem(line, "", "the file has no subscribers, only its header")])
    return out


def _row(line: int, cells: dict[str, str], keys: set[str], problem: Any) -> ImportRow | None:
    raw_channel = cells.get("channel", "").strip().lower() or "email"
    if raw_channel not in (SubscriberChannel.EMAIL, SubscriberChannel.SMS):
        why = {
            "webhook": "webhooks subscribe themselves on the page (only they may hold "
            "their signing secret)",
            "user": "account users are added one by one, as members",
        }.get(raw_channel, f"unknown channel {raw_channel!r}")
        problem(line, "channel", f"{why}: import email or sms")
        return None
    channel = SubscriberChannel(raw_channel)
    try:
        address = normalise_address(channel, cells.get("address", ""))
    except ValidationError as exc:
        problem(line, "address", str(exc))
        return None
    wanted = sorted({k for k in _SERVICE_SEPARATORS.split(cells.get("services", "")) if k})
    unknown = [k for k in wanted if k not in keys]
    if unknown:
        problem(line, "services", f"not services of this page: {', '.join(unknown)}")
        return None
    return ImportRow(line, channel, address, wanted or None)


def import_rows(
    conn: Connection,
    page: Page,
    rows: Sequence[ImportRow],
    *,
    actor: str,
    skip_confirmation: bool,
    now: datetime | None = None,
) -> ImportResult:
    """Add `rows` (checked by `parse`) to the page in the caller's transaction. New rows
    record `actor`, the time and `skip_confirmation`; without it each gets a confirmation
    message (outbox `notify.subscriber_confirm`), with it they count at once. An address
    the page has already is left as it was, except that a skipped confirmation confirms
    one still waiting (and records the import on it)."""
    now = now or utcnow()
    result = ImportResult()
    existing: dict[tuple[str, str], Any] = {}
    addresses = [r.address for r in rows]
    for start in range(0, len(addresses), 500):
        for row in conn.execute(
            sa.select(
                subscribers.c.id,
                subscribers.c.channel,
                subscribers.c.address,
                subscribers.c.confirmed,
                subscribers.c.disabled_reason,
            ).where(
                subscribers.c.page_id == page.id,
                subscribers.c.address.in_(addresses[start : start + 500]),
            )
        ):
            existing[(row.channel, row.address)] = row
    new: list[dict[str, Any]] = []
    vouched: list[int] = []
    for wanted in rows:
        found = existing.get((wanted.channel.value, wanted.address))
        if found is not None:
            result.already_subscribed += 1
            if skip_confirmation and not found.confirmed and found.disabled_reason is None:
                vouched.append(found.id)
            continue
        new.append(
            {
                "page_id": page.id,
                "channel": wanted.channel.value,
                "address": wanted.address,
                "services": wanted.services,
                "confirmed": skip_confirmation,
                # The links' stored halves (engine.subscriber_links); the tokens are made
                # when the confirmation and each notification are composed.
                "link_selector": links.new_selector(),
                "confirm_selector": None if skip_confirmation else links.new_selector(),
                "imported_by": actor[:320],
                "imported_at": now,
                "confirmation_skipped": skip_confirmation,
                "created_at": now,
            }
        )
    if new:
        conn.execute(subscribers.insert(), new)
        selectors = [r["link_selector"] for r in new]
        for start in range(0, len(selectors), 500):
            result.subscriber_ids += conn.execute(
                sa.select(subscribers.c.id).where(
                    subscribers.c.link_selector.in_(selectors[start : start + 500])
                )
            ).scalars()
    if vouched:
        conn.execute(
            subscribers.update()
            .where(subscribers.c.id.in_(vouched))
            .values(
                confirmed=True,
                imported_by=actor[:320],
                imported_at=now,
                confirmation_skipped=True,
            )
        )
    result.imported = len(new)
    result.confirmed_now = len(vouched)
    if not skip_confirmation and result.subscriber_ids:
        outbox.emit_many(
            conn,
            CONFIRM,
            ({"subscriber_id": i, "nonce": new_token()} for i in sorted(result.subscriber_ids)),
        )
        result.confirmations_sent = len(result.subscriber_ids)
    return result


# --- adding one ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Added:
    subscriber_id: int
    #: Shown once: a webhook's new signing secret.
    webhook_secret: str | None
    confirmation_sent: bool


def add(
    conn: Connection,
    page: Page,
    channel: SubscriberChannel,
    *,
    address: str = "",
    user_email: str = "",
    services: Sequence[str] | None = None,
    actor: str,
    skip_confirmation: bool = False,
    allow_private_webhooks: bool = False,
) -> Added:
    """A subscriber a page's manager adds (recorded as `imported_by`): email or SMS (a
    confirmation goes out unless `skip_confirmation`), a webhook (confirmed; its secret is
    returned once), or an account user by email (confirmed; on a private page only a
    member of its teams). One the page has already is a `ConflictError`."""
    user_id = None
    if channel == SubscriberChannel.USER:
        found = conn.execute(
            sa.select(users.c.id, users.c.email, users.c.active).where(
                users.c.email == user_email.strip().lower()
            )
        ).first()
        if found is None or not found.active:
            raise ValidationError(f"no active user {user_email.strip()!r}", field="user")
        if page.private and not is_member(conn, page, found.id):
            raise ValidationError(
                f"{found.email} is not a member of the page's teams: a private page's news "
                "is for them only",
                field="user",
            )
        user_id, address = found.id, found.email
    elif channel == SubscriberChannel.WEBHOOK and not allow_private_webhooks:
        if literal_private_host(address.strip()):
            raise ValidationError(
                "the webhook URL points at a loopback or private address", field="address"
            )
    made = subscribe(conn, page, channel, address, services, user_id=user_id)
    if not made.created:
        raise ConflictError(f"already subscribed (subscriber {made.subscriber_id})")
    values: dict[str, Any] = {"imported_by": actor[:320], "imported_at": utcnow()}
    people = channel in (SubscriberChannel.EMAIL, SubscriberChannel.SMS)
    if people and skip_confirmation:
        values.update(
            confirmed=True,
            confirm_selector=None,
            legacy_confirm_digest=None,
            confirmation_skipped=True,
        )
    conn.execute(
        subscribers.update().where(subscribers.c.id == made.subscriber_id).values(**values)
    )
    send = people and not skip_confirmation
    if send:
        outbox.emit(conn, CONFIRM, {"subscriber_id": made.subscriber_id, "nonce": new_token()})
    return Added(made.subscriber_id, made.webhook_secret, send)
