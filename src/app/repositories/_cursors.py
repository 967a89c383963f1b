"""Opaque, tamper-evident keyset cursors.

A cursor carries the sort values of the last row of a page, signed (HMAC-SHA256) together with
the sort order and the filter it was made for. An edited cursor, one made for another query,
or garbage is refused with `InvalidQueryError`: never a wrong page, never a server error.

A cursor is as long as the sort values it carries (a long text sort key makes a long cursor),
so its length is not capped: the signature is checked, in time linear in the length, before
anything in it is parsed, and every cursor a repository made is accepted back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from app.db.errors import InvalidQueryError

_SIGNATURE_BYTES = 16
_SCALARS = (str, int, float, bool)


def model_entity(model: type[Any]) -> str:
    """What a cursor names its model by: the class's name and its table's (two models of one
    name, in two packages, share no cursor)."""
    return f"{model.__name__} {model.__table__.fullname}"


def query_fingerprint(entity: str, order: Sequence[str], where: Sequence[Any]) -> str:
    """What a cursor is bound to: the model, its sort order and its filter, the filter in its
    canonical form (`_filters.canonical`), so the same query gives the same fingerprint in
    every process, whatever form its values were given in."""
    if not where:  # the commonest list: worked out once per model and order
        return _unfiltered_fingerprint(entity, tuple(order))
    return _fingerprint(entity, order, where)


def _fingerprint(entity: str, order: Sequence[str], where: Sequence[Any]) -> str:
    described = json.dumps([entity, list(order), list(where)], separators=(",", ":"))
    return hashlib.sha256(described.encode()).hexdigest()[:32]


@lru_cache(maxsize=1024)
def _unfiltered_fingerprint(entity: str, order: tuple[str, ...]) -> str:
    return _fingerprint(entity, order, ())


def _signature(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def encode_cursor(values: Sequence[Any], *, fingerprint: str, key: bytes) -> str:
    """A cursor for the row whose (JSON-ready) sort values are `values`."""
    payload = json.dumps({"q": fingerprint, "v": list(values)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(_signature(key, payload) + payload).decode().rstrip("=")


def decode_cursor(cursor: str, *, fingerprint: str, key: bytes, size: int) -> list[Any]:
    """The sort values in `cursor`, if it is genuine and was made for this query."""
    invalid = InvalidQueryError("invalid cursor: it was altered, or made for another query")
    if not isinstance(cursor, str) or not cursor:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if base64.urlsafe_b64encode(raw).decode().rstrip("=") != cursor:
        raw = b""  # not as `encode_cursor` wrote it (padding, stray bits): edited
    signature, payload = raw[:_SIGNATURE_BYTES], raw[_SIGNATURE_BYTES:]
    if not raw or not hmac.compare_digest(signature, _signature(key, payload)):
        raise invalid
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        data = None  # refused below: a decode error holds the payload, sort values and all
    # Signed by whoever holds the key, which is not proof of a sane shape.
    if (
        not isinstance(data, dict)
        or data.get("q") != fingerprint
        or not isinstance(data.get("v"), list)
        or len(data["v"]) != size
        or not all(value is None or isinstance(value, _SCALARS) for value in data["v"])
    ):
        raise invalid
    values: list[Any] = data["v"]
    return values
