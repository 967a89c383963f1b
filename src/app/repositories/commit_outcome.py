"""Committing exactly once over a connection that may break: `run_in_transaction` signs its
transaction just before COMMIT (each backend's receipt: PostgreSQL's transaction id, a marker
row elsewhere), and when the COMMIT gets no answer, asks a fresh connection whether it was
applied, once it no longer can be. Applied: the unit returns as committed. Not applied: it is
run again. Cannot tell (the database is still out of reach): `CommitOutcomeUnknownError`, as
without a receipt."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from app.db.errors import (
    CommitOutcomeUnknownError,
    ConnectionLostError,
    DataLayerError,
    RetryableError,
)
from app.dialects import backend_of
from app.dialects.commit_markers import CommitReceipt

# Checks tried: a cluster may certify the check against the lost transaction itself (a
# RetryableError, and the next check tells).
ATTEMPTS = 3

NOT_APPLIED = (
    "the database connection was lost while the transaction was committing, and it was not "
    "applied; try again"
)


def sign(session: Session) -> CommitReceipt | None:
    """The receipt of the transaction on `session`, written into it now (after flushing what
    the session holds, which the COMMIT would flush after it)."""
    session.flush()
    connection = session.connection()
    return backend_of(connection).sign_commit(connection)


def resolve(receipt: CommitReceipt, lost: CommitOutcomeUnknownError) -> None:
    """Return if the transaction of `receipt` was applied; raise `ConnectionLostError` (which
    `run_in_transaction` runs again) if it was not and no longer can be, and `lost` when that
    cannot be told."""
    for _ in range(ATTEMPTS):
        try:
            with receipt.engine.connect() as connection:
                applied = backend_of(connection).was_committed(connection, receipt)
        except RetryableError:
            continue
        except (DataLayerError, sa_exc.SQLAlchemyError):
            break  # out of reach still, or the check was refused
        if applied is None:
            break
        if applied:
            return
        raise ConnectionLostError(NOT_APPLIED) from lost
    raise lost


def settled(receipt: CommitReceipt) -> None:
    """After the COMMIT of `receipt`'s transaction succeeded."""
    backend_of(receipt.engine).after_commit(receipt)
