"""Replicas of the primary and where a unit of work runs."""
