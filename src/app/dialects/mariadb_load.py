"""MariaDB's bulk load: batches written as tab-separated text to a private file and loaded by
LOAD DATA LOCAL INFILE (PyMySQL), in a savepoint; what that file cannot carry goes through the
driver's executemany.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table

from app.db.error_events import WRITES_TO
from app.db.errors import DataLayerError
from app.dialects.base import Batch, execute_columns, plain_insert, storage_columns
from app.dialects.streams import is_streaming

# The connection's info key that says the server refuses LOAD DATA LOCAL (local_infile=OFF).
_NO_LOCAL_FILES = "app_no_local_files"
# ER_NOT_ALLOWED_COMMAND, ER_LOAD_INFILE_CAPABILITY_DISABLED: LOAD DATA LOCAL is turned off.
_LOCAL_FILES_OFF = {1148, 4166}
_NULL = "\\N"
LOAD_ROWS = 50_000  # rows one load carries at most: a file of some tens of megabytes
# The text form of a value of each storage type, as LOAD DATA reads it into its column.
_AS_TEXT: dict[type, Callable[[Any], str]] = {
    str: str.__str__,
    int: int.__repr__,
    bool: lambda value: "1" if value else "0",
    float: float.__repr__,
    Decimal: lambda value: format(value, "f"),
    dt.datetime: lambda value: value.isoformat(" "),
    dt.date: dt.date.isoformat,
    dt.time: dt.time.isoformat,
    uuid.UUID: uuid.UUID.__str__,  # the column is MariaDB's own UUID type
}


class _Load:
    """Batches written to a private temporary file, then loaded by one LOAD DATA LOCAL INFILE
    in a savepoint (`run`) once they hold `LOAD_ROWS` rows, before a batch of other columns,
    and at the end. MariaDB skips a duplicate row of a local file with a warning, and may store
    a value it had to adjust the same way: a load that did either is undone, and its batches go
    through executemany, which fails as an INSERT does. A server that does not take local files
    gets executemany from then on."""

    def __init__(self, connection: Connection, table: Table) -> None:
        self.connection = connection
        self.table = table
        self.batches: list[Batch] = []
        self.rows = 0
        self.file: Any = None

    def __enter__(self) -> _Load:
        self.file = tempfile.NamedTemporaryFile(prefix="app-load-", suffix=".tsv")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.file.close()

    def takes(self, batch: Batch) -> bool:
        """Whether `batch` may join the batches written so far."""
        return not self.batches or batch.columns.keys() == self.batches[0].columns.keys()

    def add(self, batch: Batch, lines: bytes) -> None:
        self.file.write(lines)
        self.batches.append(batch)
        self.rows += batch.count
        if self.rows >= LOAD_ROWS:
            self.run()

    def run(self) -> None:
        """Load what was written, and start an empty file."""
        if not self.batches:
            return
        batches, rows = self.batches, self.rows
        self.file.flush()
        loaded = self._loaded(rows)
        self.file.seek(0)
        self.file.truncate()
        self.batches, self.rows = [], 0
        if not loaded:
            for batch in batches:
                statement = plain_insert(self.connection, self.table, batch)
                execute_columns(self.connection, self.table, statement, batch)

    def _loaded(self, rows: int) -> bool:
        preparer = self.connection.dialect.identifier_preparer
        names = ", ".join(preparer.quote(name) for name in self.batches[0].columns)
        statement = (
            "LOAD DATA LOCAL INFILE %s INTO TABLE "
            f"{preparer.format_table(self.table)} CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
            f"({names})"
        )
        savepoint = self.connection.begin_nested()
        try:
            with _local_files(self.connection):
                result = self.connection.exec_driver_sql(
                    statement, (self.file.name,), execution_options={WRITES_TO: self.table}
                )
        except DataLayerError as exc:
            savepoint.rollback()
            if exc.code not in _LOCAL_FILES_OFF:
                raise
            self.connection.info[_NO_LOCAL_FILES] = True
            return False
        except BaseException:
            # Interrupted (the connection cut, `pymysql_connection`): the savepoint ends here
            # as on a failure, so the caller's own savepoint finds the transaction it began.
            if savepoint.is_active:
                savepoint.rollback()
            raise
        if result.rowcount == rows and not result.context.cursor.warning_count:
            savepoint.commit()
            return True
        savepoint.rollback()
        return False


def _tab_separated(columns: dict[str, list[Any]]) -> bytes | None:
    """The rows of `columns` in LOAD DATA's default text format (tab-separated, a backslash
    escapes the tab, the newline and itself, `\\N` is NULL) as UTF-8; None if a value has no
    text form here."""
    texts = []
    for values in columns.values():
        kinds = {uuid.UUID if issubclass(t, uuid.UUID) else t for t in set(map(type, values))}
        nullable = type(None) in kinds
        kinds.discard(type(None))
        if len(kinds) > 1 or not kinds <= _AS_TEXT.keys():
            return None
        kind = next(iter(kinds), str)
        if kind is dt.datetime and any(v is not None and v.tzinfo for v in values):
            return None
        as_text = _AS_TEXT[kind]
        if kind is str and _need_escaping([v for v in values if v is not None]):
            as_text = _escaped
        if as_text is _AS_TEXT[str] and not nullable:
            texts.append(values)  # text as it is: no pass needed
        elif not nullable and len(set(map(id, values))) == 1:
            texts.append([as_text(values[0])] * len(values))  # a batch's timestamp
        else:
            texts.append([_NULL if v is None else as_text(v) for v in values])
    rows = map("\t".join, zip(*texts, strict=True))
    return ("\n".join(rows) + "\n").encode("utf-8")


def _need_escaping(texts: list[str]) -> bool:
    """Whether any of `texts` holds a tab, a newline or a backslash (told in one pass)."""
    joined = "\n".join(texts)
    return "\\" in joined or "\t" in joined or joined.count("\n") > len(texts) - 1


def _escaped(text: str) -> str:
    return str.replace(str.replace(str.replace(text, "\\", "\\\\"), "\t", "\\t"), "\n", "\\n")


def takes_files(connection: Connection) -> bool:
    """Whether batches on `connection` may go by LOAD DATA LOCAL INFILE: PyMySQL's (asyncmy's
    replies to the file's packets are not the protocol's), to a server that takes local files."""
    return connection.dialect.driver == "pymysql" and not connection.info.get(_NO_LOCAL_FILES)


def load_batches(connection: Connection, table: Table, batches: Iterable[Batch]) -> int:
    """Insert `batches` into `table` (`_Load`); how many rows."""
    inserted = 0
    with _Load(connection, table) as load:
        for batch in batches:
            # A stream open on this connection (rows fed from iterate()) goes the general
            # way, which says so at once, not only when a file is first loaded.
            lines = (
                None
                if is_streaming(connection)
                else _tab_separated(storage_columns(connection, table, batch))
            )
            if lines is None or not load.takes(batch):
                load.run()
            if lines is None:
                execute_columns(connection, table, plain_insert(connection, table, batch), batch)
            else:
                load.add(batch, lines)
            inserted += batch.count
        load.run()
    return inserted


def refuse_file_requests(dbapi_connection: Any) -> None:
    # A server may ask for any file at any time once a client announced local files: the
    # drivers send what it names. Only while a bulk load of ours runs is that honoured.
    driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    driver._local_infile = False


@contextmanager
def _local_files(connection: Connection) -> Iterator[None]:
    driver = _driver_connection(connection)
    driver._local_infile = True
    try:
        yield
    finally:
        driver._local_infile = False


def _driver_connection(connection: Connection) -> Any:
    return connection.connection.driver_connection
