"""`Repository[Model]`: CRUD, pages, streams, upserts and bulk writes for one model, on a
session it is given. It adds and flushes, never commits: the unit of work (or whoever owns the
session) does.

Statements are built in `_statements` (with `_filters`, `_ordering` and `_cursors`), values
checked in `_values` and `_column_rules`, bulk rows batched in `_bulk`, upserts of rows that
are not uniform grouped in `_upserts`, updates at a version that skip the ORM's flush in
`_versioned`; they run here, and what differs by database comes from
the session's backend (`app.dialects`). Database errors arrive translated: every
engine the project builds translates them (`app.db.errors`).
"""

from __future__ import annotations

import builtins
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import Row, Select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.orm.util import identity_key

from app.db.errors import (
    READ_ONLY_MESSAGE,
    InvalidQueryError,
    NotFoundError,
    ReadOnlyError,
    StaleObjectError,
    conflict_on,
)
from app.db.models import Base
from app.db.runtime import get_runtime
from app.db.session import DataSession
from app.dialects import Backend, UniformUpsert, backend_of, streaming
from app.dialects.base import BulkLoadRefused, execute_compiled
from app.repositories import _bulk, _statements, _upserts, _versioned
from app.repositories._column_rules import as_uuid, to_json
from app.repositories._cursors import (
    decode_cursor,
    encode_cursor,
    model_entity,
    query_fingerprint,
)
from app.repositories._filters import Checked, canonical, checked
from app.repositories._ordering import SortKey, sort_keys
from app.repositories._values import (
    Data,
    check_limit,
    check_offset,
    conflict_target,
    from_json,
    new_row_values,
    row_values,
    rules_for,
)
from app.topology.routing import READ_ONLY_KEY

ModelT = TypeVar("ModelT", bound=Base)

Where = Mapping[str, Any] | None
OrderBy = Sequence[str] | str | None
Load = Sequence[str] | None
Conflict = Sequence[str] | str | None

DEFAULT_BATCH_SIZE = 1000
# An integer key given as text: digits, no sign but '-', no leading zeros, at most 19 of them.
# Long enough that a number too large for any integer column is told so (out of range, not
# "not a number"); short enough that reading it costs nothing.
_DECIMAL_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,39})")


_NO_OPTIONS: dict[str, Any] = {}
_FRESH = {"populate_existing": True}


def _loading(load: Load) -> dict[str, Any]:
    """A read's execution options: one that loads relationships loads them fresh also on rows
    the session holds (whose relationships it would otherwise leave as they were loaded);
    the unit's own changes are flushed before it, as before any query."""
    return _FRESH if load else _NO_OPTIONS


@dataclass(frozen=True)
class Page(Generic[ModelT]):
    """One keyset page; `next_cursor` is None on the last one."""

    items: list[ModelT]
    next_cursor: str | None


@dataclass(frozen=True)
class OffsetPage(Generic[ModelT]):
    """One offset page and, when asked for, how many rows match in all."""

    items: list[ModelT]
    total: int | None


class Repository(Generic[ModelT]):
    """CRUD, pagination, upserts and bulk writes for `model`, on a session it is given.

    Subclass it per model (`model = Project`), or use `Repository.for_model(Project)`. Class
    attributes: `filterable_fields` and `sortable_fields` (None: every column) say what callers
    may filter and sort by; `upsert_key` is the unique key `upsert` matches on when the call
    names none (None: the primary key). `prepare` and `prepare_columns` normalise values before
    they are written.
    """

    model: type[ModelT]
    filterable_fields: ClassVar[frozenset[str] | None] = None
    sortable_fields: ClassVar[frozenset[str] | None] = None
    upsert_key: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, session: Session, *, cursor_key: bytes | None = None) -> None:
        self.session = session
        self._cursor_key = cursor_key
        self._rules = rules_for(self.model)
        self._backend: Backend = backend_of(session)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        model = cls.__dict__.get("model")
        # A class declared at module level for a model is that model's repository (`of`);
        # one made in a function (a test's variant) or by `for_model` is not.
        if model is None or "<locals>" in cls.__qualname__ or cls.__dict__.get("_made"):
            return
        known = _declared_for.get(model)
        # The first declared wins; a subclass of it (a specialisation) takes its place.
        if known is None or issubclass(cls, known):
            _declared_for[model] = cls

    @classmethod
    def of(cls, model: type[Any]) -> type[Repository[Any]]:
        """The repository class for `model`: the `Repository` subclass declared for it at
        module level (once its module is imported), else a plain one."""
        declared = _declared_for.get(model)
        return declared if declared is not None else _plain(model)

    @classmethod
    def for_model(cls, model: type[Any]) -> type[Repository[Any]]:
        """A plain repository class for `model`, derived from this one."""
        if cls is Repository:
            return _plain(model)
        return type(f"{model.__name__}Repository", (cls,), {"model": model, "_made": True})

    # -- hooks for subclasses --------------------------------------------------------------------

    def prepare(self, values: dict[str, Any]) -> dict[str, Any]:
        """Normalise incoming values before they are written (subclasses override)."""
        return values

    def prepare_columns(self, columns: dict[str, builtins.list[Any]]) -> bool:
        """`prepare` for a batch given column by column (the bulk writes' fast path), in place.

        A subclass that overrides `prepare` overrides this too, or its batches go row by row
        (returning False says so).
        """
        return type(self).prepare is Repository.prepare

    @property
    def cursor_key(self) -> bytes:
        """The key that signs pagination cursors (SECRET_KEY unless given)."""
        if self._cursor_key is None:
            self._cursor_key = get_runtime().cursor_key
        return self._cursor_key

    @property
    def _filterable(self) -> frozenset[str]:
        fields = self.filterable_fields
        return fields if fields is not None else self._rules.columns

    @property
    def _sortable(self) -> frozenset[str]:
        fields = self.sortable_fields
        return fields if fields is not None else self._rules.columns

    # -- reading ---------------------------------------------------------------------------------

    def get(self, id: uuid.UUID | str | Any, *, load: Load = None) -> ModelT | None:
        """The row with this primary key, or None; `load` names relationships to fetch too,
        also when the row is already in the session."""
        key = self._key(id)
        # A row the session holds comes from Session.get, as it stands (or refreshed where it
        # expired); with `load`, a SELECT all the same: get would hand back the held row
        # without applying loader options, leaving its relationships unloaded.
        if not load and self._holds(key):
            return self.session.get(self.model, key)
        statement, parameters = _statements.select_by_key(self.model, self._rules, key, load=load)
        options = _loading(load)
        found: ModelT | None = self.session.scalars(
            statement, parameters, execution_options=options
        ).one_or_none()
        return found

    def _holds(self, key: Any) -> bool:
        """Whether the session holds the row with primary key `key`."""
        values = key if type(key) is tuple else (key,)
        identity = self.model.__mapper__.identity_key_from_primary_key(values)
        return identity in self.session.identity_map

    def get_one(self, id: uuid.UUID | str | Any, *, load: Load = None) -> ModelT:
        """The row with this primary key, or `NotFoundError`."""
        found = self.get(id, load=load)
        if found is None:
            raise NotFoundError(_versioned.not_found(self._rules))
        return found

    def list(
        self,
        *,
        where: Where = None,
        order_by: OrderBy = None,
        limit: int = 50,
        offset: int = 0,
        load: Load = None,
    ) -> list[ModelT]:
        """One offset page of rows matching `where`, in a total order."""
        return self.list_page(
            where=where, order_by=order_by, limit=limit, offset=offset, load=load
        ).items

    def list_page(
        self,
        *,
        where: Where = None,
        order_by: OrderBy = None,
        limit: int = 50,
        offset: int = 0,
        load: Load = None,
        with_total: bool = False,
    ) -> OffsetPage[ModelT]:
        """An offset page; `with_total` counts every match in the same scan (a window count)."""
        check_limit(limit)
        check_offset(offset)
        keys = sort_keys(self._rules, order_by, allowed=self._sortable)
        statement, parameters = self._select(
            where, keys, load=load, paged="offset", counted=with_total
        )
        parameters.update(_statements.page_parameters(limit, offset))
        options = _loading(load)
        if not with_total:
            found = self.session.scalars(statement, parameters, execution_options=options)
            return OffsetPage(list(found), None)
        rows = self.session.execute(statement, parameters, execution_options=options).all()
        if rows:
            return OffsetPage([row[0] for row in rows], int(rows[0][1]))
        # Past the last page no row carries the count: ask for it.
        return OffsetPage([], self.count(where=where) if offset else 0)

    def paginate(
        self,
        *,
        where: Where = None,
        order_by: OrderBy = None,
        limit: int = 50,
        cursor: str | None = None,
        load: Load = None,
    ) -> Page[ModelT]:
        """A keyset page: the rows after `cursor`; pass `next_cursor` back for the next one."""
        check_limit(limit)
        keys = sort_keys(self._rules, order_by, allowed=self._sortable)
        # Checked once: for the statement and for the cursor's fingerprint.
        terms = checked(self._rules, where, allowed=self._filterable)
        fingerprint = self._fingerprint(keys, terms)
        if cursor is None:
            statement, parameters = self._select(terms, keys, load=load, paged="limit")
        else:
            raw = decode_cursor(
                cursor, fingerprint=fingerprint, key=self.cursor_key, size=len(keys)
            )
            values = [from_json(self._rules, k.name, v) for k, v in zip(keys, raw, strict=True)]
            statement, parameters = _statements.select_after(
                self.model, self._rules, self._backend, where=terms, keys=keys, values=values,
                filterable=self._filterable, load=load,
            )  # fmt: skip
        parameters.update(_statements.page_parameters(limit + 1))  # one more: a next page?
        options = _loading(load)
        items = list(self.session.scalars(statement, parameters, execution_options=options))
        if len(items) <= limit:
            return Page(items, None)
        items = items[:limit]
        last = [to_json(getattr(items[-1], key.name)) for key in keys]
        return Page(items, encode_cursor(last, fingerprint=fingerprint, key=self.cursor_key))

    def cursor_after(self, row: Any, *, where: Where = None, order_by: OrderBy = None) -> str:
        """The cursor of the page that starts after `row` (an instance, or a row `iterate`
        gave) in the query `where` and `order_by`: what `paginate` would have handed back had
        `row` ended a page."""
        keys = sort_keys(self._rules, order_by, allowed=self._sortable)
        values = [to_json(getattr(row, key.name)) for key in keys]
        return encode_cursor(
            values, fingerprint=self._fingerprint(keys, where), key=self.cursor_key
        )

    def _fingerprint(self, keys: Sequence[SortKey], where: Where | Checked) -> str:
        """What this query's cursors are bound to (`query_fingerprint`)."""
        filtered = canonical(self._rules, where, allowed=self._filterable)
        specs = [key.spec for key in keys]
        return query_fingerprint(model_entity(self.model), specs, filtered)

    def iterate(
        self, *, where: Where = None, order_by: OrderBy = None, batch_size: int = 1000
    ) -> Iterator[Row[Any]]:
        """Every row matching `where`, in order, fetched `batch_size` at a time: for exports and
        batch jobs, in memory that stays flat however many rows there are.

        Rows are read-only records with the model's fields as attributes (`row.title`,
        `row._asdict()`), not tracked instances: building a tracked instance costs more than
        fetching the row. PostgreSQL and MariaDB stream from a server-side cursor, which holds
        the session's connection until the iteration ends. The rows are those stored when the
        stream began: what the unit writes meanwhile is not among them (on SQLite its first
        write reads the rest of the stream into memory).
        """
        result = self.session.execute(self.iteration_statement(where, order_by, batch_size))
        kept: builtins.list[Row[Any]] = []

        def keep_rest() -> None:
            kept.extend(result.fetchall())

        with streaming(self.session.connection(), result.close, keep_rest):
            # A batch at a time: rows come from the driver's fetchmany, not one per row.
            for batch in result.partitions():
                yield from batch
            yield from kept

    def iteration_statement(self, where: Where, order_by: OrderBy, batch_size: int) -> Select[Any]:
        """The streaming SELECT of `iterate` (the asyncio face streams it too)."""
        check_limit(batch_size, "batch_size")
        keys = sort_keys(self._rules, order_by, allowed=self._sortable)
        statement, parameters = self._select(where, keys, plain=True)
        if parameters:  # bound into a copy: the async face streams the statement alone
            statement = statement.params(parameters)
        return statement.execution_options(yield_per=batch_size)

    def count(self, *, where: Where = None) -> int:
        """How many rows match `where`."""
        statement, parameters = _statements.select_count(
            self._rules, self._backend, where=where, filterable=self._filterable
        )
        return int(self.session.scalar(statement, parameters) or 0)

    def exists(self, *, where: Where = None) -> bool:
        """Whether any row matches `where`."""
        statement, parameters = _statements.select_exists(
            self._rules, self._backend, where=where, filterable=self._filterable
        )
        return bool(self.session.scalar(statement, parameters))

    def _select(
        self, where: Where | Checked, keys: Sequence[SortKey], **options: Any
    ) -> tuple[Select[Any], dict[str, Any]]:
        return _statements.select_rows(
            self.model,
            self._rules,
            self._backend,
            where=where,
            keys=keys,
            filterable=self._filterable,
            **options,
        )

    def _key(self, id: Any) -> Any:
        """A primary key value as its column holds it (a UUID from text, for UUID keys); for a
        key of several columns, their values as a tuple in the key's order (given as one, or
        as a mapping of the columns' names)."""
        names = self._rules.primary_key
        if len(names) == 1:
            return self._key_value(names[0], id)
        if isinstance(id, Mapping) and set(id) == set(names):
            given = [id[name] for name in names]
        elif isinstance(id, tuple | builtins.list) and len(id) == len(names):
            given = builtins.list(id)
        else:
            raise InvalidQueryError(
                f"the primary key of {self._rules.name} has {len(names)} columns "
                f"({', '.join(names)}): give their values as a tuple in that order, or as a "
                "mapping of their names"
            )
        return tuple(self._key_value(name, value) for name, value in zip(names, given, strict=True))

    def _key_value(self, name: str, id: Any) -> Any:
        if id is None:
            raise InvalidQueryError(f"{name} cannot be None")
        rule = self._rules.rule(name)
        if rule.kind == "uuid":
            return as_uuid(id, name)
        if rule.kind == "integer" and isinstance(id, str):
            if not _DECIMAL_INTEGER.fullmatch(id):
                # Said by its form only: the text is the caller's input.
                raise InvalidQueryError(
                    f"{name} must be an integer, or its decimal text written the one way a "
                    "number is (digits, no leading zero, no sign but '-')"
                )
            id = int(id)  # an id from a URL path or a form, written the one way a number is
        return rule.coerce(id, check_length=False)

    # -- writing ---------------------------------------------------------------------------------

    def create(self, data: Data) -> ModelT:
        """Add a row and flush it, so its id and defaults are set."""
        values = new_row_values(self._rules, data, prepare=self.prepare)
        self._refuse_a_key_in_the_session(values)
        instance = self.model(**values)
        self.session.add(instance)
        self._flush()
        if self._gives_numbered_key(values):
            self._number_past_given_keys()
        return instance

    def _refuse_a_key_in_the_session(self, values: dict[str, Any]) -> None:
        """A primary key the session already holds (a natural key given twice) is the
        database's conflict, said before the flush would trip over the identity map."""
        names = self._rules.primary_key
        key = tuple(values.get(name) for name in names)
        if None in key:
            return
        held = self.session.identity_map.get(identity_key(self.model, key))
        if held is not None and held not in self.session.deleted:
            raise conflict_on(self._rules.table, names)

    def update(
        self, id: uuid.UUID | str | Any, data: Data, *, expected_version: int | None = None
    ) -> ModelT:
        """Change the given fields; a row changed by someone else since it was read is stale.

        `expected_version` is the version the caller last saw (for example in a form sent to a
        browser): a row at any other version is stale without writing anything. Given, the
        update is one statement where the database returns the updated row (`RETURNING`) and
        nothing the ORM runs on the way would be skipped; otherwise the row is read first.

        Every update that gives fields writes a new version of the row (the version column
        advances, `onupdate` timestamps move), even where each value equals the stored one;
        one that gives none writes nothing, and checks `expected_version` all the same.
        """
        values = row_values(self._rules, data, writable=self._rules.updatable, prepare=self.prepare)
        session, model, rules = self.session, self.model, self._rules
        if expected_version is not None:
            _versioned.check_expected_version(rules, expected_version)
            if (
                values
                and _versioned.version_can_be(rules, expected_version)
                and _versioned.updates_in_one_statement(session, model, rules)
            ):
                key = self._key(id)
                self._before_bulk_write()
                return _versioned.update_at_version(
                    session, model, rules, key, values, expected_version
                )
        instance = self.get_one(id)
        current = getattr(instance, rules.version) if rules.version else None
        if expected_version is not None and current != expected_version:
            raise _versioned.not_at(rules, expected_version, current)
        if (
            values
            and current is not None
            and _versioned.updates_without_flush(session, model, rules, instance)
        ):
            self._before_bulk_write()
            return _versioned.update_read_row(
                session, model, rules, instance, values, current, expected_version
            )
        for name, value in values.items():
            setattr(instance, name, value)
            # Written even where it equals the stored value (the ORM would skip it): every
            # update with fields is a new version of the row, on every path and backend, so a
            # client's If-Match goes stale alike everywhere.
            flag_modified(instance, name)
        try:
            self._flush()
        except StaleObjectError as exc:
            if expected_version is None:
                raise
            # The caller's version, stale since the read: as on the paths that write in one
            # statement, not a race that running the unit again could win.
            raise StaleObjectError(str(exc), lost_race=False) from exc
        return instance

    def delete(self, id: uuid.UUID | str | Any) -> None:
        """Delete the row (and, through the database, what it owns)."""
        self.session.delete(self.get_one(id))
        self._flush()

    def create_many(self, rows: Iterable[Data], *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        """Insert rows in bulk at the speed of the database's bulk load; returns how many were
        inserted.

        `rows` may be any iterable: it is consumed one batch at a time. Ids and timestamps are
        filled in Python as `create` does. The rows skip the ORM: objects already in the
        session are not refreshed. A call that fails stores none of its rows.
        """
        self._before_bulk_write()
        batches = _bulk.new_row_batches(
            self._rules,
            rows,
            batch_size,
            prepare=self.prepare,
            prepare_columns=self.prepare_columns,
        )
        # A savepoint: one call that fails stores none of its rows on every backend (SQLite's
        # executemany and MariaDB's statements of a megabyte store as they go), and the
        # caller's transaction goes on.
        try:
            with self.session.begin_nested():
                connection = self.session.connection()
                inserted = self._backend.insert_batches(connection, self._rules.table, batches)
        except BulkLoadRefused as refused:  # the savepoint undid the refused bulk load
            with self.session.begin_nested():
                connection = self.session.connection()
                table = self._rules.table
                inserted = self._backend.insert_by_statements(connection, table, refused.batches)
        self._number_past_given_keys()
        return inserted

    def upsert(self, data: Data, *, conflict: Conflict = None) -> ModelT:
        """Insert the row, or update the one that has the same `conflict` values (a unique key;
        default: `upsert_key`, else the primary key), atomically.

        On update only the given fields change, the version advances and the `updated`
        timestamps move; the primary key, `created` timestamps and every field left out stay as
        stored. A row whose other unique values (an id, an email) belong to a different row, or
        differ from those of the row it matched, is a `ConflictError`, and nothing is written.
        """
        target = self._conflict(conflict)
        (row,) = self._upsert_rows([data], target)
        if self._gives_numbered_key(row):
            self._number_past_given_keys()
        statement, parameters = _statements.select_where_equal(
            self.model, self._rules, {name: row[name] for name in target}
        )
        options = {"populate_existing": True}
        found: ModelT = self.session.scalars(statement, parameters, execution_options=options).one()
        return found

    def upsert_many(
        self,
        rows: Iterable[Data],
        *,
        conflict: Conflict = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> int:
        """`upsert` for many rows, streamed in batches; returns how many rows were sent.

        Rows may give different sets of fields: each set is one statement per batch. A call
        that fails stores none of its rows. Rows of the model the session already holds are
        read again afterwards, as stored.
        """
        target = self._conflict(conflict)
        self._before_bulk_write()
        written = [0]

        def counted(size: int) -> None:
            written[0] += size

        prepared = _bulk.upsert_batches(
            self._rules,
            self._backend,
            rows,
            batch_size,
            target,
            prepare_columns=self.prepare_columns,
            counted=counted,
        )

        def general_way(batch: builtins.list[Any], uniform: UniformUpsert | None) -> None:
            # A uniform batch through its one compiled statement, handed to the driver's
            # executemany; any other row by row.
            if uniform is None or not execute_compiled(
                self.session.connection(), self._rules.table, uniform.statement(), uniform.batch
            ):
                self._upsert_rows(batch, target)

        with self.session.begin_nested():
            self._backend.upsert_batches(
                self.session, self._rules.table, target, prepared, general_way
            )
        self._number_past_given_keys()
        self._read_held_again()
        return written[0]

    def _gives_numbered_key(self, values: Mapping[str, Any]) -> bool:
        key = self._rules.numbered
        return key is not None and values.get(key) is not None

    def _number_past_given_keys(self) -> None:
        """After a write that gave (or, in bulk, may have given) the key the database numbers:
        its numbering goes on past the keys given (`Backend.number_past_given_keys`)."""
        key = self._rules.numbered
        if key is not None:
            connection = self.session.connection()
            self._backend.number_past_given_keys(connection, self._rules.table, key)

    def _read_held_again(self) -> None:
        """Read again the rows of the model that the session holds, after a bulk write that
        may have changed them under it: they show what is stored, and a later `update` finds
        the version stored, not a lost optimistic lock."""
        held_class = sa_inspect(self.model).base_mapper.class_
        identities = self.session.identity_map.keys()
        keys = [key[1] for key in identities if key[0] is held_class]
        for start in range(0, len(keys), _READ_AGAIN_AT_ONCE):
            statement = _statements.select_by_keys(
                self.model, self._rules, self._backend, keys[start : start + _READ_AGAIN_AT_ONCE]
            )
            self.session.scalars(statement.execution_options(populate_existing=True)).all()

    def _flush(self) -> None:
        # The translating flush whatever class the session is (a caller's own sessionmaker
        # makes plain Sessions): a lost optimistic lock is a StaleObjectError all the same.
        DataSession.flush(self.session)  # type: ignore[arg-type]

    def _conflict(self, conflict: Conflict) -> tuple[str, ...]:
        if conflict is None:
            conflict = self.upsert_key or self._rules.primary_key
        return conflict_target(self._rules, conflict)

    def _before_bulk_write(self) -> None:
        # Bulk writes skip the flush, where the read-only guard of a unit sits: check here.
        if self.session.info.get(READ_ONLY_KEY):
            raise ReadOnlyError(READ_ONLY_MESSAGE)
        self._flush()

    def _upsert_rows(
        self, batch: builtins.list[Data], target: tuple[str, ...]
    ) -> builtins.list[dict[str, Any]]:
        """Upsert rows one statement per set of given fields (`_upserts`); the rows as sent."""
        self._before_bulk_write()
        return _upserts.upsert_rows(
            self.session, self._rules, self._backend, batch, target, prepare=self.prepare
        )


# Keys a statement that reads held rows again names at most (SQLite and MariaDB take each as a
# parameter of its own).
_READ_AGAIN_AT_ONCE = 500

_declared_for: dict[type[Any], type[Repository[Any]]] = {}


_plain_for: dict[type[Any], type[Repository[Any]]] = {}


def _plain(model: type[Any]) -> type[Repository[Any]]:
    found = _plain_for.get(model)
    if found is None:
        name = f"{model.__name__}Repository"
        found = _plain_for[model] = type(name, (Repository,), {"model": model, "_made": True})
    return found


__all__ = ["DEFAULT_BATCH_SIZE", "Data", "ModelT", "OffsetPage", "Page", "Repository"]
