"""Benchmarks: our paths against the raw driver, SQLAlchemy Core and the ORM, in one run."""
