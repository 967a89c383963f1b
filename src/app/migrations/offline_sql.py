"""The SQL a range of migrations writes, rendered offline (`alembic upgrade --sql`) for a
backend's dialect: what `app db sql` prints, and the part of it one revision writes, which
`app db lint` judges."""

from __future__ import annotations

import io

from alembic import command

from app.migrations.state import alembic_config


def render_sql(
    revision_range: str, *, url: str = "postgresql+psycopg://", downgrade: bool = False
) -> str:
    """The SQL `alembic upgrade --sql` (or `downgrade --sql`) writes for `revision_range`, for
    the dialect of `url`."""
    config = alembic_config()
    buffer = io.StringIO()
    config.output_buffer = buffer
    config.attributes["url"] = url
    (command.downgrade if downgrade else command.upgrade)(config, revision_range, sql=True)
    return buffer.getvalue()


def range_sql(revision_range: str, *, url: str) -> str:
    """The SQL of the migrations from FROM to TO ("FROM:TO", or "TO" from base): upgrades, or
    downgrades where TO is older than FROM."""
    if revision_range.count(":") > 1:
        raise ValueError(f"{revision_range!r} is not a range: give FROM:TO, or TO alone")
    upgrades = render_sql(revision_range, url=url)
    start, sep, _ = revision_range.partition(":")
    if sep and start and _RUNNING not in upgrades:
        downgrades = render_sql(revision_range, url=url, downgrade=True)
        if "-- Running downgrade " in downgrades:
            return downgrades
    return upgrades


_RUNNING = "-- Running upgrade "


def own_sql(sql: str, revision: str) -> str:
    """The part of the rendered `sql` that `revision` writes, after the session settings that
    open the whole: a revision whose ancestors or dependencies (a team's branch depends on the
    project's head) are rendered with it is judged on its own statements only."""
    lines = sql.splitlines()
    ending = f" -> {revision}"
    marker = next(
        (n for n, line in enumerate(lines) if line.startswith(_RUNNING) and line.endswith(ending)),
        None,
    )
    if marker is None:
        return sql
    end = next(
        (n for n in range(marker + 1, len(lines)) if lines[n].startswith(_RUNNING)), len(lines)
    )
    if end < len(lines):
        end = _opening_begin(lines, end)  # the next revision's BEGIN is its own
    settings = lines[: next((n for n, line in enumerate(lines) if line == "BEGIN;"), 0)]
    opened = ["BEGIN;"] if _in_transaction(lines[:marker]) else []
    return "\n".join([*settings, *opened, *lines[marker:end]]) + "\n"


def _opening_begin(lines: list[str], marker: int) -> int:
    """Where the revision whose marker is at `marker` starts: at the BEGIN just before it."""
    at = marker - 1
    while at >= 0 and not lines[at].strip():
        at -= 1
    return at if at >= 0 and lines[at] == "BEGIN;" else marker


def _in_transaction(lines: list[str]) -> bool:
    """Whether a transaction is open after `lines`."""
    for line in reversed(lines):
        if line in ("BEGIN;", "COMMIT;"):
            return line == "BEGIN;"
    return False


# An identifier as PostgreSQL's SQL writes it: plain, or in double quotes ("" for a quote).
