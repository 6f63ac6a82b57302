"""The local lakehouse: a DuckDB file that executes the DLT pipeline's own SQL.

sqlglot transpiles each query from Databricks SQL to DuckDB. What DLT does itself is done here by
hand, each the way Databricks documents it:

- Auto Loader's ``read_files``: the landed CSV files its path selects, each read once, every value
  as text, columns outside the declared schema rescued into ``_rescued_data`` as JSON. A file is
  read only when a manifest names it and it matches its manifest entry (bytes and sha256); the
  files of the run's ingestion dates are checked again on every refresh.
- streams: a query that reads ``STREAM(table)`` sees the rows that table took from landed files its
  reader has not read yet (the engine remembers, per reader, the landed files it has read).
- AUTO CDC: the keys a refresh's changes touch are rebuilt from every change of those keys, in
  ``SEQUENCE BY`` order: SCD type 1 keeps the latest version (none after a delete), SCD type 2 one
  row per run of versions whose tracked columns are equal, with ``__START_AT``/``__END_AT``. So
  applying the changes out of order, or twice, gives the same table as one pass in order.
- expectations: failures counted per expectation, then the rows dropped, kept or the update failed.

A refresh is one transaction: it lands whole or not at all. DuckDB admits one writing process per
file. Writers take the lakehouse's writer lock (an OS file lock the kernel drops when its holder
dies, so a killed run never blocks the next one).
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
from sqlglot.dialects.duckdb import DuckDB

from ecomm_assets.extract.landing_zone import MANIFEST, named_files
from ecomm_assets.lakehouse.engine import ExpectationResult, LakehouseEngine, LandedFileError, TableUpdate
from ecomm_assets.lakehouse.pipeline_sql import (
    DIALECT,
    END_AT,
    FILE_METADATA,
    LANDED,
    RESCUED_DATA,
    SOURCE_FILE,
    START_AT,
    AutoCdc,
    PipelineTable,
    is_stream,
)
from ecomm_assets.waiting import wait_for_lock

_SAMPLE_SIZE = 5
COMMITTED = "Refresh committed to"  # the engine's last line of a refresh
# The engine's own bookkeeping, beside the pipeline's schemas: which landed files each streaming
# reader (a table reading files or a stream, an AUTO CDC flow) has taken, and how many rows.
_FILES_READ = "_pipeline.files_read"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def to_duckdb(query: exp.Expression) -> str:
    """The query in DuckDB's dialect.

    A Databricks TIMESTAMP is an instant: DuckDB's TIMESTAMPTZ. sqlglot parses
    ``from_utc_timestamp(ts, tz)`` into ``CAST(ts AS TIMESTAMP) AT TIME ZONE tz`` with a naive
    TIMESTAMP, which DuckDB reads as a wall time *in* tz and shifts the wrong way; cast to
    TIMESTAMPTZ instead, whatever the session time zone. ``to_timestamp(text, format)`` becomes
    DuckDB's ``strptime``, a naive TIMESTAMP: read as UTC, the session time zone, it is cast too;
    ``try_to_timestamp``, which sqlglot does not know, becomes ``try_strptime`` the same way.
    Spark's ``count_if`` counts the rows where the condition is true, 0 when there is none; DuckDB's
    ``count_if`` gives NULL over a group whose conditions are all NULL: it becomes
    ``count(CASE WHEN condition THEN 1 END)``.
    """
    query = query.copy()
    for call in [f for f in query.find_all(exp.Anonymous) if f.name.lower() == "try_to_timestamp"]:
        text, format_ = call.expressions
        parse = exp.maybe_parse(f"to_timestamp(text, {format_.sql(DIALECT)})", dialect=DIALECT)
        strftime = exp.maybe_parse(DuckDB().generator().format_time(parse), dialect="duckdb")  # the format in DuckDB's terms
        call.replace(exp.cast(exp.Anonymous(this="TRY_STRPTIME", expressions=[text, strftime]), "TIMESTAMPTZ"))
    for at_zone in query.find_all(exp.AtTimeZone):
        cast = at_zone.this
        if isinstance(cast, exp.Cast) and cast.to.this == exp.DataType.Type.TIMESTAMP:
            cast.set("to", exp.DataType.build("TIMESTAMPTZ"))
    for count_if in list(query.find_all(exp.CountIf)):
        count_if.replace(exp.Count(this=exp.If(this=count_if.this.copy(), true=exp.Literal.number(1))))
    for parse in list(query.find_all(exp.StrToTime)):
        parse.replace(exp.cast(parse.copy(), "TIMESTAMPTZ"))
    return query.sql("duckdb")


def _condition(condition: str) -> str:
    """A Databricks SQL condition in DuckDB's dialect."""
    return to_duckdb(exp.maybe_parse(condition, dialect=DIALECT))


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
    return (
        f"SELECT {', '.join(columns)}, {rescued} AS {RESCUED_DATA}, "
        f"{{'file_path': {_quote(str(path))}}} AS {FILE_METADATA} "
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
            connection.execute("CREATE SCHEMA IF NOT EXISTS _pipeline")
            connection.execute(f"CREATE TABLE IF NOT EXISTS {_FILES_READ} (reader VARCHAR, file VARCHAR, rows BIGINT)")
            updates = []
            for table in tables:
                connection.execute(f"CREATE SCHEMA IF NOT EXISTS {table.layer}")
                if full_refresh and table.kind == "streaming table" and self._resettable(table):
                    connection.execute(f"DROP TABLE IF EXISTS {table.name}")
                    connection.execute(f"DELETE FROM {_FILES_READ} WHERE reader = ?", [table.name])
                if table.kind == "view":
                    connection.execute(f"CREATE OR REPLACE VIEW {table.name} AS {to_duckdb(table.query)}")
                    updates.append(TableUpdate(table.name, self._count(connection, table)))
                elif table.cdc:
                    updates.append(self._apply_changes(connection, table))
                elif table.read_files and table.kind == "streaming table":
                    updates.append(self._ingest(connection, table, ingestion_dates))
                elif table.kind == "streaming table":
                    updates.append(self._append_stream(connection, table))
                else:
                    updates.append(self._recompute(connection, table))
                log.info(f"{table.name}: {updates[-1].row_count} rows")
            connection.execute("COMMIT")
        log.info(f"{COMMITTED} {self.database}")  # written and checkpointed: the SQL's end
        return updates

    @staticmethod
    def _resettable(table: PipelineTable) -> bool:
        return table.properties.get("pipelines.reset.allowed", "true").lower() != "false"

    def _exists(self, connection: duckdb.DuckDBPyConnection, table: PipelineTable) -> bool:
        return bool(connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [table.layer, table.table],
        ).fetchone()[0])

    # --- landed files ---------------------------------------------------------------------------------

    def _landed_file(self, path: Path) -> dict | None:
        """The manifest entry that vouches for ``path``, or None when no manifest names it."""
        manifest_path = path.with_name(MANIFEST)
        if not manifest_path.exists():
            return None
        return named_files(json.loads(manifest_path.read_text())).get(path.name)

    def _named_files(self, table: PipelineTable, skip: set[str] = frozenset()) -> list[Path]:
        """The landed files the table's read_files() path selects that a manifest vouches for (the
        ones in ``skip`` left out unchecked)."""
        return sorted(path for path in Path(self.landing_root).glob(table.read_files.glob)
                      if str(path) not in skip and self._landed_file(path) is not None)

    def _current_files(self, table: PipelineTable, ingestion_date: str) -> list[Path]:
        """The files of the current extract of ``ingestion_date`` that the table reads."""
        folder = Path(self.landing_root) / table.landing_table / f"ingestion_date={ingestion_date}"
        manifest_path = folder / MANIFEST
        if not manifest_path.exists():
            landed = sorted(folder.glob("*.csv")) if folder.exists() else []
            if landed:
                raise LandedFileError(
                    f"{landed[0].relative_to(self.landing_root)} has no manifest beside it: its extract did not "
                    "finish. Re-run the extract of that partition.")
            raise FileNotFoundError(f"{table.name}: no landed file for ingestion date {ingestion_date} under "
                                    f"{folder.parent}; run the extract first")
        current = json.loads(manifest_path.read_text())["files"]
        return [path for path in sorted(folder.glob(Path(table.read_files.glob).name)) if path.name in current]

    def _verify(self, path: Path) -> None:
        """Refuse a file its manifest does not describe byte for byte."""
        relative = path.relative_to(self.landing_root)
        if not path.with_name(MANIFEST).exists():
            raise LandedFileError(f"{relative} has no manifest beside it: its extract did not finish. "
                                  "Re-run the extract of that partition.")
        described = self._landed_file(path)
        actual = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        if described is None or {k: described[k] for k in actual} != actual:
            raise LandedFileError(
                f"{relative} does not match its manifest ({described} expected, {actual} found): "
                "it was changed after the extract wrote it. Re-run the extract of that partition.")

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

    def _relative(self, path: Path | str) -> str:
        return str(Path(path).relative_to(self.landing_root))

    def _checked_rows(self, table: PipelineTable, held: dict[str, int], files: Sequence[Path]) -> dict[str, int]:
        """{file: rows the table holds from it} for ``files``, each checked against its manifest."""
        rows = {}
        for path in files:
            expected = self._landed_file(path)["rows"]
            rows[self._relative(path)] = held.get(str(path), 0)
            if held.get(str(path), 0) != expected:
                raise LandedFileError(
                    f"{table.name} read {held.get(str(path), 0)} rows from {self._relative(path)}, "
                    f"its manifest counts {expected}: the file is not what the extract wrote.")
        return rows

    def _files_read(self, connection, reader: str) -> dict[str, int]:
        return dict(connection.execute(f"SELECT file, rows FROM {_FILES_READ} WHERE reader = ?", [reader]).fetchall())

    def _ingest(self, connection, table: PipelineTable, ingestion_dates: Sequence[str]) -> TableUpdate:
        """Streaming table over landed files: read every file a manifest vouches for that the table
        has not read yet, as Auto Loader does; the run's ingestion dates must have landed, and their
        current files are checked against their manifests again. Reports the rows held from each
        file of those dates' folders it has read."""
        run_files = [path for date in ingestion_dates for path in self._current_files(table, date)]
        read = self._files_read(connection, table.name)
        new = self._named_files(table, skip=set(read))
        for path in run_files:
            if str(path) in read:
                self._verify(path)
        if new:
            connection.execute(f"CREATE OR REPLACE TEMP TABLE landed_now AS {self._landed(table, new)}")
            counted = dict(connection.execute(f"SELECT {SOURCE_FILE}, count(*) FROM landed_now GROUP BY ALL").fetchall())
            self._checked_rows(table, counted, new)
            if self._exists(connection, table):
                connection.execute(f"INSERT INTO {table.name} BY NAME SELECT * FROM landed_now")
            else:
                connection.execute(f"CREATE TABLE {table.name} AS SELECT * FROM landed_now")
            connection.executemany(f"INSERT INTO {_FILES_READ} VALUES (?, ?, ?)",
                                   [(table.name, str(path), counted.get(str(path), 0)) for path in new])
            read.update({str(path): counted.get(str(path), 0) for path in new})
        elif not self._exists(connection, table):
            raise FileNotFoundError(f"{table.name}: nothing landed at {table.read_files.glob}; run the extract first")
        folders = {str(path.parent) for path in run_files}
        earlier = {self._relative(file): rows for file, rows in read.items()
                   if str(Path(file).parent) in folders and Path(file) not in run_files}
        return TableUpdate(table.name, self._count(connection, table),
                           rows_by_file={**earlier, **self._checked_rows(table, read, run_files)})

    # --- streams and AUTO CDC --------------------------------------------------------------------------

    def _new_rows(self, connection, reader: str, source: str) -> tuple[str, list[str]]:
        """A temporary table of the rows of ``source`` from the landed files ``reader`` has not
        read yet, and those files; they count as read once the refresh commits."""
        unread = [file for file, _ in connection.execute(
            f"SELECT file, rows FROM {_FILES_READ} WHERE reader = ? AND file NOT IN "
            f"(SELECT file FROM {_FILES_READ} WHERE reader = ?) ORDER BY file", [source, reader]).fetchall()]
        name = f"new_{source.replace('.', '_')}"
        files = ", ".join(_quote(f) for f in unread) or "NULL"
        connection.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {source} "
                           f"WHERE {SOURCE_FILE} IN ({files})")
        return name, unread

    def _mark_read(self, connection, reader: str, files: list[str]) -> None:
        if files:
            connection.executemany(f"INSERT INTO {_FILES_READ} VALUES (?, ?, NULL)", [(reader, f) for f in files])

    def _append_stream(self, connection, table: PipelineTable) -> TableUpdate:
        """Streaming table over streams: its query over the new rows of each table it streams
        (its other reads see whole tables), appended."""
        query = table.query.copy()
        read = {}
        for source in table.streams:
            read[source] = self._new_rows(connection, table.name, source)
        for relation in query.find_all(exp.Table):
            if is_stream(relation):
                new_rows, _ = read[f"{relation.db}.{relation.name}".lower()]
                relation.set("this", exp.to_identifier(new_rows))
                relation.set("db", None)
        connection.execute(f"CREATE OR REPLACE TEMP TABLE candidates AS {to_duckdb(query)}")
        total, expectations, keep = self._expect(connection, table)
        if self._exists(connection, table):
            connection.execute(f"INSERT INTO {table.name} BY NAME SELECT * FROM candidates WHERE {keep}")
        else:
            connection.execute(f"CREATE TABLE {table.name} AS SELECT * FROM candidates WHERE {keep}")
        for _, files in read.values():
            self._mark_read(connection, table.name, files)
        return TableUpdate(table.name, self._count(connection, table), expectations)

    def _apply_changes(self, connection, table: PipelineTable) -> TableUpdate:
        """AUTO CDC: rebuild the keys the new changes touch from every change of those keys."""
        cdc = table.cdc
        new_rows, files = self._new_rows(connection, table.name, cdc.source)
        keys = ", ".join(_ident(k) for k in cdc.keys)
        columns = [name for name, _ in table.columns if name not in (START_AT, END_AT)]
        if not self._exists(connection, table):
            connection.execute(f"CREATE TABLE {table.name} AS SELECT {', '.join(_ident(c) for c in columns)}"
                               + (f", {_ident(cdc.sequence_by)} AS {START_AT}, {_ident(cdc.sequence_by)} AS {END_AT}"
                                  if cdc.scd_type == 2 else "") + f" FROM {cdc.source} WHERE false")
        connection.execute(f"CREATE OR REPLACE TEMP TABLE touched AS SELECT DISTINCT {keys} FROM {new_rows}")
        connection.execute(
            f"CREATE OR REPLACE TEMP TABLE changes AS SELECT *, "
            f"coalesce(({_condition(cdc.delete_when) if cdc.delete_when else 'false'}), false) AS __delete, "
            f"row_number() OVER (PARTITION BY {keys} ORDER BY {_ident(cdc.sequence_by)}, _ingestion_date, "
            f"{SOURCE_FILE}) AS __n FROM {cdc.source} SEMI JOIN touched USING ({keys})")
        connection.execute(f"DELETE FROM {table.name} WHERE ({keys}) IN (SELECT ({keys}) FROM touched)")
        listed = ", ".join(_ident(c) for c in columns)
        if cdc.scd_type == 1:
            connection.execute(
                f"CREATE OR REPLACE TEMP TABLE candidates AS SELECT {listed} FROM changes "
                f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY __n DESC) = 1 AND NOT __delete")
        else:
            connection.execute(f"CREATE OR REPLACE TEMP TABLE candidates AS {_history(cdc, columns)}")
        _, expectations, keep = self._expect(connection, table)  # over the rows the flow writes, as DLT counts them
        connection.execute(f"INSERT INTO {table.name} BY NAME SELECT * FROM candidates WHERE {keep}")
        self._mark_read(connection, table.name, files)
        return TableUpdate(table.name, self._count(connection, table), expectations)

    # --- materialized views ---------------------------------------------------------------------------

    def _recompute(self, connection, table: PipelineTable) -> TableUpdate:
        """Materialized view: recompute, then apply the expectations, all counted in one scan."""
        files = self._named_files(table) if table.read_files else []
        if table.read_files and not files:
            raise FileNotFoundError(f"{table.name}: nothing landed at {table.read_files.glob}; run the extract first")
        select = self._landed(table, files) if files else to_duckdb(table.query)
        connection.execute(f"CREATE OR REPLACE TEMP TABLE candidates AS {select}")
        total, expectations, keep = self._expect(connection, table)
        connection.execute(f"CREATE OR REPLACE TABLE {table.name} AS SELECT * FROM candidates WHERE {keep}")
        rows_by_file = {}
        if files:
            held = dict(connection.execute(f"SELECT {SOURCE_FILE}, count(*) FROM {table.name} GROUP BY ALL").fetchall())
            rows_by_file = self._checked_rows(table, held, files)
        return TableUpdate(table.name, self._count(connection, table), expectations, rows_by_file=rows_by_file)

    def _expect(self, connection, table: PipelineTable) -> tuple[int, tuple[ExpectationResult, ...], str]:
        """Count each expectation over the temporary table ``candidates``; fail the update on a
        failing FAIL UPDATE expectation. Returns the rows, the results, and the condition of the
        rows to keep (DROP ROW expectations)."""
        if not table.expectations:
            return 0, (), "true"
        passes = [f"coalesce(({_condition(e.condition)}), false)" for e in table.expectations]
        keep = " AND ".join(p for p, e in zip(passes, table.expectations, strict=True) if e.action == "drop") or "true"
        total, *passed = connection.execute(
            "SELECT count(*), " + ", ".join(f"count(*) FILTER ({p})" for p in passes) + " FROM candidates"
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
        return total, tuple(results), keep

    def _count(self, connection, table: PipelineTable) -> int:
        return connection.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]


def _history(cdc: AutoCdc, columns: list[str]) -> str:
    """SCD type 2 over the temporary table ``changes`` (every change of the touched keys, numbered
    ``__n`` in sequence order): one row per run of versions whose tracked columns are equal, holding
    the run's last version, from the sequence of its first (``__START_AT``) to the sequence of the
    change that ended it (``__END_AT``: the next run's first version, or a delete)."""
    keys = ", ".join(_ident(k) for k in cdc.keys)
    tracked = cdc.track_history or tuple(c for c in columns if c not in cdc.keys)
    tracked_row = "row(" + ", ".join(_ident(c) for c in tracked) + ")"
    by_key = f"PARTITION BY {keys} ORDER BY __n"
    listed = ", ".join(_ident(c) for c in columns)
    return f"""
        WITH marked AS (
            SELECT *, NOT __delete AND coalesce(lag(__delete) OVER ({by_key}) OR
                       lag({tracked_row}) OVER ({by_key}) IS DISTINCT FROM {tracked_row}, true) AS __opens
            FROM changes
        ), segmented AS (
            SELECT *, sum(CAST(__opens OR __delete AS INT)) OVER ({by_key} ROWS UNBOUNDED PRECEDING) AS __segment
            FROM marked
        ), segments AS (
            SELECT *,
                   first_value({_ident(cdc.sequence_by)}) OVER (PARTITION BY {keys}, __segment ORDER BY __n) AS {START_AT},
                   row_number() OVER (PARTITION BY {keys}, __segment ORDER BY __n DESC) AS __from_last
            FROM segmented
            WHERE __segment > 0
        ), ends AS (
            SELECT *, lead({START_AT}) OVER (PARTITION BY {keys} ORDER BY __segment) AS {END_AT}
            FROM segments
            WHERE __from_last = 1
        )
        SELECT {listed}, {START_AT}, {END_AT} FROM ends WHERE NOT __delete"""
