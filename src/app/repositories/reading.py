"""Reading: get, list (offset pages, optionally counted), keyset pages, count, exists."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic

from sqlalchemy import Row, Select

from app.db.errors import NotFoundError, translating_errors
from app.db.streaming import cut_short_is_an_error, streaming
from app.repositories import queries
from app.repositories.columns import as_uuid, from_json, to_json
from app.repositories.core import ModelT, RepositoryCore
from app.repositories.cursors import decode_cursor, encode_cursor, query_fingerprint
from app.repositories.ordering import SortKey, sort_keys

Where = Mapping[str, Any] | None
OrderBy = Sequence[str] | str | None
Load = Sequence[str] | None


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


class ReadingMixin(RepositoryCore[ModelT]):
    """The reading half of a repository."""

    def get(self, id: uuid.UUID | str, *, load: Load = None) -> ModelT | None:
        """The row with this primary key, or None; `load` names relationships to fetch too,
        also when the row is already in the session."""
        key = as_uuid(id)
        with translating_errors(model=self.model):
            if not load:
                return self.session.get(self.model, key)
            # A SELECT, not Session.get: get returns a row the session already holds without
            # applying loader options, leaving its relationships unloaded.
            statement = queries.select_by_key(self.model, key, load=load)
            found: ModelT | None = self.session.scalars(statement).one_or_none()
            return found

    def get_one(self, id: uuid.UUID | str, *, load: Load = None) -> ModelT:
        """The row with this primary key, or `NotFoundError`."""
        found = self.get(id, load=load)
        if found is None:
            raise NotFoundError(f"no {self._entity} with id {str(id)!r}")
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
        queries.check_limit(limit)
        queries.check_offset(offset)
        keys = sort_keys(self.model, order_by, allowed=self._sortable)
        statement = self._select(where, keys, load=load).limit(limit).offset(offset)
        with translating_errors(model=self.model):
            if not with_total:
                return OffsetPage(list(self.session.scalars(statement)), None)
            rows = self.session.execute(queries.with_total(statement)).all()
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
        queries.check_limit(limit)
        keys = sort_keys(self.model, order_by, allowed=self._sortable)
        fingerprint = query_fingerprint(self.model, [key.spec for key in keys], where)
        after_values = None
        if cursor is not None:
            raw = decode_cursor(
                cursor, fingerprint=fingerprint, key=self.cursor_key, size=len(keys)
            )
            after_values = [
                from_json(self.model, k.name, v) for k, v in zip(keys, raw, strict=True)
            ]
        statement = self._select(where, keys, load=load, after_values=after_values).limit(limit + 1)
        with translating_errors(model=self.model):
            items = list(self.session.scalars(statement))
        if len(items) <= limit:
            return Page(items, None)
        items = items[:limit]
        last = [to_json(getattr(items[-1], key.name)) for key in keys]
        return Page(items, encode_cursor(last, fingerprint=fingerprint, key=self.cursor_key))

    def iterate(
        self, *, where: Where = None, order_by: OrderBy = None, batch_size: int = 1000
    ) -> Iterator[Row[Any]]:
        """Every row matching `where`, in order, fetched `batch_size` at a time: for exports and
        batch jobs, in memory that stays flat however many rows there are.

        Rows are read-only records with the model's fields as attributes (`row.title`,
        `row._asdict()`), not tracked instances: building a tracked instance costs more than
        fetching the row. PostgreSQL and MariaDB stream from a server-side cursor, which holds
        the session's connection until the iteration ends.
        """
        statement = self._iteration_statement(where, order_by, batch_size)
        with translating_errors(model=self.model):
            result = self.session.execute(statement)
            with streaming(self.session.connection(), result.close), cut_short_is_an_error():
                # A batch at a time: rows come from the driver's fetchmany, not one per row.
                for batch in result.partitions():
                    yield from batch

    def _iteration_statement(self, where: Where, order_by: OrderBy, batch_size: int) -> Select[Any]:
        """The streaming SELECT of `iterate` (shared with the asyncio face)."""
        queries.check_limit(batch_size)
        keys = sort_keys(self.model, order_by, allowed=self._sortable)
        return self._select(where, keys, plain=True).execution_options(yield_per=batch_size)

    def _select(self, where: Where, keys: Sequence[SortKey], **options: Any) -> Select[Any]:
        """`queries.select_rows` for this repository's model, fields and database."""
        return queries.select_rows(
            self.model,
            where=where,
            keys=keys,
            filterable=self._filterable,
            dialect=self._dialect,
            **options,
        )

    def count(self, *, where: Where = None) -> int:
        """How many rows match `where`."""
        statement = queries.select_count(self.model, where=where, filterable=self._filterable)
        with translating_errors(model=self.model):
            return int(self.session.scalar(statement) or 0)

    def exists(self, *, where: Where = None) -> bool:
        """Whether any row matches `where`."""
        statement = queries.select_exists(self.model, where=where, filterable=self._filterable)
        with translating_errors(model=self.model):
            return bool(self.session.scalar(statement))
