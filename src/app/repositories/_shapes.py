"""What the repositories build once per shape (a statement, a sort order) and use again: the
caller's values go into parameters, never into the thing kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

Key = TypeVar("Key")
Built = TypeVar("Built")

MOST_KEPT = 1000


def kept(cache: dict[Key, Built], key: Key, build: Callable[[], Built]) -> Built:
    """`cache[key]`, built on first use; a cache that grows past `MOST_KEPT` shapes (a caller
    making ever new shapes) starts again rather than grow without end."""
    found = cache.get(key)
    if found is None:
        if len(cache) >= MOST_KEPT:
            cache.clear()
        found = cache[key] = build()
    return found
