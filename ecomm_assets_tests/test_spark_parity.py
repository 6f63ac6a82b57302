"""Spark parity: the DLT pipeline's SQL, Bronze included, run on local Spark over the files the
extract landed, gives every table the DuckDB engine gives, row for row, with the same
expectation counts; the dbt metric models give the same numbers on both.

The data is the small shop with the bad-input catalog (text CSV must quote, line breaks, empty
strings and NULLs, an added source column, orders at midnight in Bangkok) and a day whose
average order value is a half cent. Spark's JVM runs in New York time, as a cluster in another
zone would: only the session time zone the pipeline's configuration pins makes its dates right.
"""

import os
import subprocess
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import sqlglot
from bad_inputs import BAD_INPUTS, HALF_CENT_DAY
from spark_pipeline import SparkPipeline, kpi_query, normalised, spark_session
from support import DAYS, FIRST_DAY, RUN_TIME_COLUMNS, SMALL_SHOP, Pipeline

from ecomm_assets.lakehouse.pipeline_sql import pipeline_tables
from ecomm_assets.metrics.dbt_cli import DBT_EXECUTABLE
from ecomm_assets.metrics.project import DBT_PROJECT_DIR
from ecomm_assets.source import demo_data

pytestmark = [pytest.mark.parity, pytest.mark.slow]
METRIC_MODELS = ["agg_sales_kpi", "agg_product_kpi", "agg_customer_kpi", "agg_customer_lifetime", "agg_customer_cohort",
                 "agg_product_performance", "agg_sales_anomalies"]


@pytest.fixture(scope="module")
def engines(postgres, tmp_path_factory):
    """The same landed files through the DuckDB engine (the real pipeline, one backfill of the
    five days) and through one update of the pipeline on Spark."""
    postgres.create_source_schema()
    with psycopg.connect(postgres.resource().conninfo()) as connection:
        demo_data.generate(connection, FIRST_DAY, FIRST_DAY + timedelta(days=len(DAYS)), SMALL_SHOP, seed=7)
        connection.execute(BAD_INPUTS)
        connection.execute(HALF_CENT_DAY)
    pipeline = Pipeline(tmp_path_factory.mktemp("parity"), postgres)
    result = pipeline.materialize(DAYS[0], DAYS[-1])
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TZ", "America/New_York")  # the JVM's default zone, read when it starts
        session = spark_session(tmp_path_factory.mktemp("spark_warehouse"))
    spark = SparkPipeline(session, pipeline.home / "landing/ecomm_db_extracts/daily_extracts")
    spark_updates = spark.update()
    yield pipeline, result, spark, spark_updates
    session.stop()


def _canonical(rows: list[tuple], landing_root: Path) -> list[str]:
    return sorted(repr(tuple(normalised(v, landing_root) for v in row)) for row in rows)


def instants(column: str, type_: str) -> list[tuple[str, bool]]:
    """(expression, is a timestamp) for the value of ``column``: a struct field by field."""
    data_type = sqlglot.exp.DataType.build(type_, dialect="databricks")
    if data_type.is_type("struct"):
        return [(f"{column}.{field.name}", field.args["kind"].sql("databricks") == "TIMESTAMP")
                for field in data_type.expressions]
    return [(column, type_ == "TIMESTAMP")]


def assert_same_tables(pipeline: Pipeline, spark: SparkPipeline) -> None:
    """Every pipeline table holds the same rows on both engines (timestamps compared as instants,
    to the microsecond; run-time stamps left out)."""
    for table in pipeline_tables():
        values = [value for name, type_ in table.columns if name not in RUN_TIME_COLUMNS
                  for value in instants(name, type_)]
        duckdb = pipeline.query("SELECT " + ", ".join(
            f"epoch_us({c})" if instant else c for c, instant in values) + f" FROM {table.name}")
        on_spark = spark.rows("SELECT " + ", ".join(
            f"unix_micros({c})" if instant else c for c, instant in values) + f" FROM {table.name}")
        duckdb, on_spark = _canonical(duckdb, spark.landing_root), _canonical(on_spark, spark.landing_root)
        only_duckdb = sorted(set(duckdb) - set(on_spark))[:3]
        only_spark = sorted(set(on_spark) - set(duckdb))[:3]
        assert duckdb == on_spark, (f"{table.name}: {len(duckdb)} rows on DuckDB, {len(on_spark)} on Spark; "
                                    f"only on DuckDB {only_duckdb}, only on Spark {only_spark}")


def test_spark_computes_every_table_and_expectation_as_duckdb_does(engines):
    pipeline, result, spark, spark_updates = engines

    assert_same_tables(pipeline, spark)
    on_spark = {(u.name, e.name): e.failed_records for u in spark_updates for e in u.expectations}
    on_duckdb = {(e.asset_key.to_user_string().replace("/", "."), e.check_name): e.metadata["failed_records"].value
                 for e in result.get_asset_check_evaluations() if e.partition == DAYS[0]
                 and "failed_records" in e.metadata}
    assert on_spark == on_duckdb
    # the bad inputs are there, as written: a name with a line break and quotes was one row
    assert spark.rows("SELECT first_name, city FROM silver.customers WHERE customer_id = 900001") == \
        [('Anne, "Annie"', "New\nYork")]
    assert spark.rows("SELECT order_id, order_date FROM silver.dim_orders WHERE order_id IN (900003, 900004) "
                      "ORDER BY 1") == [(900003, date(2026, 3, 3)), (900004, date(2026, 3, 2))]


def test_the_metrics_are_the_same_numbers_on_both_engines(engines, tmp_path):
    """dbt's models, compiled once, on DuckDB (dbt-duckdb) and on Spark; AOV rounds half up on both."""
    pipeline, _, spark, _ = engines
    subprocess.run([DBT_EXECUTABLE, "compile", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
                    "--profiles-dir", str(DBT_PROJECT_DIR), "--target", "local", "--target-path", str(tmp_path),
                    "--select", *METRIC_MODELS], check=True, env={**os.environ, "ECOMM_HOME": str(pipeline.home)})
    spark.spark.sql("CREATE DATABASE IF NOT EXISTS dbt_prod_metric")
    for model in METRIC_MODELS:  # in dependency order: a model may read one before it
        [compiled] = tmp_path.glob(f"compiled/**/{model}.sql")
        spark.spark.sql(f"CREATE OR REPLACE VIEW dbt_prod_metric.{model} AS {kpi_query(compiled.read_text())}")
        on_spark = spark.rows(f"SELECT * FROM dbt_prod_metric.{model}")
        assert sorted(on_spark) == sorted(pipeline.query(f"SELECT * FROM dbt_prod_metric.{model}")), model
    assert pipeline.query("SELECT revenue, order_count, avg_order_value FROM dbt_prod_metric.agg_sales_kpi "
                          "WHERE order_date = DATE '2026-02-20'") == [(Decimal("2.01"), 2, Decimal("1.01"))]


def test_a_re_extracted_partition_reaches_silver_on_both_engines(engines, postgres):
    """A change the source made without touching updated_at is extracted again by a backfill of
    its day into new files: Auto Loader reads them, and Silver takes the later extract's version."""
    pipeline, _, spark, _ = engines
    with psycopg.connect(postgres.resource().conninfo()) as connection:
        connection.execute("UPDATE customers SET city = 'Chiang Mai' WHERE customer_id = 900003")

    pipeline.materialize("2026-03-03")
    spark.update()

    assert_same_tables(pipeline, spark)
    assert spark.rows("SELECT city FROM silver.dim_customer WHERE customer_id = 900003") == [("Chiang Mai",)]
    assert spark.rows("SELECT count(DISTINCT _extracted_at) FROM bronze.customers "
                      "WHERE _ingestion_date = DATE '2026-03-03'") == [(2,)]
    assert spark.rows("SELECT city FROM silver.dim_customer_history WHERE customer_id = 900003 "
                      "ORDER BY valid_from") == [("Bangkok",), ("Chiang Mai",)]
