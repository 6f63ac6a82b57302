"""The DLT pipeline's own SQL on local Spark, to hold the DuckDB engine's tables against what
Spark computes (test_spark_parity.py).

Open-source Spark has no DLT and no Auto Loader, so what they add is done here, each as Databricks
documents it, and nothing else:
- ``read_files``: each landed file is read with the CSV options the SQL declares; the declared
  schema's columns as text, any other column rescued into ``_rescued_data`` as JSON (schema
  evolution mode "rescue"); ``_metadata`` is Spark's own file metadata column.
- a streaming table appends, on each update, the files it has not read yet (landed files are
  immutable: each is read once); a query's ``STREAM(table)`` sees the rows that table took from
  files the reader has not read yet, its other reads the whole table.
- AUTO CDC: Spark 4's Declarative Pipelines run AUTO CDC only into a table format with row-level
  MERGE (Delta), which pyspark does not ship, so the target is computed here in plain Spark SQL
  from every change of the source, as the documentation states the result (the latest change of a
  key unless it is a delete; for SCD type 2, a version per run of changes whose tracked columns
  are equal). The DuckDB engine applies the same semantics incrementally, per touched key: two
  formulations that must agree.
- views are Spark views; expectations are counted per expectation, then the rows dropped or the
  update failed.
The session takes the ``spark.*`` settings of the pipeline's configuration in the bundle.
"""

import json
import operator
from functools import reduce
from pathlib import Path

import sqlglot
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from sqlglot import exp

from ecomm_assets.lakehouse.engine import ExpectationResult, TableUpdate
from ecomm_assets.lakehouse.pipeline_sql import (
    DIALECT,
    END_AT,
    FILE_METADATA,
    LANDED,
    RESCUED_DATA,
    SOURCE_FILE,
    START_AT,
    PipelineTable,
    is_stream,
    pipeline_settings,
    pipeline_tables,
)

# read_files options that are not the CSV reader's: what to read, and how Auto Loader streams it
_NOT_CSV_OPTIONS = {"format", "schema", "schemaEvolutionMode"}


def pipeline_spark_settings() -> dict[str, str]:
    """The ``spark.*`` keys of batch_ecomm_pipeline's configuration in the bundle."""
    configuration = pipeline_settings().get("configuration", {})
    return {k: str(v) for k, v in configuration.items() if k.startswith("spark.")}


def spark_session(warehouse: Path) -> SparkSession:
    builder = (SparkSession.builder.master("local[2]").appName("dlt-parity")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.warehouse.dir", str(warehouse)))
    for key, value in pipeline_spark_settings().items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def cdc_sql(table: PipelineTable) -> str:
    """The AUTO CDC target ``table`` computed from every change of its source, in Spark SQL."""
    cdc = table.cdc
    columns = ", ".join(f"`{name}`" for name, _ in table.columns if name not in (START_AT, END_AT))
    keys = ", ".join(f"`{k}`" for k in cdc.keys)
    order = f"`{cdc.sequence_by}`, _ingestion_date, {SOURCE_FILE}"
    deleted = f"coalesce(({cdc.delete_when}), false)" if cdc.delete_when else "false"
    if cdc.scd_type == 1:
        latest_first = ", ".join(f"{c} DESC" for c in order.split(", "))
        return (f"SELECT {columns} FROM (SELECT *, {deleted} AS _is_delete, row_number() OVER "
                f"(PARTITION BY {keys} ORDER BY {latest_first}) AS _from_last FROM {cdc.source}) "
                f"WHERE _from_last = 1 AND NOT _is_delete")
    tracked = "struct(" + ", ".join(f"`{c}`" for c in cdc.track_history) + ")"
    target = [f"`{name}`" for name, _ in table.columns if name not in (START_AT, END_AT)]
    # A change opens a version when it is no delete and the change before it was a delete or held
    # other tracked values; a version ends where the next version opens or a delete comes, and
    # holds the values of the last change before that.
    return f"""
        WITH changes AS (
            SELECT *, {deleted} AS _is_delete, {tracked} AS _tracked FROM {cdc.source}
        ), marked AS (
            SELECT *, NOT _is_delete AND coalesce(lag(_is_delete) OVER key_order
                                                  OR NOT lag(_tracked) OVER key_order <=> _tracked, true) AS _opens
            FROM changes
            WINDOW key_order AS (PARTITION BY {keys} ORDER BY {order})
        ), boundaries AS (
            SELECT *, lead(`{cdc.sequence_by}`) OVER (PARTITION BY {keys} ORDER BY {order}) AS _next_at
            FROM marked WHERE _opens OR _is_delete
        ), versions AS (
            SELECT {keys}, `{cdc.sequence_by}` AS {START_AT}, _next_at AS {END_AT} FROM boundaries WHERE _opens
        ), valued AS (
            SELECT {", ".join(f"last.{c}" for c in target)}, versions.{START_AT}, versions.{END_AT},
                   row_number() OVER (PARTITION BY {", ".join(f"versions.`{k}`" for k in cdc.keys)}, versions.{START_AT}
                                      ORDER BY {", ".join(f"last.{c} DESC" for c in order.split(", "))}) AS _from_last
            FROM versions JOIN changes AS last
              ON {" AND ".join(f"last.`{k}` = versions.`{k}`" for k in cdc.keys)} AND NOT last._is_delete
             AND last.`{cdc.sequence_by}` >= versions.{START_AT}
             AND (versions.{END_AT} IS NULL OR last.`{cdc.sequence_by}` < versions.{END_AT})
        )
        SELECT {", ".join(target)}, {START_AT}, {END_AT} FROM valued WHERE _from_last = 1"""


class SparkPipeline:
    """The pipeline's tables in Spark's catalog (schema = layer), updated like a triggered DLT
    pipeline over the landing folder ``landing_root``."""

    def __init__(self, spark: SparkSession, landing_root: Path):
        self.spark = spark
        self.landing_root = landing_root
        self.read: dict[str, set] = {}  # per streaming table: the landed files it has read

    def update(self) -> list[TableUpdate]:
        """One update of every table, in pipeline order."""
        return [self._refresh(table) for table in pipeline_tables()]

    def rows(self, statement: str) -> list[tuple]:
        return [tuple(row) for row in self.spark.sql(statement).collect()]

    def _refresh(self, table: PipelineTable) -> TableUpdate:
        self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {table.layer}")
        if table.kind == "view":
            self.spark.sql(f"CREATE OR REPLACE VIEW {table.name} AS {table.query.sql(DIALECT)}")
            return TableUpdate(table.name, self.spark.table(table.name).count())
        if table.cdc:
            result = self._sql(cdc_sql(table))
        elif table.read_files:
            files = sorted(self.landing_root.glob(table.read_files.glob))
            if table.kind == "streaming table":
                files = self._unread(table.name, [str(f) for f in files])
            schema = list(table.read_files.schema)
            landed = None
            for file in files:
                one = self._read_file(Path(file), table.read_files.options, schema)
                landed = one if landed is None else landed.unionByName(one)
            if landed is None:  # nothing new: the streaming table stays as it is
                return TableUpdate(table.name, self.spark.table(table.name).count())
            landed.createOrReplaceTempView(LANDED)
            result = self._sql(self._with_landed_columns(table, schema + [RESCUED_DATA]))
        else:
            result = self._sql(self._with_streams(table))
        mode = "append" if table.kind == "streaming table" and not table.cdc else "overwrite"
        result, expectations = self._expect(table, result)
        result.write.mode(mode).saveAsTable(table.name)
        return TableUpdate(table.name, self.spark.table(table.name).count(), expectations)

    def _sql(self, statement: str) -> DataFrame:
        return self.spark.sql(statement).localCheckpoint()  # evaluated now, before its inputs change

    def _unread(self, reader: str, files: list[str]) -> list[str]:
        seen = self.read.setdefault(reader, set())
        new = [f for f in files if f not in seen]
        seen.update(new)
        return new

    def _with_landed_columns(self, table: PipelineTable, landed_columns: list[str]) -> str:
        """The query with read_files() replaced by the view LANDED, whose ``*`` holds
        ``landed_columns`` (not ``_metadata``)."""
        query = table.query.copy()
        query.set("expressions", [column for select in query.selects for column in (
            [exp.column(c) for c in landed_columns] if isinstance(select, exp.Star) else [select])])
        return query.sql(DIALECT)

    def _with_streams(self, table: PipelineTable) -> str:
        """The query with each table it streams replaced by a view of the rows that table took from
        files this reader has not read yet."""
        query = table.query.copy()
        for relation in query.find_all(exp.Table):
            if is_stream(relation):
                source = f"{relation.db}.{relation.name}"
                view = f"new_{source.replace('.', '_')}"
                files = [row[0] for row in self.spark.sql(f"SELECT DISTINCT {SOURCE_FILE} FROM {source}").collect()]
                unread = self._unread(table.name, files)
                self.spark.table(source).where(F.col(SOURCE_FILE).isin(unread)).createOrReplaceTempView(view)
                relation.set("this", exp.to_identifier(view))
                relation.set("db", None)
        return query.sql(DIALECT)

    def _read_file(self, file: Path, options: dict[str, str], schema: list[str]) -> DataFrame:
        """One landed file as read_files() reads it in rescue mode."""
        csv = {k: v for k, v in options.items() if k not in _NOT_CSV_OPTIONS}
        raw = self.spark.read.options(**csv).csv(str(file)).select("*", FILE_METADATA)
        header = [c for c in raw.columns if c != FILE_METADATA]
        extras = [c for c in header if c not in schema]
        rescued = F.lit(None).cast("string")
        if extras:
            present = reduce(operator.or_, [F.col(f"`{c}`").isNotNull() for c in extras])
            rescued = F.when(present, F.to_json(F.struct(*[F.col(f"`{c}`") for c in extras],
                                                         F.col(f"{FILE_METADATA}.file_path").alias("_file_path"))))
        return raw.select(
            *[F.col(f"`{c}`") if c in header else F.lit(None).cast("string").alias(c) for c in schema],
            rescued.alias(RESCUED_DATA),
            F.struct(F.col(f"{FILE_METADATA}.file_path").alias("file_path")).alias(FILE_METADATA),
        )

    def _expect(self, table: PipelineTable, result: DataFrame) -> tuple[DataFrame, tuple[ExpectationResult, ...]]:
        """Count each expectation's passed and failed rows; drop or fail as declared."""
        if not table.expectations:
            return result, ()
        result.createOrReplaceTempView("candidates")
        passes = [f"coalesce(({e.condition}), false)" for e in table.expectations]
        keep = " AND ".join(p for p, e in zip(passes, table.expectations, strict=True) if e.action == "drop") or "true"
        total, *passed = self.spark.sql(
            "SELECT count(*), " + ", ".join(f"count_if({p})" for p in passes) + " FROM candidates").first()
        results = []
        for expectation, passed_records in zip(table.expectations, passed, strict=True):
            if expectation.action == "fail" and passed_records < total:
                raise RuntimeError(f"{table.name}: expectation {expectation.name} failed on "
                                   f"{total - passed_records} rows; the update fails")
            results.append(ExpectationResult(expectation.name, passed_records, total - passed_records))
        return self.spark.sql(f"SELECT * FROM candidates WHERE {keep}"), tuple(results)


def kpi_query(compiled_duckdb_sql: str) -> str:
    """A dbt model compiled for DuckDB (``"ecomm_dw"."gold"."t"``) as Databricks SQL over Spark's
    catalog (``gold.t``): the model's own SQL, only the relation names rewritten."""
    query = sqlglot.parse_one(compiled_duckdb_sql, read="duckdb")
    for table in query.find_all(exp.Table):
        table.set("catalog", None)
    return query.sql(DIALECT)


def normalised(value, landing_root: Path):
    """A value as both engines can agree on it: file paths relative to the landing root, rescued
    JSON parsed (its nulls left out, as Spark's to_json leaves them out)."""
    if isinstance(value, str) and str(landing_root) in value:
        if value.startswith("{"):
            data = json.loads(value)
            return {k: normalised(v, landing_root) for k, v in data.items() if v is not None}
        return value.split(str(landing_root), 1)[1]
    return value
