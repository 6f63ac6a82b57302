"""The DLT pipeline's own SQL on local Spark, to hold the DuckDB engine's tables against what
Spark computes (test_spark_parity.py).

Open-source Spark has no DLT and no Auto Loader, so what they add is done here, each as Databricks
documents it, and nothing else:
- ``read_files``: each landed file is read with the CSV options the SQL declares; the declared
  schema's columns as text, any other column rescued into ``_rescued_data`` as JSON (schema
  evolution mode "rescue"); ``_metadata`` is Spark's own file metadata column.
- a streaming table appends, on each update, the files it has not read yet; with
  ``allowOverwrites`` a file rewritten since is read again (a new version), without it never.
- expectations: counted per expectation, then the rows dropped or the update failed.
- ``QUALIFY`` (Databricks SQL, not Spark's) becomes a filter over a subquery.
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
    FILE_METADATA,
    LANDED,
    RESCUED_DATA,
    PipelineTable,
    pipeline_settings,
    pipeline_tables,
)

# read_files options that are not the CSV reader's: what to read, and how Auto Loader streams it
_NOT_CSV_OPTIONS = {"format", "schema", "schemaEvolutionMode", "allowOverwrites"}


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


def _without_qualify(select: exp.Select, names: list[str]) -> exp.Select:
    """``SELECT ... QUALIFY c`` as ``SELECT names FROM (SELECT ..., c AS _keep) WHERE _keep``."""
    condition = select.args.pop("qualify").this
    ctes = select.args.pop("with_", None)
    inner = select.select(exp.alias_(condition, "_keep"), copy=False).subquery("_qualified")
    outer = exp.select(*names).from_(inner).where("_keep")
    outer.set("with_", ctes)
    return outer


def spark_sql(table: PipelineTable, landed_columns: list[str]) -> str:
    """The table's query in SQL Spark runs: read_files() replaced by the view LANDED (whose
    ``*`` holds ``landed_columns``, not ``_metadata``), QUALIFY rewritten."""
    query = table.query.copy()
    if table.read_files:
        query.set("expressions", [column for select in query.selects for column in (
            [exp.column(c) for c in landed_columns] if isinstance(select, exp.Star) else [select])])
    for select in list(query.find_all(exp.Select)):
        if select.args.get("qualify"):
            names = [c for c, _ in table.columns] if select is query else select.named_selects
            rewritten = _without_qualify(select, names)
            if select is query:
                query = rewritten
            else:
                select.replace(rewritten)
    return query.sql(DIALECT)


class SparkPipeline:
    """The pipeline's tables in Spark's catalog (schema = layer), updated like a triggered DLT
    pipeline over the landing folder ``landing_root``."""

    def __init__(self, spark: SparkSession, landing_root: Path):
        self.spark = spark
        self.landing_root = landing_root
        self.read: dict[str, set] = {}  # per streaming table: the (file, version) it has read

    def update(self) -> list[TableUpdate]:
        """One update of every table, in pipeline order."""
        return [self._refresh(table) for table in pipeline_tables()]

    def rows(self, statement: str) -> list[tuple]:
        return [tuple(row) for row in self.spark.sql(statement).collect()]

    def _refresh(self, table: PipelineTable) -> TableUpdate:
        self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {table.layer}")
        if table.read_files:
            options = table.read_files.options
            files = sorted(self.landing_root.glob(table.read_files.glob))
            if table.kind == "streaming table":
                version = (lambda f: (f, f.stat().st_mtime_ns // 1_000_000)) \
                    if options.get("allowOverwrites") == "true" else (lambda f: f)
                seen = self.read.setdefault(table.name, set())
                files = [f for f in files if version(f) not in seen]
                seen.update(version(f) for f in files)
            schema = list(table.read_files.schema)
            landed = None
            for file in files:
                one = self._read_file(file, options, schema)
                landed = one if landed is None else landed.unionByName(one)
            if landed is None:  # nothing new: the streaming table stays as it is
                return TableUpdate(table.name, self.spark.table(table.name).count())
            landed.createOrReplaceTempView(LANDED)
            result = self.spark.sql(spark_sql(table, schema + [RESCUED_DATA]))
        else:
            result = self.spark.sql(spark_sql(table, []))
        mode = "append" if table.kind == "streaming table" else "overwrite"
        result, expectations = self._expect(table, result)
        result.write.mode(mode).saveAsTable(table.name)
        return TableUpdate(table.name, self.spark.table(table.name).count(), expectations)

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
            F.struct(F.col(f"{FILE_METADATA}.file_path").alias("file_path"),
                     F.col(f"{FILE_METADATA}.file_modification_time").alias("file_modification_time"))
            .alias(FILE_METADATA),
        )

    def _expect(self, table: PipelineTable, result: DataFrame) -> tuple[DataFrame, tuple[ExpectationResult, ...]]:
        """Count each expectation's passed and failed rows; drop or fail as declared."""
        if not table.expectations:
            return result, ()
        result = result.localCheckpoint()  # evaluated once: counted and written the same
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
