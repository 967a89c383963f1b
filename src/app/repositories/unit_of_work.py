"""The Unit of Work: one session, one transaction boundary, repositories on that session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from app.db.errors import translating_errors
from app.db.session import get_session_factory
from app.repositories.items import ItemRepository
from app.repositories.users import UserRepository


class UnitOfWork:
    """`with UnitOfWork() as uow: ...; uow.commit()` -- leaving without commit rolls back."""

    users: UserRepository
    items: ItemRepository

    def __init__(
        self,
        session_factory: sessionmaker[Session] | None = None,
        *,
        isolation_level: str | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._isolation_level = isolation_level
        self._session: Session | None = None

    def __enter__(self) -> UnitOfWork:
        if self._session is not None:
            raise RuntimeError(
                "this UnitOfWork is already open; leave its `with` block before entering it again"
            )
        factory = self._session_factory or get_session_factory()
        self._session = factory()
        if self._isolation_level is not None:
            # Must be the first thing the transaction does.
            with translating_errors():
                self._session.connection(
                    execution_options={"isolation_level": self._isolation_level}
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
        session, self._session = self._session, None
        if session is None:
            return
        try:
            # Whatever was not committed is discarded, exception or not.
            session.rollback()
        finally:
            session.close()

    @property
    def session(self) -> Session:
        """The session of the open unit of work."""
        if self._session is None:
            raise RuntimeError("this UnitOfWork is not open; use it as `with uow:`")
        return self._session

    def commit(self) -> None:
        """Make the work so far permanent."""
        with translating_errors():
            self.session.commit()

    def rollback(self) -> None:
        """Discard the work since the last commit."""
        self.session.rollback()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: an exception inside undoes only its work, then propagates."""
        with translating_errors(), self.session.begin_nested():
            yield
