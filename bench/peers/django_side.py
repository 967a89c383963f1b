"""Django's ORM on the project's tables: unmanaged models, one connection in autocommit (its
default), persistent as CONN_MAX_AGE=None keeps it."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.engine import URL

_MODELS: dict[str, Any] = {}


def available() -> bool:
    try:
        import django  # noqa: F401
    except ImportError:
        return False
    return True


def _database(url: URL) -> dict[str, Any]:
    name = url.get_backend_name()
    if name == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url.database}
    if name == "postgresql":
        engine = "django.db.backends.postgresql"
    else:
        import pymysql

        pymysql.install_as_MySQLdb()  # Django's MySQL backend on PyMySQL, as its docs allow
        engine = "django.db.backends.mysql"
    return {
        "ENGINE": engine,
        "NAME": url.database,
        "USER": url.username or "",
        "PASSWORD": url.password or "",
        "HOST": url.host or "",
        "PORT": str(url.port or ""),
        "CONN_MAX_AGE": None,
    }


def setup(url: URL, alias: str | None = None) -> str:
    """Django on the database at `url`, under a database alias of its own (Django's settings
    are configured once per process, and one run benchmarks several backends); the alias."""
    alias = alias or f"{url.get_backend_name()}_{url.database}".replace("/", "_")
    if not _MODELS:
        _configure()
    from django.db import connections

    wanted = {"default": connections.settings["default"], alias: _database(url)}
    connections.settings[alias] = connections.configure_settings(wanted)[alias]
    return alias


def _configure() -> None:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.dummy"}},
        INSTALLED_APPS=[],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()
    from django.db import models

    class User(models.Model):
        id = models.UUIDField(primary_key=True, default=uuid.uuid4)
        email = models.CharField(max_length=320, unique=True)
        full_name = models.CharField(max_length=255, null=True)
        hashed_password = models.CharField(max_length=255)
        is_active = models.BooleanField(default=True)
        is_superuser = models.BooleanField(default=False)
        created_at = models.DateTimeField()
        updated_at = models.DateTimeField()
        version = models.IntegerField(default=1)

        class Meta:
            app_label = "bench_peers"
            db_table = "users"
            managed = False

    class Item(models.Model):
        id = models.UUIDField(primary_key=True, default=uuid.uuid4)
        title = models.CharField(max_length=255)
        description = models.TextField(null=True)
        owner = models.ForeignKey(User, on_delete=models.CASCADE, db_column="owner_id")
        created_at = models.DateTimeField()
        updated_at = models.DateTimeField()
        version = models.IntegerField(default=1)

        class Meta:
            app_label = "bench_peers"
            db_table = "items"
            managed = False

    _MODELS.update(User=User, Item=Item)


def model(name: str) -> Any:
    """Django's model `name` ("User" or "Item")."""
    return _MODELS[name]


def now() -> dt.datetime:
    from django.utils import timezone

    return timezone.now()


def close(alias: str) -> None:
    from django.db import connections

    connections[alias].close()
