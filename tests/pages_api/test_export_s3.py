"""The static export to an S3-compatible bucket, against moto's S3 server on loopback (a real
HTTP S3 stand-in): the page's objects with their content types, replaced after a status
change, gone when the page is deactivated."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from engine.overrides import set_override
from pages import render
from tests.conftest import free_port

from . import seed
from .conftest import App

BUCKET = "status-export"
PREFIX = "status/"
CREDENTIALS = {"aws_access_key_id": "beacon-test", "aws_secret_access_key": "beacon-test-secret"}


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_url: str) -> Iterator[Any]:
    import boto3

    client = boto3.session.Session().client(
        "s3", endpoint_url=s3_url, region_name="us-east-1", **CREDENTIALS
    )
    client.create_bucket(Bucket=BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)
    client.close()


@pytest.fixture
def exporting(make_app: Callable[..., App], s3_url: str, bucket: Any) -> App:
    return make_app(
        BEACON_EXPORT_S3_BUCKET=BUCKET,
        BEACON_EXPORT_S3_PREFIX=PREFIX,
        BEACON_EXPORT_S3_ENDPOINT_URL=s3_url,
        BEACON_EXPORT_S3_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"],
        BEACON_EXPORT_S3_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"],
    )


def objects(client: Any, slug: str = "acme") -> dict[str, tuple[str, str, str]]:
    """The page's objects: key under the page -> (Content-Type, Cache-Control, ETag)."""
    found = {}
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}p/{slug}/")
    for item in listed.get("Contents", []):
        head = client.head_object(Bucket=BUCKET, Key=item["Key"])
        name = item["Key"].removeprefix(f"{PREFIX}p/{slug}/")
        found[name] = (head["ContentType"], head.get("CacheControl", ""), head["ETag"])
    return found


def body(client: Any, name: str) -> bytes:
    answer = client.get_object(Bucket=BUCKET, Key=f"{PREFIX}p/acme/{name}")
    return answer["Body"].read()  # type: ignore[no-any-return]


def rendered(app: App, page_id: int) -> None:
    render.render_page(app.runtime, page_id, render.render_count(app.runtime, page_id) + 1)


def test_the_bucket_holds_the_page_replaced_on_change_and_emptied_on_deactivation(
    exporting: App, bucket: Any
) -> None:
    rich = seed.rich_page(exporting.store)
    rendered(exporting, rich.page.id)

    found = objects(bucket)
    types = {name: ctype for name, (ctype, _, _) in found.items()}
    with exporting.store.read() as conn:
        from engine.tables import incidents

        public_ids = conn.execute(sa.select(incidents.c.public_id)).scalars().all()
    assert len(public_ids) == 2
    assert types == {
        # The permalinks of the incidents the page links to.
        **{f"incidents/{public_id}": "text/html; charset=utf-8" for public_id in public_ids},
        "index.html": "text/html; charset=utf-8",
        "history": "text/html; charset=utf-8",
        "page.js": "text/javascript; charset=utf-8",
        "api/v2/summary.json": "application/json",
        "api/v2/status.json": "application/json",
        "api/v2/components.json": "application/json",
        "api/v2/incidents.json": "application/json",
        "api/v2/incidents/unresolved.json": "application/json",
        "api/v2/scheduled-maintenances.json": "application/json",
        "api/v2/scheduled-maintenances/upcoming.json": "application/json",
        "api/v2/scheduled-maintenances/active.json": "application/json",
        "history.rss": "application/rss+xml; charset=utf-8",
        "history.atom": "application/atom+xml; charset=utf-8",
        "maintenance.ics": "text/calendar; charset=utf-8",
        "badge.svg": "image/svg+xml",
    }
    assert {cc for _, cc, _ in found.values()} == {"public, max-age=5, stale-while-revalidate=25"}
    served = exporting.client.get("/p/acme/api/v2/summary.json").content
    assert body(bucket, "api/v2/summary.json") == served

    # A status change: the documents that show it are put again, the others are left.
    with exporting.store.begin() as conn:
        set_override(
            conn, rich.page.service_ids["db"], "major_outage", until=None, reason=None, actor="t"
        )
    rendered(exporting, rich.page.id)
    after = objects(bucket)
    assert after.keys() == found.keys()
    assert after["api/v2/summary.json"][2] != found["api/v2/summary.json"][2]
    assert after["history.rss"][2] == found["history.rss"][2]
    summary = json.loads(body(bucket, "api/v2/summary.json"))
    statuses = {c["name"]: c["status"] for c in summary["components"]}
    assert statuses["Database"] == "major_outage"

    # Deactivated: every object of the page goes in the same request, its manifest too.
    answer = exporting.client.patch(
        f"/api/v1/pages/{rich.page.id}", json={"active": False}, headers=exporting.key(admin=True)
    )
    assert answer.status_code == 200, answer.text
    assert objects(bucket) == {}
    assert bucket.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_a_page_with_a_logo_has_it_in_the_bucket_with_its_type(exporting: App, bucket: Any) -> None:
    from .test_export import png

    rich = seed.rich_page(exporting.store)
    logo = png()
    answer = exporting.client.put(
        f"/api/v1/pages/{rich.page.id}/logo",
        content=logo,
        headers={**exporting.key(admin=True), "Content-Type": "image/png"},
    )
    assert answer.status_code == 200, answer.text
    rendered(exporting, rich.page.id)
    [name] = [n for n in objects(bucket) if n.startswith("assets/")]
    assert objects(bucket)[name][:2] == ("image/png", "public, max-age=31536000, immutable")
    assert body(bucket, name) == logo


def test_objects_under_the_slug_that_no_manifest_lists_go_with_the_first_render(
    exporting: App, bucket: Any
) -> None:
    """As in the directory: another page's objects left under the slug (its removal failed)
    must not go on being served as this page's."""
    stale = f"{PREFIX}p/acme/incidents/zzold1"
    bucket.put_object(Bucket=BUCKET, Key=stale, Body=b"<h1>Team B's incident</h1>")
    rich = seed.rich_page(exporting.store)
    render.render_page(exporting.runtime, rich.page.id, 1)
    found = objects(bucket)
    assert "index.html" in found and "incidents/zzold1" not in found
