"""Commit tokens are WAL positions: ordered as the server orders them, refused when malformed."""

from __future__ import annotations

import pytest

from app.db.errors import InvalidQueryError
from app.topology.replicas import ANY_POSITION, position
from app.topology.routing import route


def test_positions_order_as_the_write_ahead_log_does() -> None:
    assert position(ANY_POSITION) == 0
    assert position("0/3000060") < position("0/3000061") < position("1/0") < position("16/B374D848")
    assert position("16/B374D848") == (0x16 << 32) | 0xB374D848


@pytest.mark.parametrize(
    "token",
    ["", "yesterday", "0-3000060", "G/0", "1/2/3", "/", "-1/5", "0/-5", " 0/5 ", "+1/+2",
     "0x1/0x2", "1_0/5", "\u0661/\u0665", "0/5\n", "123456789/0", None, 5],
)  # fmt: skip
def test_a_malformed_token_is_an_invalid_query_error(token: str) -> None:
    with pytest.raises(InvalidQueryError, match="not a commit token"):
        position(token)


def test_an_empty_token_is_refused_even_without_replicas() -> None:
    with pytest.raises(InvalidQueryError, match="not a commit token"):
        route(None, read_only=True, after="", isolation_level=None)
    assert route(None, read_only=True, after=None, isolation_level=None).replica is None
