"""app.testing as a downstream project uses it: run by pytest's own pytester in a subprocess."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from tests.backends import SERVER_URLS

DOWNSTREAM_TESTS = """
import pytest
from sqlalchemy import text

from app.db.errors import ConflictError
from app.services import register_user


def test_a_commit_is_seen_by_the_test_that_made_it(uow, user_factory, app_connection):
    register_user(uow, {"email": "ada@example.com", "password": "long enough"})
    user_factory(full_name="Second")
    assert app_connection.execute(text("SELECT count(*) FROM users")).scalar() == 2


def test_the_next_test_starts_empty(uow, app_connection):
    assert app_connection.execute(text("SELECT count(*) FROM users")).scalar() == 0
    register_user(uow, {"email": "ada@example.com", "password": "long enough"})
    with pytest.raises(ConflictError), uow:
        uow.users.create({"email": "ADA@example.com", "hashed_password": "h"})


def test_factories_make_rows_that_belong_together(item_factory, uow):
    item = item_factory(title="Lamp")
    with uow:
        assert uow.items.list_by_owner(item.owner_id)[0].title == "Lamp"


async def test_async_uow_rolls_back_too(async_uow):
    async with async_uow as uow:
        await uow.users.create({"email": "async@example.com", "hashed_password": "h"})
        await uow.commit()
        assert await uow.users.count() == 1


async def test_run_in_transaction_async_on_the_tests_factory(async_app_session_factory):
    from app.repositories import AsyncUnitOfWork, run_in_transaction_async

    async def sign_up(uow):
        await uow.users.create({"email": "again@example.com", "hashed_password": "h"})

    await run_in_transaction_async(sign_up, session_factory=async_app_session_factory)
    async with AsyncUnitOfWork(async_app_session_factory) as uow:
        assert await uow.users.count() == 1


async def test_and_the_next_async_test_starts_empty(async_uow):
    async with async_uow as uow:
        assert await uow.users.count() == 0
"""


def test_downstream_tests_that_commit_leave_nothing_for_the_next(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """Six downstream tests, three of them asyncio, against a throwaway database the plugin
    makes beside DATABASE_URL's and drops."""
    database_url = (
        "sqlite:///./app.db"
        if backend == "sqlite"
        else make_url(SERVER_URLS[backend]).render_as_string(hide_password=False)
    )
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("APP_ENV", "test")
    pytester.makepyfile(test_downstream=DOWNSTREAM_TESTS)
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    result = pytester.runpytest_subprocess("-p", "app.testing", "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=6)


@pytest.mark.backends("sqlite")
def test_a_downstream_project_with_a_tests_conftest_runs_on_the_current_pytest(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual layout (tests/conftest.py), with app[dev] installed (pytest-alembic among it)
    and no setting of this repository's: collection works and the tests run."""
    monkeypatch.setenv("DATABASE_URL", "sqlite:///./app.db")
    monkeypatch.setenv("APP_ENV", "test")
    pytester.mkpydir("tests")
    pytester.path.joinpath("tests", "conftest.py").write_text('pytest_plugins = ["app.testing"]\n')
    pytester.path.joinpath("tests", "test_users.py").write_text(
        "def test_a_user(uow):\n"
        "    with uow:\n"
        "        uow.users.create({'email': 'ada@example.com', 'hashed_password': 'h'})\n"
        "        assert uow.users.count() == 1\n"
    )
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)
