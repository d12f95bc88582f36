"""Tried as an attacker: a statement that fails while it carries a token, an address or a
secret (a lock timeout, a dropped connection) is logged by the route's error handler
with the exception's text; SQLAlchemy puts the statement's parameters in that text."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engine.db import Store


def test_a_failed_statement_never_carries_its_parameters(store: Store) -> None:
    secret = "bf_feedtokensecret0123456789"
    with pytest.raises(sa.exc.DBAPIError) as caught, store.read() as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table WHERE token = :t"), {"t": secret})
    assert "no_such_table" in str(caught.value)
    assert secret not in str(caught.value)
