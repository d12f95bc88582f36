"""The engine's write functions keep their object's invariants, audit the change and mark the
affected pages dirty, in the caller's transaction (issue 13: one write path)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import (
    api_keys,
    channels,
    crud,
    services,
    sources,
    teams,
    templates,
    users,
)
from engine.db import Store
from engine.errors import ConflictError, NotFoundError, ValidationError
from engine.models import IncidentStatus, Role, ServiceStatus
from engine.tables import (
    audit_log,
    outbox,
    page_groups,
    page_services,
    status_pages,
    team_members,
)
from engine.tables import channels as channel_rows

ACTOR = "tester@example.com"


@pytest.fixture
def conn(sqlite_store: Store) -> Iterator[Connection]:
    with sqlite_store.begin() as connection:
        yield connection


def audits(conn: Connection) -> list[tuple[str, str, str, str]]:
    return [
        tuple(r)
        for r in conn.execute(
            sa.select(
                audit_log.c.actor,
                audit_log.c.action,
                audit_log.c.object_kind,
                audit_log.c.object_key,
            ).order_by(audit_log.c.id)
        )
    ]


def dirty(conn: Connection) -> list[dict[str, Any]]:
    return list(
        conn.execute(
            sa.select(outbox.c.payload).where(outbox.c.kind == "pages.dirty").order_by(outbox.c.id)
        ).scalars()
    )


def team(conn: Connection, key: str = "platform") -> int:
    return teams.create(conn, teams.TeamFields(key, key.title()), actor=ACTOR)


def page(conn: Connection, team_id: int, service_ids: list[int], slug: str = "status") -> int:
    """A page row laid out the way the page writer does it (kept apart from it, so that
    service tests do not depend on the page writer)."""
    page_id = crud.insert(conn, status_pages, {"team_id": team_id, "slug": slug, "name": slug})
    crud.sync_page_layout(conn, page_id, service_ids)
    return page_id


def groups_on(conn: Connection, page_id: int) -> list[str]:
    return list(
        conn.execute(
            sa.select(page_groups.c.name)
            .where(page_groups.c.page_id == page_id)
            .order_by(page_groups.c.position)
        ).scalars()
    )


def test_every_write_audits_itself_with_its_actor(conn: Connection) -> None:
    team_id = team(conn)
    service_id = services.create(conn, team_id, services.ServiceFields("api", "API"), actor=ACTOR)
    services.update(conn, service_id, services.ServiceChanges(name="Public API"), actor=ACTOR)
    services.update(conn, service_id, services.ServiceChanges(), actor=ACTOR)  # no change
    users.create(conn, users.UserFields("Ops@Example.com", Role.RESPONDER), actor=ACTOR)
    made = api_keys.create(conn, name="ci", team_id=team_id, admin=False, actor=ACTOR)
    api_keys.revoke(conn, made.id, actor=ACTOR)
    assert not api_keys.revoke(conn, made.id, actor=ACTOR)  # revoked once, audited once
    assert audits(conn) == [
        (ACTOR, "create", "team", "platform"),
        (ACTOR, "create", "service", "api"),
        (ACTOR, "update", "service", "api"),
        (ACTOR, "create", "user", "ops@example.com"),
        (ACTOR, "create", "api key", f"ci ({made.prefix})"),
        (ACTOR, "delete", "api key", f"ci ({made.prefix})"),
    ]


def test_a_failed_write_leaves_neither_the_change_nor_its_audit(sqlite_store: Store) -> None:
    with sqlite_store.begin() as conn:
        team_id = team(conn)
    with pytest.raises(ValidationError), sqlite_store.begin() as conn:
        services.create(conn, team_id, services.ServiceFields("api", "API"), actor=ACTOR)
        templates.create(conn, team_id, templates.TemplateFields("t", "{{ oops"), actor=ACTOR)
    with sqlite_store.read() as conn:
        assert audits(conn) == [(ACTOR, "create", "team", "platform")]


def test_a_team_keeps_its_members_and_its_deletion_drops_its_pages(conn: Connection) -> None:
    user = users.create(conn, users.UserFields("a@example.com", Role.RESPONDER), actor=ACTOR)
    team_id = teams.create(conn, teams.TeamFields("platform", members=[user]), actor=ACTOR)
    members = sa.select(team_members.c.user_id).where(team_members.c.team_id == team_id)
    assert conn.execute(members).scalars().all() == [user]
    teams.update(conn, team_id, teams.TeamChanges(members=[]), actor=ACTOR)
    assert conn.execute(members).scalars().all() == []
    with pytest.raises(ValidationError, match="no user 999"):
        teams.update(conn, team_id, teams.TeamChanges(members=[999]), actor=ACTOR)
    with pytest.raises(ConflictError):
        team(conn)
    page_id = page(conn, team_id, [])
    teams.delete(conn, team_id, actor=ACTOR)
    # The page went with its team: the renderer must drop it from the cache.
    assert {"page_ids": [page_id]} in dirty(conn)
    assert audits(conn)[-1] == (ACTOR, "delete", "team", "platform")


def test_users_have_one_lower_case_email_and_known_teams(conn: Connection) -> None:
    team_id = team(conn)
    user = users.create(
        conn, users.UserFields(" Ops@Example.COM ", Role.RESPONDER, team_ids=[team_id]), actor=ACTOR
    )
    with pytest.raises(ConflictError):
        users.create(conn, users.UserFields("ops@example.com", Role.ADMIN), actor=ACTOR)
    with pytest.raises(ValidationError) as bad:
        users.update(conn, user, users.UserChanges(team_ids=[team_id, 999]), actor=ACTOR)
    assert bad.value.field == "teams"
    users.update(conn, user, users.UserChanges(team_ids=[]), actor=ACTOR)
    users.delete(conn, user, actor=ACTOR)
    with pytest.raises(NotFoundError):
        users.delete(conn, user, actor=ACTOR)


def test_an_api_key_is_for_one_team_or_an_admin_key(conn: Connection) -> None:
    team_id = team(conn)
    for team_of, admin in ((team_id, True), (None, False)):
        with pytest.raises(ValidationError):
            api_keys.create(conn, name="x", team_id=team_of, admin=admin, actor=ACTOR)
    assert api_keys.create(conn, name="x", team_id=None, admin=True, actor=ACTOR).key


def test_a_group_change_re_lays_out_the_pages_and_a_position_change_does_not(
    conn: Connection,
) -> None:
    team_id = team(conn)
    api = services.create(
        conn, team_id, services.ServiceFields("api", "API", group="Core"), actor=ACTOR
    )
    db = services.create(
        conn, team_id, services.ServiceFields("db", "DB", group="Core"), actor=ACTOR
    )
    page_id = page(conn, team_id, [api, db])
    assert groups_on(conn, page_id) == ["Core"]
    services.update(conn, db, services.ServiceChanges(group="Data"), actor=ACTOR)
    assert groups_on(conn, page_id) == ["Core", "Data"]
    layout = conn.execute(sa.select(page_services).order_by(page_services.c.id)).all()
    services.update(conn, db, services.ServiceChanges(position=7), actor=ACTOR)
    assert conn.execute(sa.select(page_services).order_by(page_services.c.id)).all() == layout
    assert dirty(conn)[-1] == {"service_ids": [db]}


def test_deleting_a_service_drops_its_emptied_group_from_its_pages(conn: Connection) -> None:
    team_id = team(conn)
    api = services.create(conn, team_id, services.ServiceFields("api", "API"), actor=ACTOR)
    db = services.create(
        conn, team_id, services.ServiceFields("db", "DB", group="Data"), actor=ACTOR
    )
    page_id = page(conn, team_id, [api, db])
    services.delete(conn, db, actor=ACTOR)
    assert groups_on(conn, page_id) == []
    assert {"page_ids": [page_id]} in dirty(conn)


def test_groups_are_created_renamed_and_dissolved_with_their_pages(conn: Connection) -> None:
    team_id = team(conn)
    other = team(conn, "other")
    api = services.create(conn, team_id, services.ServiceFields("api", "API"), actor=ACTOR)
    db = services.create(conn, team_id, services.ServiceFields("db", "DB"), actor=ACTOR)
    foreign = services.create(conn, other, services.ServiceFields("x", "X"), actor=ACTOR)
    page_id = page(conn, team_id, [api, db])
    with pytest.raises(ValidationError, match=f"no service {foreign} in this team"):
        services.create_group(conn, team_id, "Core", [api, foreign], actor=ACTOR)
    services.create_group(conn, team_id, "Core", [api, db], actor=ACTOR)
    with pytest.raises(ConflictError):
        services.create_group(conn, team_id, "Core", [api], actor=ACTOR)
    assert groups_on(conn, page_id) == ["Core"]
    services.update_group(conn, team_id, "Core", new_name="Edge", service_ids=[api], actor=ACTOR)
    assert services.group_members(conn, team_id, "Edge") == [api]
    assert groups_on(conn, page_id) == ["Edge"]
    services.delete_group(conn, team_id, "Edge", actor=ACTOR)
    assert groups_on(conn, page_id) == []
    with pytest.raises(NotFoundError, match="no group 'Edge' in team 'platform'"):
        services.delete_group(conn, team_id, "Edge", actor=ACTOR)


def test_integration_keys_are_unique_and_rate_limits_are_checked(conn: Connection) -> None:
    team_id = team(conn)
    fields = sources.SourceFields("am", "AM", "alertmanager", integration_key="k" * 24)
    first = sources.create(conn, team_id, fields, actor=ACTOR)
    other = sources.SourceFields("kuma", "Kuma", "uptime-kuma", integration_key="k" * 24)
    with pytest.raises(ConflictError, match="integration key"):
        sources.create(conn, team_id, other, actor=ACTOR)
    second = sources.create(
        conn, team_id, sources.SourceFields("kuma", "Kuma", "uptime-kuma"), actor=ACTOR
    )
    with pytest.raises(ConflictError):
        sources.update(conn, second, sources.SourceChanges(integration_key="k" * 24), actor=ACTOR)
    # Its own key is no conflict.
    sources.update(conn, first, sources.SourceChanges(integration_key="k" * 24), actor=ACTOR)
    with pytest.raises(ValidationError) as bad:
        sources.update(conn, first, sources.SourceChanges(rate_limit="lots"), actor=ACTOR)
    assert bad.value.field == "rate_limit"
    rotated = sources.rotate_key(conn, first, actor=ACTOR)
    assert audits(conn)[-1] == (ACTOR, "rotate key", "alert source", "am")
    sources.delete(conn, first, actor=ACTOR)
    assert sources.find_by_integration_key(conn, rotated.integration_key) is None


def test_enabling_a_channel_clears_why_it_was_disabled(conn: Connection) -> None:
    team_id = team(conn)
    fields = channels.ChannelFields(
        "ops", "webhook", {"url": "https://hooks.example/x", "secret": None}
    )
    channel_id = channels.create(conn, team_id, fields, actor=ACTOR)
    stored = conn.execute(sa.select(channel_rows).where(channel_rows.c.id == channel_id)).one()
    # None values left out; the URL (a chat hook's credential) kept encrypted.
    assert channels.config_of(conn, stored.config) == {"url": "https://hooks.example/x"}
    assert "hooks.example" not in str(stored.config)
    conn.execute(
        channel_rows.update().values(enabled=False, disabled_reason="410 Gone from the hook")
    )
    channels.update(conn, channel_id, channels.ChannelChanges(enabled=True), actor=ACTOR)
    stored = conn.execute(sa.select(channel_rows).where(channel_rows.c.id == channel_id)).one()
    assert stored.enabled and stored.disabled_reason is None
    with pytest.raises(ValidationError) as bad:
        channels.update(conn, channel_id, channels.ChannelChanges(config={}), actor=ACTOR)
    assert bad.value.field == "url"


def test_template_text_is_checked_once_for_every_caller(conn: Connection) -> None:
    team_id = team(conn)
    services.create(conn, team_id, services.ServiceFields("api", "API"), actor=ACTOR)
    assert templates.syntax_problem("{{ event.summary }}") is None
    assert (
        templates.syntax_problem("a\n{% if %}")
        == "line 2: Expected an expression, got 'end of statement block'"
    )
    with pytest.raises(ValidationError) as bad:
        templates.create(
            conn, team_id, templates.TemplateFields("t", "ok", resolve_message="{{ x"), actor=ACTOR
        )
    assert bad.value.field == "resolve_message"
    assert str(bad.value).startswith("template syntax: line 1:")
    fields = templates.TemplateFields(
        "t", "Down", status=IncidentStatus.IDENTIFIED, services={"db": ServiceStatus.MAJOR_OUTAGE}
    )
    with pytest.raises(ValidationError, match="no service 'db' in this team"):
        templates.create(conn, team_id, fields, actor=ACTOR)
    template_id = templates.create(
        conn,
        team_id,
        templates.TemplateFields("t", "Down", services={"api": ServiceStatus.DEGRADED}),
        actor=ACTOR,
    )
    templates.update(conn, template_id, templates.TemplateChanges(title="Still down"), actor=ACTOR)
    templates.delete(conn, template_id, actor=ACTOR)
