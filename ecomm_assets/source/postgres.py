"""ecomm-db, the PostgreSQL source: connections, and the consistent snapshot every extract reads."""

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import BinaryIO

import dagster as dg
import psycopg
import sqlglot
from psycopg import IsolationLevel, sql
from pydantic import Field
from sqlglot import exp

from ecomm_assets.waiting import wait_for_lock

SCHEMA_SQL = Path(__file__).with_name("schema.sql")
APPLICATION_NAME = "ecomm_data_pipeline"
# One extract at a time, across every Dagster run and host: the key of a PostgreSQL advisory lock.
# The server releases it when the holder's connection ends, so a killed run never keeps it.
EXTRACT_LOCK = 0x65636F6D  # "ecom"


@dataclass(frozen=True)
class SourceTable:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, PostgreSQL type)
    primary_key: str


@cache
def source_tables() -> dict[str, SourceTable]:
    """The source tables with their columns and primary key, read from schema.sql."""
    tables = {}
    for statement in sqlglot.parse(SCHEMA_SQL.read_text(), read="postgres"):
        if isinstance(statement, exp.Create) and statement.kind == "TABLE":
            definitions = [c for c in statement.this.expressions if isinstance(c, exp.ColumnDef)]
            [primary_key] = [c.name for c in definitions
                             if any(isinstance(k.args.get("kind"), exp.PrimaryKeyColumnConstraint)
                                    for k in c.constraints)]
            name = statement.this.this.name
            tables[name] = SourceTable(
                name, tuple((c.name, c.args["kind"].sql("postgres")) for c in definitions), primary_key)
    return tables


@cache
def column_descriptions() -> dict[str, str]:
    """What each source column means, by column name, from the COMMENT ON COLUMN of schema.sql."""
    descriptions = {}
    for statement in sqlglot.parse(SCHEMA_SQL.read_text(), read="postgres"):
        if isinstance(statement, exp.Comment) and statement.args["kind"] == "COLUMN":
            name = statement.this.name
            if name in descriptions:
                raise ValueError(f"schema.sql comments the column {name} twice: once per name")
            descriptions[name] = statement.expression.name
    return descriptions


# psycopg yields COPY output one row at a time; writing 1 MiB at a time keeps the file I/O cheap.
_WRITE_BATCH_BYTES = 1 << 20


class SourceSnapshot:
    """ecomm-db frozen at one moment (``taken_at``): every read sees the same committed state.

    One ``REPEATABLE READ, READ ONLY`` transaction: a change committed while the extract runs is in
    none of its files, so the tables of a partition are one consistent cut of the source.
    """

    def __init__(self, connection: psycopg.Connection, taken_at: datetime):
        self._connection = connection
        self.taken_at = taken_at

    def copy_changed_rows(self, table: str, start: datetime | None, end: datetime, out: BinaryIO,
                          future_dated: bool = False) -> int:
        """Stream the rows of ``table`` with ``start <= updated_at < end`` (no lower bound without
        ``start``) to ``out`` as CSV with a header; timestamps in UTC. With ``future_dated``, also
        the rows whose ``updated_at`` is later than the snapshot itself (a clock ahead, a date typed
        wrong): landed by the extract that sees them, not held back until their day. Returns the
        rows written."""
        return self._copy(changed_rows_query(table, start, end, self.taken_at if future_dated else None), out)

    def copy_key_versions(self, table: str, versions_before: datetime, out: BinaryIO) -> int:
        """Stream every primary key of ``table`` with its ``updated_at`` to ``out`` (see
        ``key_versions_query``). Returns the rows written."""
        return self._copy(key_versions_query(table, versions_before), out)

    def copy_deleted_keys(self, table: str, out: BinaryIO) -> int:
        """Stream the keys of the previous key snapshot that ``table`` no longer holds (deleted since)
        to ``out``: each with ``_deleted`` true and the snapshot's time as its ``updated_at`` (when the
        extract saw it gone), the table's other columns left out. Returns the rows written."""
        source = _known(table)
        return self._copy(sql.SQL(
            "SELECT DISTINCT previous.key AS {key}, now() AS updated_at, true AS _deleted FROM {previous} AS previous"
            " WHERE previous.key IS NOT NULL AND NOT EXISTS (SELECT FROM {table} WHERE {table}.{key} = previous.key)"
            " ORDER BY 1").format(key=sql.Identifier(source.primary_key), table=sql.Identifier(source.name),
                                  previous=sql.Identifier(_previous_keys(table))), out)

    def _copy(self, query: sql.Composed, out: BinaryIO) -> int:
        """COPY the query's result to ``out`` as CSV with a header; returns the rows written."""
        copy = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(query)
        with self._connection.cursor() as cursor:
            batch = bytearray()
            with cursor.copy(copy) as blocks:
                for block in blocks:
                    batch += block
                    if len(batch) >= _WRITE_BATCH_BYTES:
                        out.write(batch)
                        batch.clear()
            out.write(batch)
            return cursor.rowcount


def changed_rows_query(table: str, start: datetime | None, end: datetime, after: datetime | None = None
                       ) -> sql.Composed:
    """The rows of ``table`` changed in ``[start, end)`` (before ``end`` without ``start``), and after
    ``after`` if given: plain ranges on the indexed ``updated_at``."""
    since = sql.SQL("updated_at >= {} AND ").format(start) if start else sql.SQL("")
    later = sql.SQL(" OR updated_at > {}").format(after) if after else sql.SQL("")
    return sql.SQL(
        "SELECT * FROM {table} WHERE ({since}updated_at < {end}){later} ORDER BY updated_at, 1"
    ).format(table=sql.Identifier(_known(table).name), since=since, end=end, later=later)


def key_versions_query(table: str, versions_before: datetime) -> sql.Composed:
    """Every primary key of ``table`` with its ``updated_at``, left empty where that is
    ``versions_before`` or later (a change not due in the partitions extracted so far)."""
    source = _known(table)
    return sql.SQL(
        "SELECT {key}, CASE WHEN updated_at < {before} THEN updated_at END AS updated_at FROM {table} ORDER BY {key}"
    ).format(key=sql.Identifier(source.primary_key), table=sql.Identifier(source.name), before=versions_before)


def _previous_keys(table: str) -> str:
    """The temporary table that holds the previous key snapshot of ``table`` during an extract."""
    return f"previous_keys_{table}"


def _load_previous_keys(connection: psycopg.Connection, table: str,
                        opener: AbstractContextManager[BinaryIO | None]) -> None:
    """The previous key snapshot of ``table`` (its CSV: key, updated_at) as a temporary table; empty
    when there was none. Loaded before the read-only snapshot begins, which may not create tables."""
    source = _known(table)
    [key_type] = [type_ for name, type_ in source.columns if name == source.primary_key]
    connection.execute(sql.SQL("CREATE TEMPORARY TABLE {} (key {}, updated_at text)").format(
        sql.Identifier(_previous_keys(table)), sql.SQL(key_type)))
    with opener as stream, connection.cursor() as cursor:
        if stream is None:
            return
        with cursor.copy(sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv, HEADER true)").format(
                sql.Identifier(_previous_keys(table)))) as copy:
            while chunk := stream.read(_WRITE_BATCH_BYTES):
                copy.write(chunk)


def _known(table: str) -> SourceTable:
    if table not in source_tables():
        raise ValueError(f"unknown source table {table!r}; expected one of {list(source_tables())}")
    return source_tables()[table]


class SourceDatabase(dg.ConfigurableResource):
    """The ecomm-db PostgreSQL database (the embedded server locally, RDS in production)."""

    dsn: str = Field(default="", description="A libpq connection string or URI; wins over the fields below.")
    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = "ecomm"
    user: str = "ecomm"
    password: str = Field(default="", description="Pass through dg.EnvVar, never a literal.")
    sslmode: str = "prefer"
    connect_attempts: int = 3
    lock_timeout_seconds: float = Field(
        default=3600, description="How long an extract waits for another one to finish before it gives up.")

    def conninfo(self, application_name: str = APPLICATION_NAME) -> str:
        if self.dsn:
            return psycopg.conninfo.make_conninfo(self.dsn, application_name=application_name)
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            password=self.password or None,
            sslmode=self.sslmode,
            application_name=application_name,
        )

    @contextmanager
    def connect(self, application_name: str = APPLICATION_NAME) -> Iterator[psycopg.Connection]:
        """A connection, retried with exponential backoff while the server is unreachable."""
        for attempt in range(1, self.connect_attempts + 1):
            try:
                connection = psycopg.connect(self.conninfo(application_name), connect_timeout=10)
                break
            except psycopg.OperationalError as error:
                if attempt == self.connect_attempts:
                    reason = str(error).strip().splitlines()[0]
                    raise dg.Failure(f"ecomm-db cannot be reached after {attempt} attempts ({reason}). Locally, "
                                     "start it with `python -m ecomm_assets.local_stack up` (or `make dev`).") from error
                time.sleep(0.5 * 2**attempt)
        with connection:
            yield connection

    @contextmanager
    def snapshot(self, log: dg.DagsterLogManager, holder: str,
                 previous_keys: dict[str, AbstractContextManager[BinaryIO | None]] | None = None
                 ) -> Iterator[SourceSnapshot]:
        """Take the extract lock, then open one consistent read-only snapshot of ecomm-db.

        ``holder`` (the Dagster run id) names this extract in ``pg_stat_activity``, so that another
        extract waiting for the lock can say which run holds it. ``previous_keys`` opens, per
        table, the key snapshot the extract before landed (None where there is none): it is loaded
        into a temporary table first, for ``copy_deleted_keys``.
        """
        with self.connect(f"{APPLICATION_NAME} run {holder}") as connection:
            connection.autocommit = True
            self._take_extract_lock(connection, log)
            connection.execute("SET TIME ZONE 'UTC'")
            for table, opener in (previous_keys or {}).items():
                _load_previous_keys(connection, table, opener)
            connection.isolation_level = IsolationLevel.REPEATABLE_READ
            connection.read_only = True
            with connection.transaction():
                [(taken_at,)] = connection.execute("SELECT now()").fetchall()
                yield SourceSnapshot(connection, taken_at)

    def _take_extract_lock(self, connection: psycopg.Connection, log: dg.DagsterLogManager) -> None:
        def holder() -> str:
            found = connection.execute(
                "SELECT a.application_name, a.pid, a.backend_start FROM pg_locks l"
                " JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.objid = %s AND l.granted", (EXTRACT_LOCK,)).fetchone()
            return (f"'{found[0]}' (server pid {found[1]}, connected {found[2]:%Y-%m-%d %H:%M:%S %Z})"
                    if found else "a session that just ended")

        wait_for_lock(
            lambda: connection.execute("SELECT pg_try_advisory_lock(%s)", (EXTRACT_LOCK,)).fetchone()[0],
            holder, "the extract lock of ecomm-db (another extract is running)", self.lock_timeout_seconds, log)
