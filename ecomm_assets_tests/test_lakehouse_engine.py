"""The local engine runs DLT SQL as Databricks would: rescue mode, expectations, atomic updates."""

import json
import logging
from pathlib import Path

import duckdb
import pytest

from ecomm_assets.lakehouse.duckdb_engine import DuckDBLakehouse
from ecomm_assets.lakehouse.pipeline_sql import pipeline_tables, read_pipeline

log = logging.getLogger("test")
PIPELINE = {table.name: table for table in pipeline_tables()}


def land(root: Path, table: str, day: str, csv_text: str) -> None:
    folder = root / table / f"ingestion_date={day}"
    folder.mkdir(parents=True)
    (folder / f"{table}.csv").write_text(csv_text)


def query(engine: DuckDBLakehouse, sql: str) -> list[tuple]:
    with duckdb.connect(engine.database, read_only=True) as db:
        return db.execute(sql).fetchall()


@pytest.fixture
def engine(tmp_path) -> DuckDBLakehouse:
    return DuckDBLakehouse(database=str(tmp_path / "ecomm_dw.duckdb"), landing_root=str(tmp_path / "landing"))


def test_bronze_rescues_unexpected_columns_and_keeps_every_row(engine):
    # A source column was added (loyalty_tier) and one was removed (country).
    land(Path(engine.landing_root), "customers", "2026-03-01",
         "customer_id,first_name,last_name,email,city,loyalty_tier,created_at,updated_at\n"
         "1,Ann,Lee,ann@x.com,Bangkok,gold,2026-03-01 01:00:00+00,2026-03-01 01:00:00+00\n"
         "2,Bo,Kim,bo@x.com,Hanoi,,2026-03-01 02:00:00+00,2026-03-01 02:00:00+00\n")
    [update] = engine.refresh([PIPELINE["bronze.customers"]], ["2026-03-01"], log)

    assert update.row_count == 2
    rows = query(engine, "SELECT customer_id, country, _rescued_data, _source_file, _ingestion_date::VARCHAR"
                         " FROM bronze.customers ORDER BY customer_id")
    (one, country, rescued, source_file, ingestion_date), two = rows
    assert (one, country, ingestion_date) == ("1", None, "2026-03-01")
    assert json.loads(rescued) == {"loyalty_tier": "gold", "_file_path": source_file}
    assert source_file.endswith("customers/ingestion_date=2026-03-01/customers.csv")
    assert two[2] is None  # nothing to rescue


def test_rows_with_an_unparsable_key_are_each_dropped_and_counted(engine):
    land(Path(engine.landing_root), "customers", "2026-03-01",
         "customer_id,first_name,last_name,email,city,country,created_at,updated_at\n"
         "1,Ann,Lee,ann@x.com,Bangkok,Thailand,2026-03-01 01:00:00+00,2026-03-01 01:00:00+00\n"
         "1,Ann,Lee,ann@x.com,Phuket,Thailand,2026-03-01 01:00:00+00,2026-03-01 05:00:00+00\n"
         "x1,Bad,Id,bad@x.com,Hanoi,Vietnam,2026-03-01 01:00:00+00,2026-03-01 01:00:00+00\n"
         ",No,Id,none@x.com,Hanoi,Vietnam,2026-03-01 01:00:00+00,2026-03-01 01:00:00+00\n"
         ",No,Id,none@x.com,Hanoi,Vietnam,2026-03-01 01:00:00+00,2026-03-01 01:00:00+00\n")
    _, silver = engine.refresh([PIPELINE["bronze.customers"], PIPELINE["silver.dim_customer"]],
                               ["2026-03-01"], log)

    [valid_id] = silver.expectations
    assert (silver.row_count, valid_id.passed_records, valid_id.failed_records) == (1, 1, 3)
    assert query(engine, "SELECT customer_id, city FROM silver.dim_customer") == [(1, "Phuket")]


def test_a_fail_update_expectation_rolls_the_whole_refresh_back(engine, tmp_path):
    sql = tmp_path / "pipeline.sql"
    sql.write_text("""
        CREATE OR REFRESH STREAMING TABLE bronze.products
        AS SELECT *, CAST(regexp_extract(_metadata.file_path, 'ingestion_date=([0-9-]+)', 1) AS DATE) AS _ingestion_date
        FROM STREAM read_files('${landing_root}/products/', format => 'csv', header => true,
                               schema => 'product_id STRING, unit_price STRING', schemaEvolutionMode => 'rescue');
        CREATE OR REFRESH MATERIALIZED VIEW silver.prices (
          CONSTRAINT non_negative EXPECT (unit_price >= 0) ON VIOLATION FAIL UPDATE
        ) COMMENT 'Prices; it''s strict.'
        AS SELECT try_cast(product_id AS BIGINT) AS product_id, try_cast(unit_price AS DECIMAL(12, 2)) AS unit_price
        FROM bronze.products;
    """)
    bronze, prices = read_pipeline([sql])
    assert prices.comment == "Prices; it's strict."
    land(Path(engine.landing_root), "products", "2026-03-01", "product_id,unit_price\n1,10.00\n")
    land(Path(engine.landing_root), "products", "2026-03-02", "product_id,unit_price\n2,-1.00\n")
    engine.refresh([bronze, prices], ["2026-03-01"], log)

    with pytest.raises(RuntimeError, match=r"silver.prices: expectation non_negative failed on 1 rows"):
        engine.refresh([bronze, prices], ["2026-03-02"], log)
    assert query(engine, "SELECT product_id FROM bronze.products") == [("1",)]
    assert query(engine, "SELECT product_id, unit_price FROM silver.prices")[0][0] == 1


def test_a_missing_landing_partition_is_a_clear_error(engine):
    with pytest.raises(FileNotFoundError, match="no landed file .*ingestion_date=2026-03-09.*run the extract first"):
        engine.refresh([PIPELINE["bronze.orders"]], ["2026-03-09"], log)


def test_a_malformed_dlt_header_names_the_file_and_table(tmp_path):
    sql = tmp_path / "broken.sql"
    sql.write_text("CREATE OR REFRESH MATERIALIZED VIEW gold.x (CONSTRAINT oops (a > 0)) AS SELECT 1 AS a")
    with pytest.raises(ValueError, match=r"broken.sql: gold.x: not a DLT expectation"):
        read_pipeline([sql])


def test_a_full_refresh_reingests_every_landed_partition(engine):
    header = "customer_id,first_name,last_name,email,city,country,created_at,updated_at\n"
    for day, customer_id in [("2026-03-01", 1), ("2026-03-02", 2)]:
        land(Path(engine.landing_root), "customers", day,
             header + f"{customer_id},A,B,a@b.c,Bangkok,Thailand,{day} 01:00:00+00,{day} 01:00:00+00\n")
    engine.refresh([PIPELINE["bronze.customers"]], ["2026-03-02"], log)
    assert query(engine, "SELECT customer_id FROM bronze.customers") == [("2",)]

    [update] = engine.refresh([PIPELINE["bronze.customers"]], [], log, full_refresh=True)
    assert update.row_count == 2
