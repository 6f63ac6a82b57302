"""The local lakehouse: a DuckDB file that executes the DLT pipeline's own SQL.

sqlglot transpiles each query from Databricks SQL to DuckDB. Two things DLT does are done here by
hand: Auto Loader's ``read_files`` (CSV files of the requested ingestion dates, every value as
text, columns outside the declared schema rescued into ``_rescued_data`` as JSON) and the
expectations (failures counted per expectation, then dropped, kept or the update failed).
A refresh is one transaction: it lands whole or not at all.
"""

import csv
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import duckdb
from sqlglot import exp

from ecomm_assets.lakehouse.engine import ExpectationResult, LakehouseEngine, TableUpdate
from ecomm_assets.lakehouse.pipeline_sql import (
    DIALECT,
    FILE_METADATA,
    RESCUED_DATA,
    PipelineTable,
    read_files_call,
    read_files_options,
    read_files_schema,
)

_SAMPLE_SIZE = 5


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _landed_file_relation(path: Path, schema: list[str]) -> str:
    """One CSV file as read_files() in rescue mode reads it: the schema's columns as text and the
    others in ``_rescued_data``."""
    with path.open(newline="") as f:
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
        f"FROM read_csv({_quote(str(path))}, header = true, columns = {all_columns})"
    )


class DuckDBLakehouse(LakehouseEngine):
    """The pipeline's tables in a local DuckDB file (catalog = file name, schema = layer)."""

    database: str
    landing_root: str  # the landing zone's ecomm_db_extracts/daily_extracts folder

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
                if table.landing_table and full_refresh:
                    connection.execute(f"DROP TABLE IF EXISTS {table.layer}.{table.table}")
                    updates.append(self._ingest(connection, table, self._landed_dates(table)))
                elif table.landing_table:
                    updates.append(self._ingest(connection, table, ingestion_dates))
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

    def _landed_dates(self, table: PipelineTable) -> list[str]:
        folder = Path(self.landing_root) / table.landing_table
        return sorted(p.name.split("=", 1)[1] for p in folder.glob("ingestion_date=*"))

    def _ingest(self, connection, table: PipelineTable, ingestion_dates: Sequence[str]) -> TableUpdate:
        """Streaming table: replace the rows of the given ingestion dates with their landed files."""
        call = read_files_call(table.query)
        if read_files_options(call)[1].get("format", "").lower() != "csv":
            raise ValueError(f"{table.name}: the local engine reads CSV landing files only")
        schema = list(read_files_schema(call))
        folder = Path(self.landing_root) / table.landing_table
        files = [folder / f"ingestion_date={date}" / f"{table.landing_table}.csv" for date in ingestion_dates]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise FileNotFoundError(f"{table.name}: no landed file for {missing}; run the extract first")
        landed = " UNION ALL BY NAME ".join(_landed_file_relation(f, schema) for f in files)

        query = table.query.copy()
        read_files_call(query).parent.replace(exp.to_table("landed"))
        for star in query.selects:
            if isinstance(star, exp.Star):
                star.set("except_", [exp.column(FILE_METADATA)])
        select = f"WITH landed AS ({landed}) {query.sql('duckdb')}"
        target = f"{table.layer}.{table.table}"
        if self._exists(connection, table):
            dates = ", ".join(f"DATE {_quote(d)}" for d in ingestion_dates)
            connection.execute(f"DELETE FROM {target} WHERE _ingestion_date IN ({dates})")
            connection.execute(f"INSERT INTO {target} BY NAME {select}")
        else:
            connection.execute(f"CREATE TABLE {target} AS {select}")
        return TableUpdate(table.name, connection.execute(f"SELECT count(*) FROM {target}").fetchone()[0])

    def _recompute(self, connection, table: PipelineTable) -> TableUpdate:
        """Materialized view: recompute, then apply the expectations, all counted in one scan."""
        target = f"{table.layer}.{table.table}"
        if not table.expectations:
            connection.execute(f"CREATE OR REPLACE TABLE {target} AS {table.query.sql('duckdb')}")
            return TableUpdate(table.name, connection.execute(f"SELECT count(*) FROM {target}").fetchone()[0])

        connection.execute(f"CREATE OR REPLACE TEMP TABLE candidates AS {table.query.sql('duckdb')}")
        passes = [f"coalesce(({exp.maybe_parse(e.condition, dialect=DIALECT).sql('duckdb')}), false)"
                  for e in table.expectations]
        keep = " AND ".join(p for p, e in zip(passes, table.expectations) if e.action == "drop") or "true"
        total, kept, *passed = connection.execute(
            f"SELECT count(*), count(*) FILTER ({keep}), "
            + ", ".join(f"count(*) FILTER ({p})" for p in passes) + " FROM candidates"
        ).fetchone()
        key = _ident(table.columns[0][0])
        results = []
        for expectation, condition, passed_records in zip(table.expectations, passes, passed):
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
        connection.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM candidates WHERE {keep}")
        return TableUpdate(table.name, kept, tuple(results))
