"""ecomm-db, the PostgreSQL source: connections and the streamed extract of a changed-rows window."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import BinaryIO

import dagster as dg
import psycopg
import sqlglot
from psycopg import sql
from pydantic import Field
from sqlglot import exp

SCHEMA_SQL = Path(__file__).with_name("schema.sql")


@cache
def source_columns() -> dict[str, list[tuple[str, str]]]:
    """(column, type) of every source table, read from schema.sql."""
    tables = {}
    for statement in sqlglot.parse(SCHEMA_SQL.read_text(), read="postgres"):
        if isinstance(statement, exp.Create) and statement.kind == "TABLE":
            schema = statement.this
            tables[schema.this.name] = [
                (column.name, column.args["kind"].sql("postgres"))
                for column in schema.expressions
                if isinstance(column, exp.ColumnDef)
            ]
    return tables

# psycopg yields COPY output one row at a time; writing 1 MiB at a time keeps the file I/O cheap.
_WRITE_BATCH_BYTES = 1 << 20


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

    def conninfo(self) -> str:
        if self.dsn:
            return psycopg.conninfo.make_conninfo(self.dsn, application_name="ecomm_data_pipeline")
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            password=self.password or None,
            sslmode=self.sslmode,
            application_name="ecomm_data_pipeline",
        )

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A connection, retried with exponential backoff while the server is unreachable."""
        for attempt in range(1, self.connect_attempts + 1):
            try:
                connection = psycopg.connect(self.conninfo(), connect_timeout=10)
                break
            except psycopg.OperationalError:
                if attempt == self.connect_attempts:
                    raise
                time.sleep(0.5 * 2**attempt)
        with connection:
            yield connection

    def copy_changed_rows(
        self, table: str, start: datetime, end: datetime, out: BinaryIO
    ) -> tuple[int, int]:
        """Stream the rows of ``table`` with ``start <= updated_at < end`` to ``out`` as CSV with header.

        The window is a plain range on the indexed ``updated_at`` column, and timestamps are written
        in UTC. Returns (rows, bytes).
        """
        if table not in source_columns():
            raise ValueError(f"unknown source table {table!r}; expected one of {list(source_columns())}")
        query = sql.SQL(
            "COPY (SELECT * FROM {table} WHERE updated_at >= {start} AND updated_at < {end}"
            " ORDER BY updated_at, 1) TO STDOUT WITH (FORMAT csv, HEADER true)"
        ).format(table=sql.Identifier(table), start=start, end=end)
        written = 0
        with self.connect() as connection, connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
            batch = bytearray()
            with cursor.copy(query) as copy:
                for block in copy:
                    batch += block
                    if len(batch) >= _WRITE_BATCH_BYTES:
                        written += out.write(batch)
                        batch.clear()
            written += out.write(batch)
            return cursor.rowcount, written
