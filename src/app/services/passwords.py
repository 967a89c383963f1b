"""Password hashing with argon2 (pwdlib's recommended settings)."""

from __future__ import annotations

from functools import lru_cache

from pwdlib import PasswordHash


@lru_cache(maxsize=1)
def _hasher() -> PasswordHash:
    return PasswordHash.recommended()


def hash_password(password: str) -> str:
    """An argon2 hash of `password`, salted."""
    return _hasher().hash(password)


def verify_password(password: str, hashed: str) -> bool:
    """Whether `password` matches `hashed`."""
    return _hasher().verify(password, hashed)
