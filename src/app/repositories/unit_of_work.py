"""The Unit of Work: one session, one transaction boundary, repositories on that session.

Entering a unit that is already open joins it: the inner block runs in a savepoint of the same
transaction. Its `commit()` releases the savepoint and hands the work to the enclosing block
(only the outermost `commit()` makes anything permanent); leaving it without `commit()`, or with
an exception, rolls back to the savepoint. A service written as `with uow: ...; uow.commit()`
therefore works on its own and inside a caller's unit or `run_in_transaction` alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from sqlalchemy.orm import Session, SessionTransaction

from app.db.errors import translating_errors
from app.db.replicas import ANY_POSITION, ReplicaSet
from app.db.session import get_replicas, get_session_factory
from app.repositories.items import ItemRepository
from app.repositories.routing import commit_returning_token, open_session
from app.repositories.users import UserRepository


class UnitOfWork:
    """`with UnitOfWork() as uow: ...; uow.commit()` -- leaving without commit rolls back.

    What was loaded stays readable after the block, committed or not; relationships that were
    not loaded still raise.
    """

    users: UserRepository
    items: ItemRepository

    def __init__(
        self,
        session_factory: Callable[[], Session] | None = None,
        *,
        isolation_level: str | None = None,
        read_only: bool = False,
        after: str | None = None,
        replicas: ReplicaSet | None = None,
    ) -> None:
        """`read_only`: the unit may run on a replica (DATABASE_REPLICA_URLS) and refuses to
        write (ReadOnlyError). `after`: a token from an earlier `commit()`; the unit then reads
        from a replica only once it has replayed that commit, else from the primary.
        `replicas`: the replica set to use (default: the one from settings, when the unit uses
        the default session factory)."""
        self._session_factory = session_factory
        self._isolation_level = isolation_level
        self._read_only = read_only
        self._after = after
        self._replicas = replicas if replicas is not None or session_factory else get_replicas()
        self._session: Session | None = None
        # One entry per joined (inner) block: its savepoint, or None once committed or rolled
        # back, after which its further work belongs to the enclosing block.
        self._joined: list[SessionTransaction | None] = []

    def __enter__(self) -> UnitOfWork:
        if self._session is not None:
            with translating_errors():
                self._joined.append(self._session.begin_nested())
            return self
        self._session = open_session(
            self._session_factory or get_session_factory(),
            read_only=self._read_only,
            after=self._after,
            replicas=self._replicas,
            isolation_level=self._isolation_level,
        )
        self.users = UserRepository(self._session)
        self.items = ItemRepository(self._session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._joined:
            savepoint = self._joined.pop()
            if savepoint is not None and savepoint.is_active:
                with translating_errors():
                    savepoint.rollback()
            return
        session, self._session = self._session, None
        if session is not None:
            # Closing ends the transaction with a rollback of whatever was not committed, and
            # detaches the objects without expiring them: what was read stays readable.
            session.close()

    @property
    def is_open(self) -> bool:
        """Whether the unit is inside its `with` block."""
        return self._session is not None

    @property
    def session(self) -> Session:
        """The session of the open unit of work."""
        if self._session is None:
            raise RuntimeError("this UnitOfWork is not open; use it as `with uow:`")
        return self._session

    def commit(self) -> str:
        """Make the work so far permanent (inside a joined block: hand it to the enclosing one).

        Returns the commit's token, an opaque string for `UnitOfWork(read_only=True, after=...)`
        that lets a later unit read this commit from a replica. A joined block's commit makes
        nothing permanent: its token is the outermost unit's to give."""
        session = self.session
        with translating_errors():
            if self._joined:
                self._finish_joined(commit=True)
                return ANY_POSITION
            return commit_returning_token(session, self._replicas)

    def rollback(self) -> None:
        """Discard the work since the last commit (inside a joined block: since it began)."""
        session = self.session
        with translating_errors():
            if self._joined:
                self._finish_joined(commit=False)
            else:
                session.rollback()

    def _finish_joined(self, *, commit: bool) -> None:
        savepoint = self._joined[-1]
        if savepoint is not None and savepoint.is_active:
            (savepoint.commit if commit else savepoint.rollback)()
        self._joined[-1] = None

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: an exception inside undoes only its work, then propagates."""
        with translating_errors(), self.session.begin_nested():
            yield
