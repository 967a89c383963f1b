"""pytest-alembic's built-in checks, on every backend: one head, upgrade, models match the
DDL, and every revision's downgrade undoes its upgrade."""

from __future__ import annotations

import pytest
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)

pytestmark = pytest.mark.usefixtures("backend")

__all__ = [
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]
