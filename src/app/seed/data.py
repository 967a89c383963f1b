"""The seed's rows: deterministic, generated lazily, the same on every backend.

A user is identified by its number n (1, 2, ...) and an item by (n, j): ids, emails and
timestamps depend on nothing else, so a larger run extends a smaller one and a rerun finds
exactly the rows it made before. `--seed` only picks the names and titles of new rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

# Seed rows carry timestamps from 2020-01-01 onwards, far from the ids of real rows.
SEED_EPOCH_MS = 1_577_836_800_000
_EPOCH = dt.datetime.fromtimestamp(SEED_EPOCH_MS / 1000, dt.UTC)

USER_COLUMNS = (
    "id",
    "email",
    "full_name",
    "hashed_password",
    "is_active",
    "is_superuser",
    "created_at",
    "updated_at",
    "version",
)
Row = tuple[object, ...]

ITEM_COLUMNS = ("id", "title", "description", "owner_id", "created_at", "updated_at", "version")

_FIRST = (
    "Ada", "Alan", "Barbara", "Claude", "Dennis", "Edsger", "Frances", "Grace", "Guido",
    "Hedy", "John", "Katherine", "Ken", "Leslie", "Linus", "Margaret", "Niklaus", "Radia",
    "Shafi", "Tim", "Tony", "Vint", "Yukihiro", "Donald",
)  # fmt: skip
_LAST = (
    "Lovelace", "Turing", "Liskov", "Shannon", "Ritchie", "Dijkstra", "Allen", "Hopper",
    "van Rossum", "Lamarr", "McCarthy", "Johnson", "Thompson", "Lamport", "Torvalds",
    "Hamilton", "Wirth", "Perlman", "Goldwasser", "Berners-Lee", "Hoare", "Cerf",
    "Matsumoto", "Knuth",
)  # fmt: skip
_ADJECTIVES = (
    "red", "quiet", "sturdy", "tiny", "vintage", "bright", "heavy", "spare", "broken",
    "shiny", "wooden", "folding",
)  # fmt: skip
_NOUNS = (
    "lamp", "chair", "notebook", "bicycle", "kettle", "umbrella", "guitar", "telescope",
    "backpack", "clock", "camera", "teapot",
)  # fmt: skip


def seed_uuid(kind: str, n: int, j: int = 0) -> uuid.UUID:
    """A deterministic UUIDv7 for the j-th row of `kind` belonging to number n.

    The timestamp part grows with n, so seeded rows keep the index locality of UUIDv7.
    """
    digest = hashlib.blake2b(f"{kind}:{n}:{j}".encode(), digest_size=10).digest()
    random_bits = int.from_bytes(digest, "big")
    rand_a = (random_bits >> 62) & 0xFFF
    rand_b = random_bits & ((1 << 62) - 1)
    value = ((SEED_EPOCH_MS + n) << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)


def seed_time(n: int) -> dt.datetime:
    """The creation time of seed row number n (the same instant as its id)."""
    return _EPOCH + dt.timedelta(milliseconds=n)


def demo_email(n: int) -> str:
    """The email of demo user n."""
    return f"user{n}@example.com"


@dataclass(frozen=True)
class SeedPlan:
    """What one seed run writes."""

    users: int
    items_per_user: int
    seed: int
    hashed_password: str

    def user_row(self, n: int) -> tuple[object, ...]:
        """Demo user n, in USER_COLUMNS order."""
        mix = (n * 2_654_435_761 + self.seed * 40_503) & 0xFFFF_FFFF
        name = f"{_FIRST[mix % len(_FIRST)]} {_LAST[(mix >> 8) % len(_LAST)]}"
        when = seed_time(n)
        active = n % 10 != 0  # a few inactive users, to have something to filter
        return (seed_uuid("user", n), demo_email(n), name, self.hashed_password, active, False,
                when, when, 1)  # fmt: skip

    def item_rows(self, n: int) -> Iterator[tuple[object, ...]]:
        """The items of demo user n, in ITEM_COLUMNS order."""
        owner = seed_uuid("user", n)
        when = seed_time(n)
        for j in range(self.items_per_user):
            mix = (n * 2_246_822_519 + j * 3_266_489_917 + self.seed * 668_265_263) & 0xFFFF_FFFF
            title = f"{_ADJECTIVES[mix % len(_ADJECTIVES)]} {_NOUNS[(mix >> 8) % len(_NOUNS)]}"
            description = (
                None if mix % 3 == 0 else f"{title.capitalize()} number {j + 1} of user {n}."
            )
            yield (seed_uuid("item", n, j), title, description, owner, when, when, 1)

    def admin_row(self, email: str) -> tuple[object, ...]:
        """The admin user, in USER_COLUMNS order."""
        when = seed_time(0)
        return (seed_uuid(f"admin:{email}", 0), email, "Administrator", self.hashed_password,
                True, True, when, when, 1)  # fmt: skip
