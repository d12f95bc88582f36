"""`beacon apply` ends a page's access in its own command: a page it deactivates or prunes
leaves the shared cache (scaled mode's Redis, which every web process reads), the export
directory and the S3 export before the command returns, with no render in between (none
runs here: there is no worker)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from cli.main import main
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import status_pages
from pages import render
from pages.app import create_app
from pages.fastpath import outermost
from tests.conftest import REDIS_URL
from tests.pages_api.test_export_s3 import (  # noqa: F401 - fixtures
    BUCKET,
    CREDENTIALS,
    PREFIX,
    bucket,
    objects,
    s3_url,
)

CONFIG = """\
teams:
  - {{key: platform}}
services:
  - {{key: api, name: Public API, team: platform}}
status_pages:
  - {{slug: acme, name: ACME, teams: [platform], services: [api], {acme}}}
{beta}"""
BETA = "  - {slug: beta, name: Beta, teams: [platform], services: [api]}\n"
DOCS = ("/", "/api/v2/summary.json", "/history.rss")


@pytest.fixture(params=["embedded", "scaled"])
def env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The command's environment: an export directory always; scaled mode adds PostgreSQL,
    Redis and an S3 bucket (moto's server on loopback)."""
    values = {
        "BEACON_DATA_DIR": str(tmp_path / "data"),
        "BEACON_EXPORT_DIR": str(tmp_path / "export"),
    }
    if request.param == "scaled":
        s3 = request.getfixturevalue("s3_url")
        request.getfixturevalue("bucket")
        values.update(
            BEACON_DATABASE_URL=request.getfixturevalue("pg_url"),
            BEACON_REDIS_URL=REDIS_URL,
            BEACON_REDIS_PREFIX=request.getfixturevalue("redis_prefix"),
            BEACON_SECRET_KEY=secrets.token_hex(32),
            BEACON_EXPORT_S3_BUCKET=BUCKET,
            BEACON_EXPORT_S3_PREFIX=PREFIX,
            BEACON_EXPORT_S3_ENDPOINT_URL=s3,
            BEACON_EXPORT_S3_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"],
            BEACON_EXPORT_S3_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"],
        )
    for name in [n for n in os.environ if n.startswith("BEACON_")]:
        monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def _apply(tmp_path: Path, *args: str, acme: str = "active: true", beta: str = BETA) -> None:
    path = tmp_path / "beacon.yaml"
    path.write_text(CONFIG.format(acme=acme, beta=beta))
    assert main(["apply", *args, str(path)]) == 0


def _page_ids(rt: Runtime) -> dict[str, int]:
    with rt.store.read() as conn:
        return dict(conn.execute(sa.select(status_pages.c.slug, status_pages.c.id)).all())


def _served(client: TestClient, slug: str) -> list[int]:
    return [client.get(f"/p/{slug}{path}", follow_redirects=False).status_code for path in DOCS]


@pytest.mark.parametrize(
    ("change", "ended", "kept"),
    [
        ({"acme": "active: false"}, "acme", "beta"),
        ({"beta": "", "args": ("--prune",)}, "beta", "acme"),
    ],
    ids=["deactivated", "pruned"],
)
def test_apply_evicts_a_page_it_ends_before_it_returns(
    env: dict[str, str],
    tmp_path: Path,
    make_runtime: Callable[..., Runtime],
    change: dict[str, Any],
    ended: str,
    kept: str,
) -> None:
    rt = make_runtime(Settings.from_env(env))  # migrated (scaled `apply` does not migrate)
    _apply(tmp_path)
    ids = _page_ids(rt)
    for slug in ("acme", "beta"):  # rendered as the render job does, at its wanted version
        render.mark_dirty(rt, ids[slug])
        render.run_render(rt, ids[slug])
    export = Path(env["BEACON_EXPORT_DIR"])
    s3 = _s3(env)
    with TestClient(outermost(create_app(rt), rt)) as client:
        for slug in ("acme", "beta"):
            assert _served(client, slug) == [200, 200, 200]
            assert (export / "p" / slug / "index.html").exists()
            if s3 is not None:
                assert "index.html" in objects(s3, slug)
        renders = render.render_count(rt, ids[ended])

        options = {k: v for k, v in change.items() if k in ("acme", "beta")}
        _apply(tmp_path, *change.get("args", ()), **options)

        # Nothing rendered the page since: the command itself took every copy away.
        assert render.render_count(rt, ids[ended]) == renders
        assert not (export / "p" / ended).exists()
        if s3 is not None:
            assert objects(s3, ended) == {}
            assert "index.html" in objects(s3, kept)
        assert (export / "p" / kept / "index.html").exists()
        assert _served(client, kept) == [200, 200, 200]
        if env.get("BEACON_REDIS_URL"):
            # Scaled: the shared cache every web process reads has the tombstone, so this
            # process, and one that starts now, go through the access check and find no
            # page to serve.
            fresh = make_runtime(Settings.from_env(env), upgrade=False)
            with TestClient(outermost(create_app(fresh), fresh)) as other:
                for answer in (_served(client, ended), _served(other, ended)):
                    assert answer == [404, 404, 404], answer


def _s3(env: dict[str, str]) -> Any:
    if not env.get("BEACON_EXPORT_S3_BUCKET"):
        return None
    import boto3

    return boto3.session.Session().client(
        "s3",
        endpoint_url=env["BEACON_EXPORT_S3_ENDPOINT_URL"],
        region_name="us-east-1",
        **CREDENTIALS,
    )
