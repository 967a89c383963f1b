"""Settings: defaults, environment, .env, bad URLs and password masking."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings, SettingsError, mask_url, mysql_servers, parse_database_url
from app.db.runtime import Runtime


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DATABASE_URL", "APP_ENV", "DB_POOL_SIZE", "DB_ECHO", "SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the project directory


def test_defaults_to_a_sqlite_file_in_development() -> None:
    settings = Settings()
    assert settings.database_url == "sqlite+pysqlite:///./app.db"
    assert settings.app_env == "development"
    assert settings.db_pool_size == 5


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://root@127.0.0.1:5432/test")
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "a-real-secret-of-well-over-32-bytes")
    monkeypatch.setenv("DB_POOL_SIZE", "12")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://root@127.0.0.1:5432/test"
    assert settings.app_env == "production"
    assert settings.db_pool_size == 12


def test_reads_a_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DATABASE_URL=mysql://root@127.0.0.1:3306/test\nDB_ECHO=true\n")
    settings = Settings()
    assert settings.database_url == "mysql+pymysql://root@127.0.0.1:3306/test"
    assert settings.db_echo is True


def test_environment_wins_over_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("APP_ENV=production\n")
    monkeypatch.setenv("APP_ENV", "test")
    assert Settings().app_env == "test"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sqlite://", "sqlite+pysqlite://"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("mariadb://u@h/db", "mariadb+pymysql://u@h/db"),
        ("mysql+pymysql://u@h/db", "mysql+pymysql://u@h/db"),
    ],
)
def test_bare_backend_names_get_the_installed_driver(raw: str, expected: str) -> None:
    assert parse_database_url(raw).render_as_string() == expected


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("not a url", "not a valid database URL"),
        ("postgresql+psycopg://scott:tiger-secret@h:notaport/db", "not a valid database URL"),
        ("oracle://scott:tiger-secret@h/db", "unsupported backend 'oracle'"),
        ("postgresql+psycopg2://scott:tiger-secret@h/db", "driver 'psycopg2'"),
    ],
)
def test_bad_urls_are_refused_naming_the_variable_and_the_accepted_forms(
    monkeypatch: pytest.MonkeyPatch, raw: str, complaint: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", raw)
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert "DATABASE_URL" in message
    assert complaint in message
    assert "postgresql+psycopg://user:password@host:5432/dbname" in message
    assert "tiger-secret" not in message


@pytest.mark.parametrize(
    "key", [None, "", "a", "changethis", "ChangeMe", "secret", "short-but-not-a-placeholder"]
)
def test_production_refuses_a_placeholder_or_short_secret_key(
    monkeypatch: pytest.MonkeyPatch, key: str | None
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    if key is not None:
        monkeypatch.setenv("SECRET_KEY", key)
    with pytest.raises(ValidationError, match="SECRET_KEY must be a real secret of at least 32"):
        Settings()


def test_production_takes_a_long_real_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "x7-long-and-real-secret-for-cursors-2026")
    assert Settings().secret_key.get_secret_value() == "x7-long-and-real-secret-for-cursors-2026"


def test_development_says_once_that_cursors_are_signed_with_a_public_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = Runtime(Settings())
    with caplog.at_level("WARNING", logger="app"):
        first, second = runtime.cursor_key, runtime.cursor_key
    assert first == second
    warnings = [r for r in caplog.records if "placeholder SECRET_KEY" in r.getMessage()]
    assert len(warnings) == 1


def test_an_unknown_app_env_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "staging")
    with pytest.raises(ValidationError, match="app_env"):
        Settings()


def test_the_password_never_appears_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2-secret@db.internal:5432/app")
    settings = Settings()
    for text in (repr(settings), str(settings), settings.masked_database_url):
        assert "hunter2-secret" not in text
        assert "app:***@db.internal" in text
    assert "hunter2-secret" in settings.database_url  # still there for the engine


def test_mask_url_survives_garbage() -> None:
    assert mask_url("::::") == "<unparseable database URL>"


@pytest.mark.parametrize(
    ("raw", "blocking", "asynchronous"),
    [
        ("sqlite:///app.db", "sqlite+pysqlite", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///app.db", "sqlite+pysqlite", "sqlite+aiosqlite"),
        ("postgresql://u@h/db", "postgresql+psycopg", "postgresql+psycopg"),
        ("postgresql+psycopg_async://u@h/db", "postgresql+psycopg", "postgresql+psycopg"),
        ("mysql+pymysql://u@h/db", "mysql+pymysql", "mysql+asyncmy"),
        ("mysql+asyncmy://u@h/db", "mysql+pymysql", "mysql+asyncmy"),
        ("mariadb://u@h/db", "mariadb+pymysql", "mariadb+asyncmy"),
    ],
)
def test_one_url_gives_the_blocking_and_the_asyncio_driver(
    raw: str, blocking: str, asynchronous: str
) -> None:
    assert parse_database_url(raw).drivername == blocking
    assert parse_database_url(raw, asynchronous=True).drivername == asynchronous


def test_a_url_may_list_the_servers_of_a_cluster_to_try_in_order() -> None:
    url = parse_database_url(
        "mysql+pymysql://app:pw@/shop?host=db1:3307&host=db2&host=10.0.0.3:3306"
    )
    assert mysql_servers(url) == [("db1", 3307), ("db2", 3306), ("10.0.0.3", 3306)]
    assert mysql_servers(parse_database_url("mysql+pymysql://app@db9:3310/shop")) == [("db9", 3310)]


def test_a_malformed_server_in_the_list_is_refused_naming_it() -> None:
    with pytest.raises(SettingsError, match=r"'db1:port'; write each as host=name:port"):
        parse_database_url("mysql+pymysql://app@/shop?host=db1:port&host=db2:3306")


def test_a_server_list_is_masked_like_any_url() -> None:
    masked = mask_url("mysql+pymysql://app:s3cret@/shop?host=db1:3306&host=db2:3306")
    assert masked == "mysql+pymysql://app:***@/shop?host=db1:3306&host=db2:3306"
    with pytest.raises(ValidationError) as refused:
        Settings(database_url="mysql+pymysql://app:s3cret@/shop?host=db1:x")
    assert "s3cret" not in str(refused.value)


def test_replica_urls_are_a_comma_separated_list_of_postgresql_urls() -> None:
    settings = Settings(
        database_url="postgresql://app@primary/shop",
        database_replica_urls=" postgresql://app:pw@r1/shop , postgresql://app:pw@r2/shop ",
    )
    assert [url.host for url in settings.replica_urls] == ["r1", "r2"]
    assert Settings(database_replica_urls="").replica_urls == []
    assert "pw" not in repr(settings)


def test_a_replica_that_is_not_postgresql_or_not_a_url_is_refused_without_its_password() -> None:
    with pytest.raises(ValidationError, match="DATABASE_REPLICA_URLS names a replica that is not"):
        Settings(database_replica_urls="mysql+pymysql://app:s3cret@r1/shop")
    with pytest.raises(ValidationError, match="DATABASE_REPLICA_URLS") as refused:
        Settings(database_replica_urls="not a url:s3cret")
    assert "s3cret" not in str(refused.value)
