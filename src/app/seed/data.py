"""The seed's rows: deterministic, generated lazily, the same on every backend.

A user is identified by its number n (1, 2, ...) and an item by (n, j): ids, emails and
timestamps depend on nothing else, so a larger run extends a smaller one and a rerun finds
exactly the rows it made before. `--seed` only picks the names and titles of new rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zlib
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


_MASK_64 = (1 << 64) - 1
KIND_ADMIN, KIND_USER, KIND_ITEM = 1, 2, 3


def _mix64(value: int) -> int:
    """SplitMix64's finaliser: a fast bijection on 64-bit integers that scatters the bits."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK_64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK_64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK_64
    return value ^ (value >> 31)


def _uuid_int(kind: int, n: int, j: int = 0) -> int:
    bits = _mix64((kind << 60) | (j << 36) | n)
    return (((SEED_EPOCH_MS + n) << 80) | (0x7 << 76) | ((bits >> 52) << 64)
            | (0b10 << 62) | (bits & ((1 << 62) - 1)))  # fmt: skip


def seed_uuid(kind: int, n: int, j: int = 0) -> uuid.UUID:
    """A deterministic UUIDv7 for the j-th row of `kind` belonging to number n.

    The timestamp part grows with n, so seeded rows keep the index locality of UUIDv7; the
    random part is a bijection of (kind, n, j), so two rows never share an id.
    """
    return uuid.UUID(int=_uuid_int(kind, n, j))


def seed_time(n: int) -> dt.datetime:
    """The creation time of seed row number n (the same instant as its id)."""
    return _EPOCH + dt.timedelta(milliseconds=n)


def demo_email(n: int) -> str:
    """The email of demo user n."""
    return f"user{n}@example.com"


@dataclass(frozen=True)
class SeedPlan:
    """What one seed run writes: rows, or columns for a bulk write (the same values)."""

    users: int
    items_per_user: int
    seed: int
    hashed_password: str

    def _user(self, n: int) -> tuple[int, str, str, bool]:
        mix = (n * 2_654_435_761 + self.seed * 40_503) & 0xFFFF_FFFF
        name = f"{_FIRST[mix % len(_FIRST)]} {_LAST[(mix >> 8) % len(_LAST)]}"
        active = n % 10 != 0  # a few inactive users, to have something to filter
        return _uuid_int(KIND_USER, n), demo_email(n), name, active

    def _items(self, n: int) -> Iterator[tuple[int, str, str | None]]:
        for j in range(self.items_per_user):
            mix = (n * 2_246_822_519 + j * 3_266_489_917 + self.seed * 668_265_263) & 0xFFFF_FFFF
            title = f"{_ADJECTIVES[mix % len(_ADJECTIVES)]} {_NOUNS[(mix >> 8) % len(_NOUNS)]}"
            description = (
                None if mix % 3 == 0 else f"{title.capitalize()} number {j + 1} of user {n}."
            )
            yield _uuid_int(KIND_ITEM, n, j), title, description

    def user_id(self, n: int) -> uuid.UUID:
        """The id of demo user n."""
        return seed_uuid(KIND_USER, n)

    def user_row(self, n: int) -> Row:
        """Demo user n, in USER_COLUMNS order."""
        id_int, email, name, active = self._user(n)
        when = seed_time(n)
        return (uuid.UUID(int=id_int), email, name, self.hashed_password, active, False,
                when, when, 1)  # fmt: skip

    def item_rows(self, n: int) -> Iterator[Row]:
        """The items of demo user n, in ITEM_COLUMNS order."""
        owner, when = self.user_id(n), seed_time(n)
        for id_int, title, description in self._items(n):
            yield (uuid.UUID(int=id_int), title, description, owner, when, when, 1)

    def user_columns(self, numbers: range) -> dict[str, list[object]]:
        """Demo users `numbers` column by column, by USER_COLUMNS name; ids as 32 hex digits."""
        users = [self._user(n) for n in numbers]
        times: list[object] = [seed_time(n) for n in numbers]
        count = len(users)
        return {
            "id": [f"{id_int:032x}" for id_int, _, _, _ in users],
            "email": [email for _, email, _, _ in users],
            "full_name": [name for _, _, name, _ in users],
            "hashed_password": [self.hashed_password] * count,
            "is_active": [active for _, _, _, active in users],
            "is_superuser": [False] * count,
            "created_at": times,
            "updated_at": times,
            "version": [1] * count,
        }

    def item_columns(self, numbers: range) -> dict[str, list[object]]:
        """The items of demo users `numbers` column by column, by ITEM_COLUMNS name; ids as 32
        hex digits."""
        ids: list[object] = []
        titles: list[object] = []
        descriptions: list[object] = []
        owners: list[object] = []
        times: list[object] = []
        for n in numbers:
            owner, when = f"{_uuid_int(KIND_USER, n):032x}", seed_time(n)
            for id_int, title, description in self._items(n):
                ids.append(f"{id_int:032x}")
                titles.append(title)
                descriptions.append(description)
                owners.append(owner)
                times.append(when)
        return {
            "id": ids,
            "title": titles,
            "description": descriptions,
            "owner_id": owners,
            "created_at": times,
            "updated_at": times,
            "version": [1] * len(ids),
        }

    def item_id(self, n: int, j: int) -> uuid.UUID:
        """The id of the j-th item of demo user n."""
        return seed_uuid(KIND_ITEM, n, j)

    def admin_row(self, email: str) -> Row:
        """The admin user, in USER_COLUMNS order."""
        when = seed_time(0)
        key = zlib.crc32(email.encode()) & 0xFF_FFFF  # a different admin email, a different id
        return (seed_uuid(KIND_ADMIN, 0, key), email, "Administrator", self.hashed_password,
                True, True, when, when, 1)  # fmt: skip
