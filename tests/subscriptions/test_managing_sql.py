"""The subscriber management queries on SQLite and PostgreSQL: search, the audience's
grouping by JSON filter, the delivery log's grouping by notification, import."""

from __future__ import annotations

from types import SimpleNamespace

import sqlalchemy as sa

from engine import audience, delivery_log, subscriber_admin
from engine import subscribers as subs
from engine.db import Store
from engine.models import SubscriberChannel
from engine.tables import deliveries, subscribers, utcnow

from .conftest import make_site


def test_the_management_queries_agree_on_both_stores(store: Store) -> None:
    site = make_site(SimpleNamespace(store=store))  # type: ignore[arg-type]
    now = utcnow()
    with store.begin() as conn:
        page = subs.page_by_id(conn, site.page_id)
        assert page is not None
        rows = subscriber_admin.parse(
            conn,
            page,
            b"address,channel,services\nAnn@example.com,email,\n+49 151 1234 5678,sms,db\n"
            b"api@example.com,email,api\nwait@example.com,email,\n",
        )
        result = subscriber_admin.import_rows(
            conn, page, rows[:3], actor="user:ops", skip_confirmation=True
        )
        assert result.imported == 3 and result.confirmations_sent == 0
        subscriber_admin.import_rows(
            conn, page, rows[3:], actor="user:ops", skip_confirmation=False
        )
        ids = {r.address: r.id for r in conn.execute(sa.select(subscribers))}
        conn.execute(
            deliveries.insert(),
            [
                {
                    "dedup_key": f"{key}:subscriber:{ids[address]}",
                    "subscriber_id": ids[address],
                    "kind": "subscriber",
                    "message": {"notice": key, "channel": "email", "source": None},
                    "status": status,
                    "attempts": attempts,
                    "last_error": error,
                    "created_at": now,
                    "updated_at": now,
                }
                for key, address, status, attempts, error in (
                    ("incident-update:7:page:1", "ann@example.com", "sent", 1, None),
                    ("incident-update:7:page:1", "api@example.com", "failed", 8, "gave up"),
                    ("incident-update:9:page:1", "ann@example.com", "pending", 0, None),
                )
            ],
        )

    with store.read() as conn:
        found = subscriber_admin.search(conn, site.page_id, subscriber_admin.Search(q="ANN"))
        assert [r.address for r in found.rows] == ["ann@example.com"]
        phone = subscriber_admin.search(conn, site.page_id, subscriber_admin.Search(q="151 12"))
        assert [r.address for r in phone.rows] == ["+4915112345678"]
        waiting = subscriber_admin.search(
            conn, site.page_id, subscriber_admin.Search(state=subscriber_admin.State.PENDING)
        )
        assert [r.address for r in waiting.rows] == ["wait@example.com"]

        reach = audience.audience(conn, site.team_id, [site.service_ids["api"]])
        assert reach.by_channel == {"email": 2, "sms": 0, "webhook": 0, "user": 0}
        everything = audience.audience(conn, site.team_id, [])
        assert everything.subscribers == 3 and everything.by_channel["sms"] == 1

        notices, more = delivery_log.notifications(conn, site.page_id)
        assert more is None
        assert [(n.key, n.total, n.by_state["failed"]) for n in notices] == [
            ("incident-update:9:page:1", 1, 0),
            ("incident-update:7:page:1", 2, 1),
        ]
        assert notices[1].kind == "incident-update" and notices[1].object_id == 7
        older, _ = delivery_log.notifications(conn, site.page_id, before=notices[0].cursor)
        assert [n.key for n in older] == ["incident-update:7:page:1"]
        log, total, _ = delivery_log.entries(
            conn,
            site.page_id,
            delivery_log.DeliveryFilter(notification="incident-update:7:page:1"),
        )
        assert total == 2
        assert [(r.address, r.status, r.attempts, r.last_error) for r in log] == [
            ("api@example.com", "failed", 8, "gave up"),
            ("ann@example.com", "sent", 1, None),
        ]


def test_the_preview_counts_account_users_only_while_they_may_hear(store: Store) -> None:
    from engine.accounts import create_user
    from engine.tables import team_members, users

    site = make_site(SimpleNamespace(store=store), slug="inside", team_key="inside", private=True)  # type: ignore[arg-type]
    public = make_site(SimpleNamespace(store=store), slug="shop", team_key="shop")  # type: ignore[arg-type]
    member = create_user(store, "ann@acme.test", role="stakeholder", teams=["inside"])
    left = create_user(store, "bob@acme.test", role="stakeholder", teams=["inside"])
    gone = create_user(store, "cat@acme.test", role="responder", teams=["shop"])
    with store.begin() as conn:
        page = subs.page_by_id(conn, site.page_id)
        shop = subs.page_by_id(conn, public.page_id)
        assert page is not None and shop is not None
        for user_id, email in ((member, "ann@acme.test"), (left, "bob@acme.test")):
            subs.subscribe(conn, page, "user", email, user_id=user_id)
        subscriber_admin.add(
            conn, shop, SubscriberChannel.USER, user_email="cat@acme.test", actor="t"
        )
        conn.execute(team_members.delete().where(team_members.c.user_id == left))
        conn.execute(users.update().where(users.c.id == gone).values(active=False))
    with store.read() as conn:
        inside = audience.audience(conn, site.team_id, [])
        assert inside.by_channel["user"] == 1  # bob left the team: he would hear nothing
        assert audience.audience(conn, public.team_id, []).subscribers == 0  # cat: inactive
