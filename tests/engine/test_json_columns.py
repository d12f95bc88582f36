"""JSON columns round-trip what the standard library stored before orjson did the work."""

from __future__ import annotations

import sqlalchemy as sa

from engine.db import Store, json_text, json_value
from engine.tables import alert_sources, teams


def test_json_value_reads_what_the_standard_library_reads() -> None:
    assert json_value('{"a": [1, 2.5, "é"]}') == {"a": [1, 2.5, "é"]}
    assert json_value(b'{"big": 1180591620717411303424}') == {"big": 2**70}
    assert json_value("[Infinity]") == [float("inf")]


def test_json_text_falls_back_for_what_orjson_refuses() -> None:
    assert json_text({"a": [1, "b", None]}) == '{"a":[1,"b",null]}'
    # Keys that are not strings and integers past 64 bits: orjson refuses both.
    assert json_text({1: 2**70}) == '{"1": 1180591620717411303424}'


def test_json_columns_round_trip_on_both_backends(store: Store) -> None:
    value = {"nested": {"list": [1, 2.5, True, None, "é"]}, "big": 2**70}
    with store.begin() as conn:
        team = conn.execute(teams.insert().values(key="t", name="T")).inserted_primary_key
        assert team is not None
        conn.execute(
            alert_sources.insert().values(
                team_id=team[0],
                key="s",
                name="S",
                type="generic",
                key_digest="k",
                settings=value,
            )
        )
    with store.read() as conn:
        got = conn.execute(sa.select(alert_sources.c.settings)).scalar_one()
    assert got["nested"] == value["nested"]
    # Read back exactly: an integer, as the standard library reads it.
    assert got["big"] == 2**70 and isinstance(got["big"], int)


def test_rows_the_standard_library_wrote_with_nan_still_read(sqlite_store: Store) -> None:
    with sqlite_store.begin() as conn:
        team = conn.execute(teams.insert().values(key="t", name="T")).inserted_primary_key
        assert team is not None
        conn.execute(
            alert_sources.insert().values(
                team_id=team[0], key="s", name="S", type="generic", key_digest="k"
            )
        )
        conn.exec_driver_sql("UPDATE alert_sources SET settings = '{\"x\": NaN}'")
    with sqlite_store.read() as conn:
        got = conn.execute(sa.select(alert_sources.c.settings)).scalar_one()
    assert got["x"] != got["x"]  # NaN
