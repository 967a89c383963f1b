"""Every failure the data layer maps, provoked on a real server, becomes the named error, and its
message carries no stored value and no driver text.

Each case makes the database itself refuse something (raw SQL where the repositories would
refuse the input before it reached the database) on an engine the project built, with no
wrapper around the statement: the engine itself translates what fails.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    delete,
    func,
    insert,
    inspect,
    literal,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool

from app.db.errors import (
    SCHEMA_MISMATCH,
    ConflictError,
    DatabaseUnavailableError,
    DataLayerError,
    ForeignKeyError,
    InvalidQueryError,
    ReadOnlyError,
    RetryableError,
    SchemaMismatchError,
    StatementTimeoutError,
)
from app.db.models import Base
from app.db.session import (
    DataSession,
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from app.repositories import (
    AsyncUnitOfWork,
    UnitOfWork,
    run_in_transaction,
    run_in_transaction_async,
)

SECRET_VALUE = "s3cret-hash-value"
E = TypeVar("E", bound=DataLayerError)


@pytest.fixture
def engine_url(committed_engine: Engine) -> Iterator[URL]:
    """The URL of a migrated database whose tables are emptied after the test."""
    yield committed_engine.url
    with committed_engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM items")
        conn.exec_driver_sql("DELETE FROM users")


def _engine(url: URL | str, **options: object) -> Engine:
    return make_engine(url, poolclass=NullPool, **options)  # type: ignore[arg-type]


@contextmanager
def _refused(expected: type[E]) -> Iterator[pytest.ExceptionInfo[E]]:
    """The block must fail with `expected`, chained to the driver's error, with a clean message."""
    with pytest.raises(expected) as caught:
        yield caught
    message = str(caught.value)
    assert SECRET_VALUE not in message
    assert caught.value.__cause__ is not None
    for driver_words in ("DETAIL", "Failing row", "Duplicate entry", "constraint failed:"):
        assert driver_words not in message


def _insert_user(conn: Connection, email: str = "a@example.com", **values: object) -> str:
    user_id = uuid.uuid4()
    stored = str(user_id) if conn.dialect.name == "postgresql" else user_id.hex
    row = {"id": stored, "email": email, "hashed_password": SECRET_VALUE, "now": _now(conn)}
    row.update(values)
    conn.execute(
        text(
            "INSERT INTO users (id, email, hashed_password, created_at, updated_at) "
            "VALUES (:id, :email, :hashed_password, :now, :now)"
        ),
        row,
    )
    return stored


def _now(conn: Connection) -> str:
    return "2026-01-01 00:00:00+00" if conn.dialect.name == "postgresql" else "2026-01-01 00:00:00"


# -- every backend ------------------------------------------------------------------------------


def test_a_unit_used_on_after_a_refused_write_is_told_to_roll_back_on_both_faces(
    engine_url: URL,
) -> None:
    """A caller that catches a refused write and goes on in the same unit (a statement, a
    commit) is told the transaction was aborted by that error, as a data-layer error a web
    handler answers (400), not SQLAlchemy's own; nothing was stored."""
    engine = make_engine(engine_url, pool_size=1, max_overflow=0)
    factory = make_session_factory(engine)
    user = {"email": "twice@example.com", "hashed_password": SECRET_VALUE}

    async def asyncio_face() -> list[str]:
        async_engine = make_async_engine(engine_url, pool_size=1, max_overflow=0)
        told = []
        try:
            async with AsyncUnitOfWork(make_async_session_factory(async_engine)) as uow:
                await uow.users.create(user)
                with pytest.raises(ConflictError):
                    await uow.users.create(user)
                for go_on in (uow.users.count, uow.commit):
                    with _refused(InvalidQueryError) as refused:
                        await go_on()
                    told.append(str(refused.value))
        finally:
            await async_engine.dispose()
        return told

    try:
        with UnitOfWork(factory) as uow:
            uow.users.create(user)
            with pytest.raises(ConflictError):
                uow.users.create(user)
            for go_on in (uow.users.count, uow.commit):
                with _refused(InvalidQueryError) as refused:
                    go_on()
                assert "aborted by an earlier error" in str(refused.value)
        assert all("aborted by an earlier error" in told for told in asyncio.run(asyncio_face()))
        with UnitOfWork(factory) as uow:
            assert uow.users.count() == 0
    finally:
        engine.dispose()


def test_a_duplicate_unique_value_is_a_conflict_naming_the_field(engine_url: URL) -> None:
    with _engine(engine_url).connect() as conn:
        _insert_user(conn, "taken@example.com")
        with _refused(ConflictError) as _:
            _insert_user(conn, "taken@example.com")


def test_the_conflict_names_field_and_constraint_but_not_the_value(engine_url: URL) -> None:
    with _engine(engine_url).connect() as conn:
        _insert_user(conn, "taken@example.com")
        with pytest.raises(ConflictError) as caught:
            _insert_user(conn, "taken@example.com")
    assert (caught.value.fields, caught.value.constraint) == (("email",), "uq_users_email")
    assert str(caught.value) == "a user with this email already exists"
    assert caught.value.table == "users"  # MariaDB's error names the key only


def test_a_connection_that_reflected_a_table_still_translates_and_hides_values(
    engine_url: URL,
) -> None:
    # Reflection (the migration helpers, `app db check`) runs on the connection in use; on
    # MariaDB SQLAlchemy's turns the connection's error events off and leaves them off.
    email = f"{SECRET_VALUE}@example.com"
    with _engine(engine_url).connect() as conn:
        inspector = inspect(conn)
        inspector.get_columns("users")
        inspector.get_pk_constraint("users")
        _insert_user(conn, email)
        with _refused(ConflictError) as caught:
            _insert_user(conn, email)
    assert SECRET_VALUE not in str(caught.value.__cause__)


def test_a_duplicate_primary_key_is_a_conflict(engine_url: URL) -> None:
    with _engine(engine_url).connect() as conn:
        user_id = _insert_user(conn, "one@example.com")
        with _refused(ConflictError) as caught:
            _insert_user(conn, "two@example.com", id=user_id)
    # Raw SQL, whose error names no table on MariaDB ("for key 'PRIMARY'"): told alike.
    assert str(caught.value) == "a user with this id already exists"
    assert (caught.value.fields, caught.value.table) == (("id",), "users")
    # The same rows sent as one executemany (its tags go after the statement's first word).
    insert = text(
        "INSERT INTO users (id, email, hashed_password, created_at, updated_at) "
        "VALUES (:id, :email, 'h', :now, :now)"
    )
    with _engine(engine_url).connect() as conn:
        rows = [{"id": user_id, "email": f"{n}@example.com", "now": _now(conn)} for n in (3, 4)]
        with _refused(ConflictError) as caught:
            conn.execute(insert, rows)
    assert str(caught.value) == "a user with this id already exists"
    assert (caught.value.fields, caught.value.table) == (("id",), "users")


def test_a_missing_referenced_row_is_a_foreign_key_error(engine_url: URL) -> None:
    with _engine(engine_url).connect() as conn, _refused(ForeignKeyError) as caught:
        conn.execute(
            text(
                "INSERT INTO items (id, title, owner_id, created_at, updated_at) "
                "VALUES (:id, 't', :owner, :now, :now)"
            ),
            {"id": uuid.uuid4().hex, "owner": uuid.uuid4().hex, "now": _now(conn)},
        )
    # Named alike everywhere, also on SQLite, whose message names no key.
    assert caught.value.constraint == "fk_items_owner_id_users"
    assert caught.value.fields == ("owner_id",)


@pytest.fixture
def referring_tables(engine_url: URL) -> Iterator[tuple[Table, Table]]:
    """A parent and a child table on the models' metadata (a team's, without cascades), gone
    from it after the test."""
    parent = Table("probe_parent", Base.metadata, Column("id", Integer, primary_key=True))
    child = Table(
        "probe_child",
        Base.metadata,
        Column("id", Integer, primary_key=True),
        Column("first_id", ForeignKey("probe_parent.id"), nullable=False),
        Column("second_id", ForeignKey("probe_parent.id")),
    )
    engine = _engine(engine_url)
    Base.metadata.create_all(engine, tables=[parent, child])
    try:
        yield parent, child
    finally:
        Base.metadata.drop_all(engine, tables=[parent, child])
        Base.metadata.remove(child)
        Base.metadata.remove(parent)
        engine.dispose()


def test_which_foreign_key_refused_is_told_alike_on_every_backend(
    engine_url: URL, referring_tables: tuple[Table, Table]
) -> None:
    parent, child = referring_tables
    with _engine(engine_url).connect() as conn:
        conn.execute(insert(parent), [{"id": 1}])
        conn.commit()
        with _refused(ForeignKeyError) as missing:
            conn.execute(insert(child), [{"id": 1, "first_id": 1, "second_id": 2}])
        conn.rollback()
        assert missing.value.constraint == "fk_probe_child_second_id_probe_parent"
        assert missing.value.fields == ("second_id",)
        conn.execute(insert(child), [{"id": 1, "first_id": 1}])
        conn.commit()
        with _refused(ForeignKeyError) as still_used:
            conn.execute(delete(parent))
        conn.rollback()
        assert still_used.value.constraint == "fk_probe_child_first_id_probe_parent"
        assert still_used.value.fields == ("first_id",)
        assert conn.scalar(select(func.count()).select_from(child)) == 1


def test_deleting_a_row_still_referred_to_is_a_foreign_key_error(engine_url: URL) -> None:
    engine = _engine(engine_url)
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL, "
            "CONSTRAINT fk_child_parent FOREIGN KEY (parent_id) REFERENCES parent (id))"
        )
        conn.exec_driver_sql("INSERT INTO parent VALUES (1)")
        conn.exec_driver_sql("INSERT INTO child VALUES (1, 1)")
        conn.commit()
        try:
            with _refused(ForeignKeyError):
                conn.exec_driver_sql("DELETE FROM parent")
            conn.rollback()
        finally:
            conn.exec_driver_sql("DROP TABLE child")
            conn.exec_driver_sql("DROP TABLE parent")
            conn.commit()


def test_a_null_in_a_required_column_names_the_column_and_not_the_row(engine_url: URL) -> None:
    with _engine(engine_url).connect() as conn, pytest.raises(InvalidQueryError) as caught:
        _insert_user(conn, email=None)  # type: ignore[arg-type]
    assert str(caught.value) == "the database refused the user: email cannot be null"


def test_a_table_or_column_the_database_lacks_is_a_schema_mismatch(engine_url: URL) -> None:
    """Code ahead of its database (a migration not run), or raw SQL naming what is not there:
    a `SchemaMismatchError` that says where to look, on every backend and both faces (it was
    the driver's own error)."""
    drifted = Table(
        "users", sa_metadata := MetaData(), Column("id", Integer, primary_key=True),
        Column("nickname", Integer),
    )  # fmt: skip
    statements = [
        (text("SELECT no_such_column FROM users"), {}),
        (text("SELECT 1 FROM no_such_table"), {}),
        (insert(drifted), {"id": 1, "nickname": 7}),
    ]
    assert sa_metadata.tables
    with _engine(engine_url).connect() as conn:
        for statement, values in statements:
            with _refused(SchemaMismatchError) as caught:
                conn.execute(statement, values)
            assert str(caught.value) == SCHEMA_MISMATCH
            assert caught.value.code is not None
            conn.rollback()

    async def on_the_asyncio_face() -> None:
        engine = make_async_engine(engine_url)
        try:
            async with AsyncUnitOfWork(make_async_session_factory(engine)) as uow:
                with _refused(SchemaMismatchError):
                    await uow.async_session.execute(text("SELECT no_such_column FROM users"))
        finally:
            await engine.dispose()

    asyncio.run(on_the_asyncio_face())


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def test_a_value_the_driver_cannot_send_is_refused_and_quoted_nowhere(engine_url: URL) -> None:
    """Raw SQL with text that is not Unicode (a lone surrogate) or an integer beyond 64 bits:
    the driver fails in Python before sending, with an exception that holds the value (on
    MariaDB, the whole statement with every value in it). It is an InvalidQueryError, and the
    value is in no exception of its chain."""
    surrogate = "\ud800" + SECRET_VALUE
    with _engine(engine_url).connect() as conn:
        with pytest.raises(InvalidQueryError, match="not valid Unicode") as caught:
            conn.execute(text("SELECT :a, :b"), {"a": SECRET_VALUE, "b": surrogate})
        conn.rollback()
        chain = list(_chain(caught.value))
        assert len(chain) > 1
        for error in chain:
            shown = f"{error!s} {error!r} {vars(error)} {getattr(error, 'object', '')!r}"
            assert SECRET_VALUE not in shown, type(error)
        if conn.dialect.name == "postgresql":
            # A NUL in text: psycopg refuses it before sending (SQLite and MariaDB store it).
            with pytest.raises(InvalidQueryError, match="refused the statement before sending"):
                conn.execute(text("SELECT :a"), {"a": "nul\x00" + SECRET_VALUE})
        if conn.dialect.name == "sqlite":  # the others send such a number as a decimal
            with pytest.raises(InvalidQueryError, match="larger than the database driver"):
                conn.execute(text("SELECT :a"), {"a": 2**70})


def test_a_check_constraint_is_an_invalid_query(engine_url: URL) -> None:
    with _engine(engine_url).connect() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE checked (n INTEGER, CONSTRAINT ck_positive CHECK (n > 0))"
        )
        conn.commit()
        try:
            with _refused(InvalidQueryError):
                conn.exec_driver_sql("INSERT INTO checked (n) VALUES (-1)")
            conn.rollback()
        finally:
            conn.exec_driver_sql("DROP TABLE checked")
            conn.commit()


# -- PostgreSQL ---------------------------------------------------------------------------------


def _pg_blocked_by_a_row_lock(url: URL, statement: str, **options: object) -> None:
    """Run `statement` on one connection while another holds the lock it needs."""
    holder_engine, waiter_engine = _engine(url), _engine(url, **options)
    with holder_engine.connect() as holder, waiter_engine.connect() as waiter:
        _insert_user(holder, "locked@example.com")
        holder.commit()
        holder.execute(text("SELECT * FROM users FOR UPDATE"))
        try:
            waiter.execute(text(statement))
        finally:
            holder.rollback()


@pytest.mark.backends("postgresql")
def test_postgresql_statement_timeout_on_a_blocked_update_is_a_statement_timeout(
    engine_url: URL,
) -> None:
    with _refused(StatementTimeoutError):
        _pg_blocked_by_a_row_lock(
            engine_url, "UPDATE users SET full_name = 'x'", statement_timeout=0.3
        )


@pytest.mark.backends("postgresql")
def test_postgresql_lock_timeout_is_retryable(engine_url: URL) -> None:
    with _refused(RetryableError):
        _pg_blocked_by_a_row_lock(
            engine_url, "SET lock_timeout = '200ms'; UPDATE users SET full_name = 'x'"
        )


@pytest.mark.backends("postgresql")
def test_postgresql_serialization_failure_is_retryable(engine_url: URL) -> None:
    engine = _engine(engine_url, isolation_level="SERIALIZABLE")
    with engine.connect() as setup:
        _insert_user(setup, "s@example.com")
        setup.commit()
    with engine.connect() as first, engine.connect() as second:
        first.execute(text("SELECT * FROM users")).all()
        second.execute(text("SELECT * FROM users")).all()
        first.execute(text("UPDATE users SET full_name = 'first'"))
        first.commit()
        with _refused(RetryableError):
            second.execute(text("UPDATE users SET full_name = 'second'"))


@pytest.mark.backends("postgresql", "mariadb")
def test_a_deadlock_is_retryable(engine_url: URL) -> None:
    engine = _engine(engine_url)
    with engine.connect() as setup:
        first_id, second_id = (
            _insert_user(setup, "d1@example.com"),
            _insert_user(setup, "d2@example.com"),
        )
        setup.commit()
    errors: list[BaseException] = []
    lock_second = "UPDATE users SET full_name = 'x' WHERE id = :id"

    def cross(conn: Connection, mine: str, theirs: str, ready: threading.Barrier) -> None:
        try:
            conn.execute(text(lock_second), {"id": mine})
            ready.wait(timeout=10)
            conn.execute(text(lock_second), {"id": theirs})
        except BaseException as exc:  # collected and checked by the main thread
            errors.append(exc)
        finally:
            conn.rollback()

    barrier = threading.Barrier(2)
    with engine.connect() as a, engine.connect() as b:
        threads = [
            threading.Thread(target=cross, args=(a, first_id, second_id, barrier)),
            threading.Thread(target=cross, args=(b, second_id, first_id, barrier)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert [type(error) for error in errors] == [RetryableError]


@pytest.mark.backends("postgresql")
def test_postgresql_idle_in_transaction_timeout_is_unavailable(engine_url: URL) -> None:
    with _engine(engine_url).connect() as conn:
        conn.exec_driver_sql("SET idle_in_transaction_session_timeout = '200ms'")
        conn.exec_driver_sql("SELECT 1")
        time.sleep(0.6)
        with _refused(DatabaseUnavailableError):
            conn.exec_driver_sql("SELECT 1")


@pytest.mark.backends("postgresql")
def test_postgresql_a_terminated_session_is_unavailable(engine_url: URL) -> None:
    engine = _engine(engine_url)
    with engine.connect() as victim, engine.connect() as admin:
        pid = victim.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with _refused(DatabaseUnavailableError):
            victim.exec_driver_sql("SELECT 1")


@pytest.mark.backends("postgresql")
def test_postgresql_a_role_out_of_connection_slots_is_unavailable(engine_url: URL) -> None:
    role = f"app_test_limited_{uuid.uuid4().hex[:8]}"
    with _engine(engine_url, isolation_level="AUTOCOMMIT").connect() as admin:
        admin.exec_driver_sql(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
        try:
            with (
                _refused(DatabaseUnavailableError),
                _engine(engine_url.set(username=role)).connect(),
            ):
                pass
        finally:
            admin.exec_driver_sql(f"DROP ROLE {role}")


@pytest.mark.backends("postgresql")
def test_postgresql_values_out_of_range_or_malformed_are_invalid(engine_url: URL) -> None:
    """A query's refused value is one it computed or compared, and the message says so; a
    written row's is one of its columns."""
    queries = [
        text("SELECT CAST(2147483648 AS integer)"),
        text("SELECT CAST('not a number' AS integer)"),
        select(literal(1, Integer) / literal(0, Integer)),
    ]
    with _engine(engine_url).connect() as conn:
        for query in queries:
            with _refused(InvalidQueryError) as refused:
                conn.execute(query)
            assert "refused the query" in str(refused.value)
            conn.rollback()
        with _refused(InvalidQueryError) as refused:
            conn.execute(
                text("INSERT INTO items (id, title, owner_id, created_at, updated_at) "
                     "VALUES (:id, :t, :o, now(), now())"),
                {"id": uuid.uuid4(), "t": "x" * 300, "o": uuid.uuid4()},
            )  # fmt: skip
        assert "is too long for its column" in str(refused.value)
        conn.rollback()
        # A sequence that reached its largest value has no number for the next row.
        conn.exec_driver_sql("CREATE TEMPORARY TABLE tallies (id smallserial PRIMARY KEY, n int)")
        conn.exec_driver_sql("SELECT setval('tallies_id_seq', 32767)")
        with _refused(InvalidQueryError) as refused:
            conn.exec_driver_sql("INSERT INTO tallies (n) VALUES (1)")
        assert "out of the column's range" in str(refused.value)


# -- MariaDB ------------------------------------------------------------------------------------


@pytest.mark.backends("mariadb")
def test_mariadb_max_statement_time_is_a_statement_timeout(engine_url: URL) -> None:
    with (
        _engine(engine_url, statement_timeout=0.3).connect() as conn,
        _refused(StatementTimeoutError),
    ):
        conn.exec_driver_sql("SELECT SLEEP(3)")


@pytest.mark.backends("mariadb")
def test_mariadb_a_cancelled_statement_is_a_statement_timeout(engine_url: URL) -> None:
    """KILL QUERY, as an operator cancels a runaway statement: as PostgreSQL's cancel is."""
    engine = _engine(engine_url)
    with engine.connect() as victim, engine.connect() as admin:
        victim_id = int(victim.exec_driver_sql("SELECT CONNECTION_ID()").scalar() or 0)
        timer = threading.Timer(0.3, admin.exec_driver_sql, (f"KILL QUERY {victim_id}",))
        timer.start()
        try:
            with _refused(StatementTimeoutError):
                victim.exec_driver_sql("SELECT SLEEP(5)")
        finally:
            timer.join()


@pytest.mark.backends("postgresql")
def test_postgresql_a_statement_after_an_error_in_its_transaction_is_invalid(
    engine_url: URL,
) -> None:
    with _engine(engine_url).connect() as conn:
        with _refused(ConflictError):
            for _ in range(2):
                _insert_user(conn, "twice@example.com")
        with _refused(InvalidQueryError) as refused:
            conn.execute(text("SELECT 1"))
        assert "roll it back" in str(refused.value)


@pytest.mark.backends("mariadb")
def test_mariadb_a_lock_wait_timeout_is_retryable(engine_url: URL) -> None:
    engine = _engine(engine_url)
    with engine.connect() as holder, engine.connect() as waiter:
        _insert_user(holder, "locked@example.com")
        holder.commit()
        holder.execute(text("SELECT * FROM users FOR UPDATE")).all()
        waiter.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
        try:
            with _refused(RetryableError):
                waiter.execute(text("UPDATE users SET full_name = 'x'"))
        finally:
            holder.rollback()


@pytest.mark.backends("mariadb")
def test_mariadb_a_statement_larger_than_the_server_takes_is_invalid_and_its_connection_dropped(
    engine_url: URL,
) -> None:
    """The server refuses a statement over max_allowed_packet and closes the connection: the
    caller is told what was wrong, and the next unit, on the same pool, gets a sound connection
    (the closed one is never handed out again)."""
    engine = make_engine(engine_url, pool_size=1, max_overflow=0)
    factory = make_session_factory(engine)
    try:
        with UnitOfWork(factory) as uow:
            limit = int(uow.session.scalar(text("SELECT @@max_allowed_packet")) or 0)
        for _ in range(5):
            with _refused(InvalidQueryError) as refused, UnitOfWork(factory) as uow:
                uow.session.execute(text("SELECT LENGTH(:v)"), {"v": "x" * (limit + 1024)})
            assert "max_allowed_packet" in str(refused.value)
            with UnitOfWork(factory) as uow:
                assert uow.session.scalar(text("SELECT 1")) == 1
    finally:
        engine.dispose()


@pytest.mark.backends("mariadb")
def test_mariadb_a_statement_far_larger_than_the_server_takes_is_invalid_every_time_and_run_once(
    engine_url: URL,
) -> None:
    """Megabytes over max_allowed_packet: the server would close the connection while the
    statement is still being sent, and the driver would report a lost connection (which
    `run_in_transaction` runs again). It is refused before it is sent instead: invalid every
    time, on both faces, and the function runs once."""
    engine = make_engine(engine_url, pool_size=1, max_overflow=0)
    factory = make_session_factory(engine)
    with UnitOfWork(factory) as uow:
        limit = int(uow.session.scalar(text("SELECT @@max_allowed_packet")) or 0)
    huge = {"v": "x" * (limit + 4 * 1024 * 1024)}
    runs: list[str] = []

    def send_it(uow: UnitOfWork) -> None:
        runs.append("blocking")
        uow.session.execute(text("SELECT LENGTH(:v)"), huge)

    async def send_it_awaited(uow: AsyncUnitOfWork) -> None:
        runs.append("asyncio")
        await uow.async_session.execute(text("SELECT LENGTH(:v)"), huge)

    async def asyncio_face() -> None:
        async_engine = make_async_engine(engine_url, pool_size=1, max_overflow=0)
        async_factory = make_async_session_factory(async_engine)
        try:
            for _ in range(3):
                with _refused(InvalidQueryError) as refused:
                    await run_in_transaction_async(send_it_awaited, session_factory=async_factory)
                assert "max_allowed_packet" in str(refused.value)
            async with AsyncUnitOfWork(async_factory) as uow:
                assert await uow.users.count() == 0
        finally:
            await async_engine.dispose()

    try:
        for _ in range(3):
            with _refused(InvalidQueryError) as refused:
                run_in_transaction(send_it, session_factory=factory)
            assert "max_allowed_packet" in str(refused.value)
            with UnitOfWork(factory) as uow:
                assert uow.users.count() == 0
        asyncio.run(asyncio_face())
    finally:
        engine.dispose()
    assert runs == ["blocking"] * 3 + ["asyncio"] * 3


@pytest.mark.backends("mariadb")
def test_mariadb_a_killed_connection_is_unavailable(engine_url: URL) -> None:
    engine = _engine(engine_url)
    with engine.connect() as victim, engine.connect() as admin:
        victim_id = victim.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
        admin.exec_driver_sql(f"KILL CONNECTION {int(victim_id or 0)}")
        with _refused(DatabaseUnavailableError):
            victim.exec_driver_sql("SELECT 1")


@pytest.mark.backends("mariadb")
def test_mariadb_a_user_out_of_connections_is_unavailable(engine_url: URL) -> None:
    user = f"app_limited_{uuid.uuid4().hex[:8]}"
    with _engine(engine_url).connect() as admin:
        admin.execute(text(f"CREATE USER '{user}'@'%' WITH MAX_USER_CONNECTIONS 1"))
        try:
            limited = _engine(engine_url.set(username=user, database="information_schema"))
            with limited.connect(), _refused(DatabaseUnavailableError), limited.connect():
                pass
        finally:
            admin.execute(text(f"DROP USER '{user}'@'%'"))


@pytest.mark.backends("mariadb")
def test_mariadb_a_database_the_user_may_not_use_is_a_refused_login(engine_url: URL) -> None:
    user = f"app_nobody_{uuid.uuid4().hex[:8]}"
    with _engine(engine_url).connect() as admin:
        admin.execute(text(f"CREATE USER '{user}'@'%'"))
        try:
            with (
                _refused(DatabaseUnavailableError),
                _engine(engine_url.set(username=user)).connect(),
            ):
                pass
        finally:
            admin.execute(text(f"DROP USER '{user}'@'%'"))


@pytest.mark.backends("postgresql")
def test_postgresql_a_read_only_transaction_cannot_write(engine_url: URL) -> None:
    with _engine(engine_url).connect() as conn:
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        with _refused(ReadOnlyError) as refused:  # 25006 read_only_sql_transaction
            _insert_user(conn, "ro@example.com")
    # The transaction was begun read-only by its caller, not by a read-only unit of work.
    assert "UnitOfWork(read_only=True)" not in str(refused.value)
    assert "the transaction was begun READ ONLY" in str(refused.value)


@pytest.mark.backends("postgresql")
def test_postgresql_a_server_that_takes_no_writes_is_told_so_and_its_connections_replaced(
    loaded: Engine,
) -> None:
    """A read-write unit on a server that refuses every write (a standby, a primary demoted by
    a failover; here the database's default_transaction_read_only) is told that the server
    takes no writes, not that it is a read-only unit. Its pooled connection, which goes on
    refusing writes, is replaced: once the server takes writes again, the next unit on the same
    one-connection pool writes."""
    admin = _engine(loaded.url)
    engine = make_engine(loaded.url, pool_size=1, max_overflow=0)
    factory = make_session_factory(engine)
    database = loaded.url.database
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(
                f'ALTER DATABASE "{database}" SET default_transaction_read_only = on'
            )
        try:
            with _refused(ReadOnlyError) as refused, UnitOfWork(factory) as uow:
                uow.users.create({"email": "w@example.com", "hashed_password": SECRET_VALUE})
                uow.commit()
        finally:
            with admin.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql("SET default_transaction_read_only = off")
                conn.exec_driver_sql(
                    f'ALTER DATABASE "{database}" RESET default_transaction_read_only'
                )
        assert "UnitOfWork(read_only=True)" not in str(refused.value)
        assert "takes no writes" in str(refused.value)
        with UnitOfWork(factory) as uow:
            uow.users.create({"email": "w@example.com", "hashed_password": "h"})
            uow.commit()
        with UnitOfWork(factory, read_only=True) as uow:
            assert uow.users.count() == 1
    finally:
        engine.dispose()
        admin.dispose()


@pytest.mark.backends("mariadb")
def test_mariadb_a_read_only_transaction_cannot_write(engine_url: URL) -> None:
    with _engine(engine_url).connect() as conn:
        conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
        with _refused(ReadOnlyError):
            _insert_user(conn, "ro@example.com")


@pytest.mark.backends("mariadb")
def test_mariadb_values_the_columns_cannot_hold_are_invalid(engine_url: URL) -> None:
    with _engine(engine_url).connect() as conn:
        with _refused(InvalidQueryError):  # 1364: no default for a required column
            conn.exec_driver_sql(
                "INSERT INTO users (id, email, created_at, updated_at) "
                "VALUES ('x', 'y', NOW(), NOW())"
            )
        with _refused(InvalidQueryError):  # 1406: too long
            _insert_user(conn, "x" * 400)
        _insert_user(conn, "kept@example.com")
        with _refused(InvalidQueryError):  # 1264: out of range
            conn.exec_driver_sql("UPDATE users SET version = 99999999999")
        with _refused(InvalidQueryError):  # 1292: a date that is not one
            _insert_user(conn, "d@example.com", now="2026-13-45 99:00:00")
        with _refused(InvalidQueryError):  # 1366: text in an integer column
            conn.exec_driver_sql(
                "INSERT INTO users (id, email, hashed_password, created_at, updated_at, version) "
                "VALUES ('z', 'z', 'h', NOW(), NOW(), 'abc')"
            )
        with _refused(InvalidQueryError) as truncated:  # 1265: a number with text after it
            conn.execute(text("UPDATE users SET version = :v"), {"v": "1abc"})
        assert str(truncated.value) == (
            "the database refused the user: version is not a valid value for its column"
        )
        conn.rollback()


@pytest.mark.backends("mariadb")
def test_mariadb_numbering_past_its_column_is_out_of_range(engine_url: URL) -> None:
    """A key given at the column's largest value leaves MariaDB no number for the next row
    it numbers (167)."""
    with _engine(engine_url).connect() as conn:
        conn.exec_driver_sql(
            "CREATE TEMPORARY TABLE tallies (id BIGINT AUTO_INCREMENT PRIMARY KEY, n INT)"
        )
        conn.exec_driver_sql(f"INSERT INTO tallies (id, n) VALUES ({2**63 - 1}, 1)")
        with _refused(InvalidQueryError) as refused:
            conn.exec_driver_sql("INSERT INTO tallies (n) VALUES (2)")
        assert "out of the column's range" in str(refused.value)


# -- SQLite -------------------------------------------------------------------------------------


@pytest.mark.backends("sqlite")
def test_sqlite_a_read_only_database_cannot_write(engine_url: URL) -> None:
    read_only = f"sqlite:///file:{engine_url.database}?mode=ro&uri=true"
    with _engine(read_only).connect() as conn, _refused(DatabaseUnavailableError):
        _insert_user(conn, "ro@example.com")


@pytest.mark.backends("sqlite")
def test_sqlite_a_full_database_is_unavailable(tmp_path: Path) -> None:
    engine = _engine(f"sqlite:///{tmp_path / 'full.db'}")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE filler (data TEXT)")
        conn.commit()
        conn.exec_driver_sql("PRAGMA max_page_count = 10")
        with _refused(DatabaseUnavailableError):
            for _ in range(100):
                conn.exec_driver_sql("INSERT INTO filler VALUES (?)", ("x" * 4000,))


@pytest.mark.backends("sqlite")
def test_sqlite_a_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    missing_dir = tmp_path / "no" / "such" / "dir" / "app.db"
    with _refused(DatabaseUnavailableError), _engine(f"sqlite:///{missing_dir}").connect():
        pass


@pytest.mark.backends("sqlite")
def test_sqlite_a_value_over_the_length_limit_and_a_type_mismatch_are_invalid(
    tmp_path: Path,
) -> None:
    engine = _engine(f"sqlite:///{tmp_path / 'limits.db'}")
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, data TEXT)")
        raw.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100)
        with _refused(InvalidQueryError):
            conn.exec_driver_sql("INSERT INTO t (data) VALUES (?)", (SECRET_VALUE * 20,))
        with _refused(InvalidQueryError):
            conn.exec_driver_sql("INSERT INTO t (id) VALUES ('not an integer')")


@pytest.mark.backends("sqlite")
def test_sqlite_a_writer_that_read_an_old_snapshot_is_retryable(engine_url: URL) -> None:
    # Only a transaction that holds one snapshot across its reads has an old one at its write.
    engine = _engine(engine_url).execution_options(isolation_level="SERIALIZABLE")
    with engine.connect() as reader, engine.connect() as writer:
        reader.exec_driver_sql("SELECT count(*) FROM users").all()
        _insert_user(writer, "w@example.com")
        writer.commit()
        with _refused(RetryableError):
            _insert_user(reader, "r@example.com")


# -- connecting ---------------------------------------------------------------------------------


@pytest.mark.backends("postgresql", "mariadb")
def test_a_database_that_does_not_exist_is_unavailable(engine_url: URL) -> None:
    missing = engine_url.set(database=f"app_missing_{uuid.uuid4().hex[:8]}")
    with _refused(DatabaseUnavailableError), _engine(missing).connect():
        pass


@pytest.mark.backends("postgresql", "mariadb")
def test_a_refused_login_is_unavailable(engine_url: URL) -> None:
    wrong = engine_url.set(username="app_no_such_user", password=SECRET_VALUE)
    with _refused(DatabaseUnavailableError), _engine(wrong).connect():
        pass


@pytest.mark.backends("postgresql", "mariadb")
def test_a_server_that_does_not_answer_is_unavailable(engine_url: URL) -> None:
    closed = make_url(engine_url).set(host="127.0.0.1", port=9)
    with _refused(DatabaseUnavailableError), _engine(closed, connect_timeout=2).connect():
        pass


# -- raw SQL on a unit of work's session --------------------------------------------------------


def test_raw_sql_on_a_unit_of_works_session_fails_with_the_named_error(
    session_factory: sessionmaker[DataSession],
) -> None:
    with UnitOfWork(session_factory) as uow:
        _insert_user(uow.session.connection(), "taken@example.com")
        with pytest.raises(ConflictError) as caught, uow.savepoint():
            _insert_user(uow.session.connection(), "taken@example.com")
        assert (caught.value.fields, caught.value.constraint) == (("email",), "uq_users_email")
        with pytest.raises(InvalidQueryError, match="user: email cannot be null"), uow.savepoint():
            uow.session.execute(
                text("UPDATE users SET email = NULL WHERE email = :email"),
                {"email": "taken@example.com"},
            )


@pytest.mark.backends("postgresql", "mariadb")
def test_raw_sql_past_the_statement_timeout_is_a_statement_timeout(
    backend: str, engine_url: URL
) -> None:
    sleep = "SELECT pg_sleep(3)" if backend == "postgresql" else "SELECT SLEEP(3)"
    engine = make_engine(engine_url, poolclass=NullPool, statement_timeout=0.5)
    try:
        with UnitOfWork(make_session_factory(engine)) as uow, _refused(StatementTimeoutError):
            uow.session.execute(text(sleep))
    finally:
        engine.dispose()
