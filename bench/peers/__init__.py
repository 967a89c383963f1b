"""The ORMs a team would pick instead of this project, on the same tables (installed by the
bench extra): Django's ORM, SQLModel and Tortoise ORM, each used as its documentation shows."""

from bench.peers.workload import RATIOS, run_peers

__all__ = ["RATIOS", "run_peers"]
