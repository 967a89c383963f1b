"""The names of the indexes and constraints a rename carries over."""

from __future__ import annotations

import re

# PostgreSQL's limit on a name's length (MariaDB's is 64).
MAX_NAME = 63


def name_with(name: str, old: str, new: str) -> str | None:
    """`name` with the segment `old` (between underscores, or at an end after one) replaced by
    `new`, as a naming convention would have named it; None when `name` holds no such segment."""
    replaced = re.sub(rf"(?<=_){re.escape(old)}(?=_|$)", new, name)
    return replaced[:MAX_NAME] if replaced != name else None
