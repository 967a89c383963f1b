"""Hostile and malformed input on every backend: no value leaks into logs or an error's chain,
steers a statement or an error, or breaks a call into anything but one of the named errors."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import sessionmaker

from app.config import Settings
from app.db.errors import ConflictError, InvalidQueryError, SchemaMismatchError
from app.db.models import User
from app.db.session import DataSession, make_engine, make_session_factory
from app.repositories import ItemRepository, UnitOfWork, UserRepository
from tests.backends import SERVER_URLS, ThrowawayDatabases
from tests.integration.helpers import count_rows, run_app

SECRET = "s3cret-stored-value"


def chain(error: BaseException) -> Iterator[BaseException]:
    """The error and every exception behind it (causes and contexts)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__]


def everything_said(error: BaseException) -> str:
    """All the text an error's chain gives a log: each exception's str, repr, args, the
    statement and parameters SQLAlchemy keeps, psycopg's diagnostics, `.object`."""
    said = []
    for exc in chain(error):
        said += [str(exc), repr(exc), repr(getattr(exc, "args", ()))]
        said += [repr(getattr(exc, name, "")) for name in ("statement", "params", "object")]
        diag = getattr(exc, "diag", None)
        if diag is not None:
            said += [
                repr(getattr(diag, name, "")) for name in dir(diag) if not name.startswith("_")
            ]
    return "\n".join(said)


@pytest.fixture
def users(session_factory: sessionmaker[DataSession]) -> Iterator[UserRepository]:
    with session_factory() as session:
        yield UserRepository(session)


# -- nothing stored leaves in an error ------------------------------------------------------------


def test_a_conflicts_whole_chain_carries_no_stored_value(users: UserRepository) -> None:
    users.create({"email": "victim@example.com", "hashed_password": SECRET})
    with pytest.raises(ConflictError) as caught, users.session.begin_nested():
        users.create({"email": "VICTIM@example.com", "hashed_password": SECRET})
    said = everything_said(caught.value)
    assert "victim@example.com" not in said
    assert SECRET not in said
    assert caught.value.__cause__ is not None, "the driver's error stays chained"
    assert (caught.value.constraint, caught.value.code) in {
        ("uq_users_email", "23505"),
        ("uq_users_email", 1062),
        ("uq_users_email", 2067),
    }
    assert caught.value.table == "users"


@pytest.mark.parametrize(
    ("statement", "raised"),
    [
        (
            "INSERT INTO users (email, hashed_password, no_such_column) VALUES (:v, :v, 1)",
            SchemaMismatchError,
        ),
        ("SELECT * FROM no_such_table WHERE email = :v", SchemaMismatchError),
        ("SELEKT :v", sa_exc.DBAPIError),
    ],
    ids=["unknown column", "unknown table", "syntax"],
)
def test_an_error_keeps_no_value_it_was_given_translated_or_not(
    session_factory: sessionmaker[DataSession], statement: str, raised: type[Exception]
) -> None:
    """A table or column the database lacks is the data layer's `SchemaMismatchError`; an error
    it has no meaning for reaches the caller as SQLAlchemy's, with the database's own words.
    Neither carries the values the statement was given (`.params`), in its chain either."""
    with session_factory() as session, pytest.raises(raised) as caught:
        session.execute(text(statement), {"v": SECRET})
    assert caught.value.args  # the database's words stay (untranslated), or ours
    assert SECRET not in everything_said(caught.value)


def test_a_conflict_in_bulk_carries_neither_the_batch_nor_its_values(users: UserRepository) -> None:
    users.create({"email": "taken@example.com", "hashed_password": "x"})
    rows = [{"email": f"c{n}@example.com", "hashed_password": SECRET} for n in range(90)]
    rows[75]["email"] = "TAKEN@example.com"
    for write in (users.create_many, users.upsert_many):
        with pytest.raises(ConflictError) as caught:
            write([{**row, "id": uuid.uuid4()} for row in rows], batch_size=25)
        said = everything_said(caught.value)
        assert SECRET not in said
        assert "c74@example.com" not in said
        assert "taken@example.com" not in said


@pytest.mark.backends("mariadb")
def test_a_server_warning_quoting_a_value_is_logged_without_it(
    committed_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncmy logs each warning the server gives a statement; MariaDB's quote the value they
    are about ("Truncated incorrect INTEGER value: '...'"). Logged without their text."""
    from sqlalchemy import text

    from app.db.error_events import SERVER_WARNING
    from app.db.session import make_async_engine

    async def warned() -> None:
        engine = make_async_engine(committed_url)
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT CAST(:v AS INTEGER)"), {"v": SECRET})
        finally:
            await engine.dispose()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(warned())
    assert SERVER_WARNING in caplog.messages
    assert SECRET not in caplog.text


@pytest.mark.parametrize("face", ["blocking", "asyncio"])
def test_a_bulk_load_that_fails_twice_logs_no_stored_value(
    face: str, committed_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server refuses an early row while a later one is refused before it is sent: the
    driver ends the load and logs the server's refusal it sets aside (psycopg's COPY), whose
    words would quote the stored key."""
    from app.db.session import make_async_engine, make_async_session_factory
    from app.repositories import AsyncUnitOfWork

    taken = f"{SECRET}-{face}@example.com"
    rows: list[dict[str, Any]] = [{"email": taken, "hashed_password": "x"}]
    rows += [{"email": f"{face}{n}@example.com", "hashed_password": "x"} for n in range(3000)]
    rows[2500]["hashed_password"] = 12345  # refused here, long after the server refused row 0
    engine = make_engine(committed_url)
    try:
        with UnitOfWork(make_session_factory(engine)) as uow:
            uow.users.create({"email": taken, "hashed_password": "x"})
            uow.commit()
    finally:
        engine.dispose()

    async def load_async() -> None:
        engine = make_async_engine(committed_url)
        try:
            async with AsyncUnitOfWork(make_async_session_factory(engine)) as uow:
                await uow.users.create_many(rows, batch_size=100)
        finally:
            await engine.dispose()

    def load() -> None:
        engine = make_engine(committed_url)
        try:
            with UnitOfWork(make_session_factory(engine)) as uow:
                uow.users.create_many(rows, batch_size=100)
        finally:
            engine.dispose()

    with (
        caplog.at_level(logging.DEBUG),
        pytest.raises((InvalidQueryError, ConflictError)) as caught,
    ):
        asyncio.run(load_async()) if face == "asyncio" else load()

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert SECRET not in logged
    assert SECRET not in everything_said(caught.value)


def test_a_stored_value_cannot_steer_which_constraint_a_duplicate_names(
    users: UserRepository,
) -> None:
    """Written by raw SQL (an email the repositories refuse: it holds spaces), so that the
    database's own message quotes the crafted value."""
    crafted = "a' for key 'pk_users' b@example.com"
    insert = text(
        "INSERT INTO users (id, email, hashed_password, created_at, updated_at) "
        "VALUES (:id, :email, 'x', :now, :now)"
    )
    session = users.session
    native = session.get_bind().dialect.name == "postgresql"
    first, second = (str(key) if native else key.hex for key in (uuid.uuid4(), uuid.uuid4()))
    now = "2026-01-01 00:00:00"
    session.execute(insert, {"id": first, "email": crafted, "now": now})
    with pytest.raises(ConflictError) as caught, session.begin_nested():
        session.execute(insert, {"id": second, "email": crafted, "now": now})
    assert caught is not None
    assert (caught.value.constraint, caught.value.fields) == ("uq_users_email", ("email",))


def test_a_lone_surrogate_is_refused_naming_the_field_and_nothing_else(
    users: UserRepository, connection: Connection
) -> None:
    owner = users.create({"email": "o@example.com", "hashed_password": "x"})
    items = ItemRepository(users.session)
    rows = [{"title": f"t{n}", "owner_id": owner.id, "description": SECRET} for n in range(10)]
    rows[7]["title"] = "broken \ud800 title"
    for write in (items.create, lambda row: items.create_many([*rows[:7], row, *rows[8:]])):
        with pytest.raises(InvalidQueryError, match="title contains a lone surrogate") as caught:
            write(rows[7])
        assert SECRET not in everything_said(caught.value)
    assert count_rows(connection, "items") == 0


# -- no value becomes SQL text --------------------------------------------------------------------


class _Sneaky(str):
    """Text that lies about itself to anything that asks it."""

    def translate(self, *_args: Any) -> str:
        return "x'), ('evil', 1, 1"

    def __str__(self) -> str:
        return "evil"

    def replace(self, *_args: Any) -> str:
        return "x'), ('evil"


@pytest.mark.parametrize("title", ["50% off", "100%", "a%b", "%s", "%(title)s", "\\'; --"])
def test_text_that_looks_like_sql_or_a_placeholder_round_trips_exactly(
    users: UserRepository, connection: Connection, title: str
) -> None:
    owner = users.create({"email": "o@example.com", "hashed_password": "x"})
    items = ItemRepository(users.session)
    uniform = [{"title": title, "owner_id": owner.id} for _ in range(3)]
    mixed = [{"title": title, "owner_id": owner.id}, {"title": title, "owner_id": str(owner.id)}]
    assert items.create_many(uniform) == 3
    assert items.create_many(mixed) == 2
    items.create({"title": title, "owner_id": owner.id})
    stored = connection.execute(text("SELECT title FROM items")).scalars().all()
    assert stored == [title] * 6


def test_a_str_subclass_is_stored_as_the_text_it_holds(
    users: UserRepository, connection: Connection
) -> None:
    owner = users.create({"email": "o@example.com", "hashed_password": "x"})
    items = ItemRepository(users.session)
    sneaky = _Sneaky("plain title")
    items.create_many([{"title": sneaky, "owner_id": owner.id} for _ in range(3)])
    items.create({"title": sneaky, "owner_id": owner.id})
    assert (
        connection.execute(text("SELECT title FROM items")).scalars().all() == ["plain title"] * 4
    )
    assert count_rows(connection, "users", "is_superuser = :yes", yes=True) == 0


def test_the_echo_log_shows_statements_and_never_their_values(
    backend: str, databases: ThrowawayDatabases, caplog: pytest.LogCaptureFixture
) -> None:
    from app.migrations import upgrade

    # A database of its own: what it commits stays out of every other test's way.
    engine = make_engine(databases.new_url(backend, "echo"), echo=True)
    upgrade(engine)
    try:
        with (
            caplog.at_level(logging.INFO, logger="sqlalchemy.engine"),
            make_session_factory(engine)() as session,
        ):
            users = UserRepository(session)
            owner = users.create({"email": "echo@example.com", "hashed_password": SECRET})
            users.create_many(
                {"email": f"e{n}@example.com", "hashed_password": SECRET} for n in range(30)
            )
            users.upsert_many(
                [{"email": f"e{n}@example.com", "hashed_password": SECRET} for n in range(5)]
            )
            ItemRepository(session).create_many(
                [{"title": SECRET, "owner_id": owner.id} for _ in range(5)]
            )
            session.commit()
        logged = "\n".join(record.getMessage() for record in caplog.records)
        assert "INSERT" in logged or "COPY" in logged
        assert SECRET not in logged
        assert "e7@example.com" not in logged
    finally:
        engine.dispose()


# -- values refused before the database, the same everywhere --------------------------------------


def test_unbounded_text_holds_the_same_on_every_backend(
    users: UserRepository, connection: Connection
) -> None:
    owner = users.create({"email": "o@example.com", "hashed_password": "x"})
    items = ItemRepository(users.session)
    fits = "é" * 32_767  # 65,534 bytes of UTF-8
    items.create({"title": "fits", "owner_id": owner.id, "description": fits})
    with pytest.raises(InvalidQueryError, match="description is longer than 65535 bytes"):
        items.create({"title": "too long", "owner_id": owner.id, "description": fits + "é"})
    stored = connection.execute(text("SELECT description FROM items")).scalar_one()
    assert stored == fits


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"offset": 2**63}, "offset must be"),
        ({"offset": 2**64}, "offset must be"),
        ({"offset": 10**5000}, "offset must be"),
        ({"where": {"title__in": {"a": 1}}}, "needs a list of values"),
        ({"where": {"title__in": "abc"}}, "needs a list of values"),
        ({"load": 5}, "load names relationships"),
        ({"order_by": [5]}, "cannot sort"),
        ({"where": {5: "x"}}, "filter keys are strings"),
    ],
)
def test_arguments_of_the_wrong_shape_are_invalid_queries(
    users: UserRepository, arguments: dict[str, Any], message: str
) -> None:
    items = ItemRepository(users.session)
    with pytest.raises(InvalidQueryError, match=message):
        items.list(**arguments)


@pytest.mark.parametrize("conflict", [("email", "email"), 5, ("nope",), ["id", 3]])
def test_a_conflict_target_that_is_not_one_unique_key_is_an_invalid_query(
    users: UserRepository, conflict: Any
) -> None:
    with pytest.raises(InvalidQueryError, match="is not a unique key of users"):
        users.upsert({"email": "a@example.com", "hashed_password": "x"}, conflict=conflict)


def test_in_lists_of_a_hundred_thousand_values_work_everywhere(users: UserRepository) -> None:
    stored = [
        users.create({"email": f"in{n}@example.com", "hashed_password": "x"}) for n in range(3)
    ]
    wanted = [user.id for user in stored[:2]] + [uuid.uuid4() for _ in range(100_000)]
    assert users.count(where={"id__in": wanted}) == 2
    assert users.count(where={"id__not_in": wanted}) == 1
    emails = [f"in{n}@example.com" for n in range(100_000)]
    assert users.count(where={"email__in": emails}) == 3
    # A None in a long list too is matched as Python's `in` matches it.
    users.update(stored[2].id, {"full_name": "named"})
    names = ["named", None, *(f"n{n}" for n in range(100_000))]
    assert users.count(where={"full_name__in": names}) == 3
    assert users.count(where={"full_name__not_in": names}) == 0
    assert users.count(where={"full_name__not_in": names[2:]}) == 3


@pytest.mark.backends("postgresql")
def test_a_statement_the_driver_refuses_to_send_is_not_called_an_outage(
    session_factory: sessionmaker[DataSession],
) -> None:
    with (
        UnitOfWork(session_factory) as uow,
        pytest.raises(InvalidQueryError, match="before sending"),
    ):
        statement = text("SELECT 1 WHERE 1 IN :values").bindparams(
            bindparam("values", expanding=True)
        )
        uow.session.execute(statement, {"values": list(range(70_000))})


# -- look-alike emails are one account ------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "jose\u0301@example.com",  # NFD
        "JOSÉ@example.com",
        "josé@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com",  # fullwidth EXAMPLE
        "josé@example.com.",  # trailing dot
        " josé@Example.COM ",
    ],
)
def test_spellings_a_person_reads_as_the_same_address_are_one_account(
    users: UserRepository, spelling: str
) -> None:
    ada = users.create({"email": "josé@example.com", "hashed_password": "x"})
    assert users.get_by_email(spelling) is ada
    with pytest.raises(ConflictError), users.session.begin_nested():
        users.create({"email": spelling, "hashed_password": "x"})


def test_a_dotted_capital_i_is_the_same_as_a_plain_i(users: UserRepository) -> None:
    info = users.create({"email": "info@example.com", "hashed_password": "x"})
    assert users.get_by_email("İnfo@example.com") is info


@pytest.mark.parametrize(
    "email", ["zero\u200bwidth@example.com", "tab\tin@example.com", "bell\x07@example.com"]
)
def test_invisible_and_control_characters_in_an_email_are_refused(
    users: UserRepository, connection: Connection, email: str
) -> None:
    with pytest.raises(InvalidQueryError, match="email is not valid"):
        users.create({"email": email, "hashed_password": "x"})
    with pytest.raises(InvalidQueryError, match="email is not valid"):
        users.create_many([{"email": email, "hashed_password": "x"}] * 3)
    assert users.get_by_email(email) is None
    assert count_rows(connection, "users") == 0


# -- secrets in settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://root@127.0.0.1:5432/test?password=Pa55w0rd-q7z",
        "postgresql+psycopg://root:Pa55w0rd@q7z@127.0.0.1:5432/test",
        "mysql+pymysql://root:Pa55w0rd%40q7z@127.0.0.1:3306/test",
    ],
    ids=["query", "unencoded-at", "encoded"],
)
def test_a_password_in_a_url_never_appears_in_repr_or_an_engines_repr(url: str) -> None:
    settings = Settings(database_url=url)
    engine = make_engine(settings.database_url)
    shown = "\n".join([repr(settings), settings.masked_database_url, repr(engine), str(engine.url)])
    assert "Pa55w0rd" not in shown
    assert "q7z" not in shown
    engine.dispose()


@pytest.mark.backends("postgresql", "mariadb")
def test_app_db_info_never_prints_a_password_given_as_a_query_parameter(backend: str) -> None:
    url = SERVER_URLS[backend]
    with_password = url + ("&" if "?" in url else "?") + "password=wr0ng-Pa55word"
    done = run_app("db", "info", database_url=with_password)  # trust auth may let it in
    assert "wr0ng-Pa55word" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_an_unexpected_failure_in_the_cli_is_one_line_with_a_hint(tmp_path: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = run_app("db", "diagram", "--output", str(blocker / "schema.md"),
                   database_url="sqlite://")  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "--debug" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_fingerprints_are_the_same_in_every_process_and_for_either_form_of_a_value() -> None:
    script = (
        "import uuid\n"
        "from app.db.models import Item\n"
        "from app.repositories._filters import canonical\n"
        "from app.repositories._values import rules_for\n"
        "rules = rules_for(Item)\n"
        "key = uuid.UUID(int=7)\n"
        "every = rules.columns\n"
        "a = canonical(rules, {'title__in': {'b', 'a', 'c'}, 'owner_id': key}, allowed=every)\n"
        "b = canonical(rules, {'owner_id': str(key), 'title__in': ['c', 'b', 'a']},\n"
        "              allowed=every)\n"
        "assert a == b\n"
        "print(a)\n"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(seen) == 1


def test_a_naive_datetime_in_a_signed_cursor_is_refused_on_every_backend(
    users: UserRepository,
) -> None:
    from app.repositories._cursors import encode_cursor, model_entity, query_fingerprint

    fingerprint = query_fingerprint(model_entity(User), ["-created_at", "-id"], [])
    forged = encode_cursor(
        ["2026-01-01T00:00:00", str(uuid.uuid4())], fingerprint=fingerprint, key=users.cursor_key
    )
    with pytest.raises(InvalidQueryError, match="timezone-aware"):
        users.paginate(order_by=["-created_at"], cursor=forged)


@pytest.mark.parametrize(
    "values",
    [[{"nested": 1}, "x"], [[1, 2], "x"], ["x"], ["x", "y", "z"], [None, None]],
    ids=["object", "array", "too few", "too many", "nulls for required"],
)
def test_a_signed_cursor_of_the_wrong_shape_is_an_invalid_query(
    users: UserRepository, values: list[Any]
) -> None:
    from app.repositories._cursors import encode_cursor, model_entity, query_fingerprint

    fingerprint = query_fingerprint(model_entity(User), ["-created_at", "-id"], [])
    sound = ["2026-01-01T00:00:00+00:00", str(uuid.uuid4())]
    # The same signature and fingerprint on values of the right shape: a page (no rows after).
    control = encode_cursor(sound, fingerprint=fingerprint, key=users.cursor_key)
    assert users.paginate(order_by=["-created_at"], cursor=control).items == []
    forged = encode_cursor(values, fingerprint=fingerprint, key=users.cursor_key)
    with pytest.raises(InvalidQueryError):
        users.paginate(order_by=["-created_at"], cursor=forged)


def test_an_emails_length_is_that_of_its_stored_form(
    users: UserRepository, connection: Connection
) -> None:
    grows = "ß" * 200 + "@example.com"  # 212 characters given, 412 once case-folded
    for write in (users.create, lambda row: users.create_many([row, row])):
        with pytest.raises(InvalidQueryError, match="email is longer than 320 characters"):
            write({"email": grows, "hashed_password": "x"})
    assert count_rows(connection, "users") == 0


@pytest.mark.backends("postgresql", "mariadb")
def test_creating_a_database_whose_name_is_refused_is_one_line(backend: str) -> None:
    url = SERVER_URLS[backend].rsplit("/", 1)[0] + "/bad%20name%21"
    done = run_app("db", "create", database_url=url)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
