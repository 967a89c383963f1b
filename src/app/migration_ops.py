"""Schema changes under live traffic, for Alembic migrations: the public name of
`app.migrations.ops`, which says how each helper works."""

from app.migrations.ops import *  # noqa: F403 - this module is that package's public name
from app.migrations.ops import __all__ as __all__
