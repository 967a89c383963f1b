"""Idempotent, deterministic seeding of a development database."""

from app.seed.runner import (
    SeedOptions,
    SeedRefusedError,
    SeedSummary,
    check_can_seed,
    seed_database,
    total_rows,
)

__all__ = [
    "SeedOptions",
    "SeedRefusedError",
    "SeedSummary",
    "check_can_seed",
    "seed_database",
    "total_rows",
]
