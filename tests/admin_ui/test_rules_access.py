"""Rule files in the admin UI belong to the teams recorded for them: a responder reads and
edits only the files that are their teams' alone, and saving keeps the other files and the
owners as they were; a stale form is refused."""

from __future__ import annotations

import sqlalchemy as sa
from starlette.testclient import TestClient

from engine import rulesets
from engine.accounts import create_api_key
from engine.runtime import Runtime
from engine.tables import rule_sets
from rules.validate import digest

from .conftest import World, csrf_of, sign_in

PLATFORM = """version: 1
rules:
  - id: platform-api
    match: {source_type: uptime-kuma}
    services: [api]
    then:
      - set_status: degraded
"""
ACME = PLATFORM.replace("platform-api", "acme-portal").replace("[api]", "[portal]")
OWNERS = {"acme.yaml": ["acme"], "platform.yaml": ["platform"]}


def publish(rt: Runtime, client: TestClient) -> None:
    key = create_api_key(rt.store, name="seed", admin=True)
    for team in ("platform", "acme"):
        answer = client.post(
            "/api/v1/alert-sources",
            json={"key": "kuma", "name": "Kuma", "type": "uptime-kuma", "team": team},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 201, answer.text
    files = {"platform.yaml": PLATFORM, "acme.yaml": ACME}
    with rt.store.begin() as conn:
        rulesets.publish(conn, files, digest(files, OWNERS), actor="t", owners=OWNERS)


def test_a_responder_edits_only_their_teams_rule_files(
    client: TestClient, rt: Runtime, world: World
) -> None:
    publish(rt, client)
    sign_in(client, "ops@example.test")
    page = client.get("/admin/rules").text
    assert "platform.yaml" in page and "acme" not in page
    token = csrf_of(page)
    edited = PLATFORM.replace("degraded", "major_outage")
    form = {"csrf": token, "version": "1", "text-0": edited, "text-1": "stolen", "save": "1"}
    answer = client.post("/admin/rules", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    with rt.store.read() as conn:
        newest = rulesets.in_force(conn)
    assert newest.version == 2
    assert newest.files == {"platform.yaml": edited, "acme.yaml": ACME}
    assert newest.owners == OWNERS
    # The form of version 1 is stale now.
    answer = client.post("/admin/rules", data=form)
    assert answer.status_code == 422 and "changed since this page was loaded" in answer.text
    with rt.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(rule_sets)).scalar() == 2


def test_a_file_without_owners_is_an_admins(client: TestClient, rt: Runtime, world: World) -> None:
    with rt.store.begin() as conn:
        files = {"shared.yaml": PLATFORM}
        rulesets.publish(conn, files, digest(files), actor="t")
    sign_in(client, "ops@example.test")
    page = client.get("/admin/rules").text
    assert "shared.yaml" not in page and 'id="no-files"' in page
    client.cookies.clear()
    sign_in(client, "admin@example.test")
    assert "shared.yaml" in client.get("/admin/rules").text
