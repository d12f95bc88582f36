"""Live-update streams (SSE) are capped per client address and per page: 10,000 streams
asked for from one address get the cap's worth, the rest a 429 with `Retry-After`; another
address still gets its streams; past the page's cap a 503; and the server's memory stays
where it was."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.support import Served, beacon, beacon_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = """
teams: [{key: platform}]
services: [{key: api, name: Public API, team: platform}]
status_pages:
  - {slug: acme, name: ACME Status, type: public, teams: [platform], services: [api],
     active: true}
"""
PER_CLIENT = 32
PER_PAGE = 60
ASKED = 10_000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Streams:
    """Opens live streams from given loopback addresses and keeps the accepted ones open."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.open: list[asyncio.StreamWriter] = []

    async def ask(self, address: str) -> tuple[int, str]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.port, local_addr=(address, 0)
        )
        writer.write(b"GET /p/acme/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status = int(head.split(" ", 2)[1])
        if status == 200:
            self.open.append(writer)
            return status, head
        writer.close()
        return status, head

    async def ask_many(self, address: str, count: int, at_once: int = 64) -> list[int]:
        gate = asyncio.Semaphore(at_once)

        async def one() -> int:
            async with gate:
                return (await self.ask(address))[0]

        return list(await asyncio.gather(*(one() for _ in range(count))))

    def close(self) -> None:
        for writer in self.open:
            writer.close()
        self.open.clear()


@pytest.fixture
def served(tmp_path: Path):
    (tmp_path / "beacon.yaml").write_text(CONFIG)
    env = {"BEACON_LIVE_PER_CLIENT": str(PER_CLIENT), "BEACON_LIVE_PER_PAGE": str(PER_PAGE)}
    applied = beacon(["apply", str(tmp_path / "beacon.yaml")], beacon_env(tmp_path / "data"))
    assert applied.returncode == 0, applied.stderr
    server = Served(tmp_path / "data", env=env)
    server.start()
    yield server
    server.stop()


def test_ten_thousand_streams_from_one_address_get_the_cap_and_429s(served: Served):
    assert served.proc is not None
    httpx.get(served.url + "/p/acme/")  # rendered and cached before measuring
    before = rss_kib(served.proc.pid)

    async def run() -> tuple[list[int], int, tuple[int, str], int]:
        streams = Streams(served.port)
        try:
            statuses = await streams.ask_many("127.0.0.1", ASKED)
            held = rss_kib(served.proc.pid)  # type: ignore[union-attr]
            # Another address is not held back by the first one's refusals.
            other = await streams.ask("127.0.0.2")
            # The page's cap: 32 + 1 open; more addresses fill it to PER_PAGE, then 503.
            more = []
            for n in range(3, 6):
                more += await streams.ask_many(f"127.0.0.{n}", PER_CLIENT)
            return statuses, held, other, more.count(503)
        finally:
            streams.close()

    statuses, held, (other_status, _), page_refused = asyncio.run(run())
    assert statuses.count(200) == PER_CLIENT
    assert statuses.count(429) == ASKED - PER_CLIENT
    assert other_status == 200
    assert page_refused == 3 * PER_CLIENT - (PER_PAGE - PER_CLIENT - 1)
    assert held - before < 64 * 1024, (before, held)
    # And the server goes on answering pages.
    assert httpx.get(served.url + "/p/acme/").status_code == 200


def test_a_refusal_says_why_and_when_to_come_back(served: Served):
    async def run() -> tuple[int, str]:
        streams = Streams(served.port)
        try:
            await streams.ask_many("127.0.0.1", PER_CLIENT)
            return await streams.ask("127.0.0.1")
        finally:
            streams.close()

    status, head = asyncio.run(run())
    assert status == 429
    assert "retry-after: 60" in head.lower()
