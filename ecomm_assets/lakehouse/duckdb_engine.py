"""The local lakehouse: a DuckDB file that executes the DLT pipeline's own SQL.

sqlglot transpiles each query from Databricks SQL to DuckDB. Two things DLT does are done here by
hand: Auto Loader's ``read_files`` (the landed CSV files its path selects, every value as text,
columns outside the declared schema rescued into ``_rescued_data`` as JSON; with
``allowOverwrites`` a rewritten file is read again and both versions stay) and the expectations
(failures counted per expectation, then dropped, kept or the update failed). A file is read only
if it matches its manifest (bytes and sha256), and a refresh fails, naming the file, if the rows
it holds from a file are not the rows the manifest counted. A refresh is one transaction: it
lands whole or not at all.

DuckDB admits one writing process per file. Writers take the lakehouse's writer lock (an OS
file lock the kernel drops when its holder dies, so a killed run never blocks the next one).
"""

import csv
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import sqlglot
from sqlglot import exp

from ecomm_assets.extract.landing_zone import MANIFEST
from ecomm_assets.lakehouse.engine import ExpectationResult, LakehouseEngine, LandedFileError, TableUpdate
from ecomm_assets.lakehouse.pipeline_sql import (
    DIALECT,
    FILE_METADATA,
    LANDED,
    LATEST_FILE_VERSION,
    RESCUED_DATA,
    SOURCE_FILE,
    SOURCE_FILE_MODIFIED_AT,
    PipelineTable,
)
from ecomm_assets.waiting import wait_for_lock

_SAMPLE_SIZE = 5


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def to_duckdb(query: exp.Expression) -> str:
    """The query in DuckDB's dialect.

    A Databricks TIMESTAMP is an instant: DuckDB's TIMESTAMPTZ. sqlglot parses
    ``from_utc_timestamp(ts, tz)`` into ``CAST(ts AS TIMESTAMP) AT TIME ZONE tz`` with a naive
    TIMESTAMP, which DuckDB reads as a wall time *in* tz and shifts the wrong way; cast to
    TIMESTAMPTZ instead, whatever the session time zone.
    """
    query = query.copy()
    for at_zone in query.find_all(exp.AtTimeZone):
        cast = at_zone.this
        if isinstance(cast, exp.Cast) and cast.to.this == exp.DataType.Type.TIMESTAMP:
            cast.set("to", exp.DataType.build("TIMESTAMPTZ"))
    return query.sql("duckdb")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _landed_file_relation(path: Path, schema: list[str]) -> str:
    """One CSV file as read_files() in rescue mode reads it: the schema's columns as text and the
    others in ``_rescued_data``. A quoted empty string stays an empty string; only an empty field
    is NULL (as PostgreSQL's COPY writes them)."""
    with path.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    extras = [c for c in header if c not in schema]
    columns = [_ident(c) if c in header else f"NULL::VARCHAR AS {_ident(c)}" for c in schema]
    rescued = "NULL::VARCHAR"
    if extras:
        pairs = ", ".join(f"{_quote(c)}, {_ident(c)}" for c in extras)
        present = " OR ".join(f"{_ident(c)} IS NOT NULL" for c in extras)
        rescued = (f"CASE WHEN {present} THEN json_object({pairs}, '_file_path', "
                   f"{_quote(str(path))})::VARCHAR END")
    all_columns = "{" + ", ".join(f"{_quote(c)}: 'VARCHAR'" for c in header) + "}"
    modified_us = path.stat().st_mtime_ns // 1_000_000 * 1000  # in milliseconds, as Spark lists files
    return (
        f"SELECT {', '.join(columns)}, {rescued} AS {RESCUED_DATA}, "
        f"{{'file_path': {_quote(str(path))}, "
        f"'file_modification_time': make_timestamp({modified_us})::TIMESTAMPTZ}} AS {FILE_METADATA} "
        f"FROM read_csv({_quote(str(path))}, header = true, delim = ',', quote = '\"', escape = '\"', "
        f"columns = {all_columns}, allow_quoted_nulls = false, strict_mode = true)"
    )


class DuckDBLakehouse(LakehouseEngine):
    """The pipeline's tables in a local DuckDB file (catalog = file name, schema = layer)."""

    database: str
    landing_root: str  # the landing zone's ecomm_db_extracts/daily_extracts folder
    writer_lock_timeout_seconds: float = 3600

    @contextmanager
    def writing(self, log: dg.DagsterLogManager, holder: str) -> Iterator[None]:
        """Hold the writer lock of the lakehouse file. While another process holds it, say at INFO
        which run does, every minute, and give up after ``writer_lock_timeout_seconds``."""
        lock_path = Path(self.database).with_suffix(".writer.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a+") as lock:
            def take() -> bool:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    return False

            def current_holder() -> str:
                lock.seek(0)
                return lock.read().strip() or "another process"

            wait_for_lock(take, current_holder, f"the lakehouse file {self.database}",
                          self.writer_lock_timeout_seconds, log)
            lock.truncate(0)
            lock.write(f"{holder} (pid {os.getpid()}, "
                       f"since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)")
            lock.flush()
            yield

    def query(self, statement: str) -> list[tuple]:
        with duckdb.connect(self.database, read_only=True) as connection:
            connection.execute("SET TimeZone = 'UTC'")
            return connection.execute(to_duckdb(sqlglot.parse_one(statement, read=DIALECT))).fetchall()

    def refresh(
        self,
        tables: Sequence[PipelineTable],
        ingestion_dates: Sequence[str],
        log: dg.DagsterLogManager,
        full_refresh: bool = False,
    ) -> list[TableUpdate]:
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with duckdb.connect(self.database) as connection:
            connection.execute("SET TimeZone = 'UTC'")
            connection.execute("BEGIN")
            updates = []
            for table in tables:
                connection.execute(f"CREATE SCHEMA IF NOT EXISTS {table.layer}")
                if table.kind == "streaming table":
                    if full_refresh:
                        connection.execute(f"DROP TABLE IF EXISTS {table.name}")
                    dates = self._landed_dates(table) if full_refresh else ingestion_dates
                    updates.append(self._ingest(connection, table, dates))
                else:
                    updates.append(self._recompute(connection, table))
                log.info(f"{table.name}: {updates[-1].row_count} rows")
            connection.execute("COMMIT")
        return updates

    def _exists(self, connection: duckdb.DuckDBPyConnection, table: PipelineTable) -> bool:
        return bool(connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [table.layer, table.table],
        ).fetchone()[0])

    def _files(self, table: PipelineTable) -> list[Path]:
        """The landed files the table's read_files() path selects."""
        return sorted(Path(self.landing_root).glob(table.read_files.glob))

    def _landed_dates(self, table: PipelineTable) -> list[str]:
        return sorted(path.parent.name.split("=", 1)[1] for path in self._files(table))

    def _landed(self, table: PipelineTable, files: Sequence[Path]) -> str:
        """The query of ``table`` over ``files`` (read_files replaced by them), once each file is
        checked against its manifest."""
        if table.read_files.options.get("format", "").lower() != "csv":
            raise ValueError(f"{table.name}: the local engine reads CSV landing files only")
        for path in files:
            self._verify(path)
        schema = list(table.read_files.schema)
        landed = " UNION ALL BY NAME ".join(_landed_file_relation(f, schema) for f in files)
        query = table.query.copy()
        for star in query.selects:
            if isinstance(star, exp.Star):
                star.set("except_", [exp.column(FILE_METADATA)])
        return f"WITH {LANDED} AS ({landed}) {to_duckdb(query)}"

    def _verify(self, path: Path) -> None:
        """Refuse a file its manifest does not describe byte for byte."""
        relative = path.relative_to(self.landing_root)
        manifest_path = path.with_name(MANIFEST)
        if not manifest_path.exists():
            raise LandedFileError(f"{relative} has no manifest beside it: its extract did not finish. "
                                  "Re-run the extract of that partition.")
        described = json.loads(manifest_path.read_text())["files"].get(path.name)
        actual = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        if described is None or {k: described[k] for k in actual} != actual:
            raise LandedFileError(
                f"{relative} does not match its manifest ({described} expected, {actual} found): "
                "it was changed after the extract wrote it. Re-run the extract of that partition.")

    def _rows_by_file(self, connection, table: PipelineTable, files: Sequence[Path]) -> dict[str, int]:
        """Rows the table holds from the latest version of each of ``files``, checked against their
        manifests."""
        held = dict(connection.execute(
            f"SELECT {SOURCE_FILE}, count(*) FROM (SELECT {SOURCE_FILE} FROM {table.name} WHERE {SOURCE_FILE} IN "
            f"({', '.join(_quote(str(f)) for f in files)}) QUALIFY {LATEST_FILE_VERSION}) GROUP BY ALL").fetchall())
        rows = {}
        for path in files:
            expected = json.loads(path.with_name(MANIFEST).read_text())["files"][path.name]["rows"]
            rows[str(path.relative_to(self.landing_root))] = held.get(str(path), 0)
            if held.get(str(path), 0) != expected:
                raise LandedFileError(
                    f"{table.name} read {held.get(str(path), 0)} rows from {path.relative_to(self.landing_root)}, "
                    f"its manifest counts {expected}: the file is not what the extract wrote.")
        return rows

    def _ingest(self, connection, table: PipelineTable, ingestion_dates: Sequence[str]) -> TableUpdate:
        """Streaming table: add the landed files of the given ingestion dates as they are now. A file
        version read before is replaced, not doubled; an earlier version of a rewritten file stays."""
        by_date = {path.parent.name.split("=", 1)[1]: path for path in self._files(table)}
        missing = [d for d in ingestion_dates if d not in by_date]
        if missing:
            raise FileNotFoundError(
                f"{table.name}: no landed file for ingestion date(s) {missing} under "
                f"{Path(self.landing_root) / table.landing_table}; run the extract first")
        files = [by_date[d] for d in ingestion_dates]
        select = self._landed(table, files)
        if self._exists(connection, table):
            connection.execute(f"CREATE OR REPLACE TEMP TABLE landed_now AS {select}")
            connection.execute(
                f"DELETE FROM {table.name} USING (SELECT DISTINCT {SOURCE_FILE}, {SOURCE_FILE_MODIFIED_AT} "
                f"FROM landed_now) AS now WHERE {table.name}.{SOURCE_FILE} = now.{SOURCE_FILE} "
                f"AND {table.name}.{SOURCE_FILE_MODIFIED_AT} = now.{SOURCE_FILE_MODIFIED_AT}")
            connection.execute(f"INSERT INTO {table.name} BY NAME SELECT * FROM landed_now")
        else:
            connection.execute(f"CREATE TABLE {table.name} AS {select}")
        return TableUpdate(table.name, self._count(connection, table),
                           rows_by_file=self._rows_by_file(connection, table, files))

    def _recompute(self, connection, table: PipelineTable) -> TableUpdate:
        """Materialized view: recompute, then apply the expectations, all counted in one scan."""
        files = self._files(table) if table.read_files else []
        if table.read_files and not files:
            raise FileNotFoundError(f"{table.name}: nothing landed at {table.read_files.glob}; run the extract first")
        select = self._landed(table, files) if files else to_duckdb(table.query)
        if not table.expectations:
            connection.execute(f"CREATE OR REPLACE TABLE {table.name} AS {select}")
            rows_by_file = self._rows_by_file(connection, table, files) if files else {}
            return TableUpdate(table.name, self._count(connection, table), rows_by_file=rows_by_file)

        connection.execute(f"CREATE OR REPLACE TEMP TABLE candidates AS {select}")
        passes = [f"coalesce(({to_duckdb(exp.maybe_parse(e.condition, dialect=DIALECT))}), false)"
                  for e in table.expectations]
        keep = " AND ".join(p for p, e in zip(passes, table.expectations, strict=True) if e.action == "drop") or "true"
        total, kept, *passed = connection.execute(
            f"SELECT count(*), count(*) FILTER ({keep}), "
            + ", ".join(f"count(*) FILTER ({p})" for p in passes) + " FROM candidates"
        ).fetchone()
        key = _ident(table.key)
        results = []
        for expectation, condition, passed_records in zip(table.expectations, passes, passed, strict=True):
            failed = total - passed_records
            sample = [str(row[0]) for row in connection.execute(
                f"SELECT {key} FROM candidates WHERE NOT {condition} ORDER BY {key} LIMIT {_SAMPLE_SIZE}"
            ).fetchall()] if failed else []
            if expectation.action == "fail" and failed:
                raise RuntimeError(
                    f"{table.name}: expectation {expectation.name} failed on {failed} rows "
                    f"(e.g. {key}={sample}); the update is rolled back"
                )
            results.append(ExpectationResult(expectation.name, passed_records, failed, tuple(sample)))
        connection.execute(f"CREATE OR REPLACE TABLE {table.name} AS SELECT * FROM candidates WHERE {keep}")
        return TableUpdate(table.name, kept, tuple(results))

    def _count(self, connection, table: PipelineTable) -> int:
        return connection.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]
