"""The local engine runs DLT SQL as Databricks would: rescue mode, expectations, atomic updates,
and only files that match their manifest."""

import csv
import io
import json
import logging
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import sqlglot

from ecomm_assets import environment
from ecomm_assets.extract.landing_zone import LocalLandingZone, data_file, key_snapshot_folder, partition_folder
from ecomm_assets.lakehouse.assets import lakehouse_tables
from ecomm_assets.lakehouse.duckdb_engine import DuckDBLakehouse, to_duckdb
from ecomm_assets.lakehouse.engine import LandedFileError
from ecomm_assets.lakehouse.pipeline_sql import pipeline_tables, read_pipeline
from ecomm_assets.source.postgres import source_tables

log = logging.getLogger("test")
PIPELINE = {table.name: table for table in pipeline_tables()}
CUSTOMERS = "customer_id,first_name,last_name,email,city,country,created_at,updated_at\n"


def land(zone: LocalLandingZone, table: str, day: str | None, csv_text: str) -> Path:
    """Land ``csv_text`` as the extract would: the partition file of ``day``, or the key snapshot."""
    def write(out):
        out.write(csv_text.encode())
        return len(list(csv.reader(io.StringIO(csv_text)))) - 1
    folder = partition_folder(table, day) if day else key_snapshot_folder(table)
    zone.land(folder, data_file(table), write, {})
    return Path(zone.extracts_root) / folder / data_file(table)


def query(engine: DuckDBLakehouse, sql: str) -> list[tuple]:
    with duckdb.connect(engine.database, read_only=True) as db:
        return db.execute(sql).fetchall()


@pytest.fixture
def zone(tmp_path) -> LocalLandingZone:
    return LocalLandingZone(root=str(tmp_path / "landing"))


@pytest.fixture
def engine(tmp_path, zone) -> DuckDBLakehouse:
    return DuckDBLakehouse(database=str(environment.lakehouse_database(tmp_path)), landing_root=zone.extracts_root)


def test_bronze_rescues_unexpected_columns_and_keeps_every_row(engine, zone):
    # A source column was added (loyalty_tier) and one was removed (country).
    land(zone, "customers", "2026-03-01",
         "customer_id,first_name,last_name,email,city,loyalty_tier,created_at,updated_at\n"
         "1,Ann,Lee,ann@x.com,Bangkok,gold,2026-03-01 01:00:00+00,2026-03-01 01:00:00+00\n"
         "2,Bo,Kim,bo@x.com,Hanoi,,2026-03-01 02:00:00+00,2026-03-01 02:00:00+00\n")
    [update] = engine.refresh([PIPELINE["bronze.customers"]], ["2026-03-01"], log)

    assert update.row_count == 2
    assert update.rows_by_file == {"customers/ingestion_date=2026-03-01/customers.csv": 2}
    rows = query(engine, "SELECT customer_id, country, _rescued_data, _source_file, _ingestion_date::VARCHAR"
                         " FROM bronze.customers ORDER BY customer_id")
    (one, country, rescued, source_file, ingestion_date), two = rows
    assert (one, country, ingestion_date) == ("1", None, "2026-03-01")
    assert json.loads(rescued) == {"loyalty_tier": "gold", "_file_path": source_file}
    assert source_file.endswith("customers/ingestion_date=2026-03-01/customers.csv")
    assert two[2] is None  # nothing to rescue


def test_silver_keeps_the_version_the_source_has_drops_deleted_keys_and_counts_bad_ones(engine, zone):
    land(zone, "customers", "2026-03-01", CUSTOMERS +
         '1,Ann,Lee,ann@x.com,Bangkok,Thailand,2026-03-01 01:00:00+00,2026-03-01 01:00:00+00\n'
         '1,Ann,Lee,ann@x.com,Phuket,Thailand,2026-03-01 01:00:00+00,2026-03-01 05:00:00+00\n'
         '2,Bo,Kim,"",Hanoi,Vietnam,2026-03-01 01:00:00+00,2026-03-01 01:00:00+00\n'
         '3,Cy,Ng,cy@x.com,Hanoi,Vietnam,2026-03-01 01:00:00+00,2026-03-01 01:00:00+00\n'
         'x1,Bad,Id,bad@x.com,Hanoi,Vietnam,2026-03-01 01:00:00+00,2026-03-01 01:00:00+00\n'
         ',No,Id,none@x.com,Hanoi,Vietnam,2026-03-01 01:00:00+00,2026-03-01 01:00:00+00\n')
    # The source now: customer 1 is back in Bangkok under a back-dated updated_at (landed by a later
    # partition), customer 3 was deleted.
    land(zone, "customers", "2026-03-02", CUSTOMERS +
         '1,Ann,Lee,ann@x.com,Bangkok,Thailand,2026-03-01 01:00:00+00,2026-03-01 03:00:00+00\n')
    land(zone, "customers", None, "customer_id,updated_at\n"
         "1,2026-03-01 03:00:00+00\n2,2026-03-01 01:00:00+00\n")
    with pytest.raises(FileNotFoundError, match="bronze.products_keys: nothing landed .*run the extract first"):
        engine.refresh([PIPELINE["bronze.products_keys"]], [], log)
    for table in ["products", "orders", "order_items"]:  # nothing else changed; the reconciliation reads them all
        key = source_tables()[table].primary_key
        land(zone, table, "2026-03-01", f"{key},updated_at\n")
        land(zone, table, None, f"{key},updated_at\n")
    silver = [t for t in pipeline_tables() if t.layer == "silver"]
    engine.refresh([t for t in pipeline_tables() if t.layer == "bronze"] + silver, ["2026-03-01"], log)
    engine.refresh([PIPELINE["bronze.customers"]], ["2026-03-02"], log)
    updates = {u.name: u for u in engine.refresh(silver, [], log)}

    [valid_id] = updates["silver.customers"].expectations
    assert (valid_id.passed_records, valid_id.failed_records) == (2, 2)
    assert query(engine, "SELECT customer_id, city, email FROM silver.dim_customer ORDER BY 1") == [
        (1, "Bangkok", "ann@x.com"), (2, "Hanoi", "")]  # an empty string stays one
    assert sorted(query(engine, "SELECT customer_id, _failed_rules, _source_file FROM silver.customers_quarantine"),
                  key=repr) == [(None, ["valid_id"],
                                 str(Path(zone.extracts_root) / "customers/ingestion_date=2026-03-01/customers.csv"))] * 2
    assert query(engine, "SELECT ingestion_date::VARCHAR, source_table, source_rows, silver_rows "
                         "FROM silver.source_reconciliation") == [("2026-03-01", "customers", 2, 2)]


def test_a_fail_update_expectation_rolls_the_whole_refresh_back(engine, zone, tmp_path):
    sql = tmp_path / "pipeline.sql"
    sql.write_text("""
        CREATE OR REFRESH STREAMING TABLE bronze.products
        AS SELECT *, _metadata.file_path AS _source_file, _metadata.file_modification_time AS _source_file_modified_at,
                  CAST(regexp_extract(_metadata.file_path, 'ingestion_date=([0-9-]+)', 1) AS DATE) AS _ingestion_date
        FROM STREAM read_files('${landing_root}/products/ingestion_date=*/products.csv', format => 'csv',
                               header => true, schema => 'product_id STRING, unit_price STRING',
                               schemaEvolutionMode => 'rescue');
        CREATE OR REFRESH MATERIALIZED VIEW silver.prices (
          CONSTRAINT non_negative EXPECT (unit_price >= 0) ON VIOLATION FAIL UPDATE
        ) COMMENT 'Prices; it''s strict.'
        AS SELECT try_cast(product_id AS BIGINT) AS product_id, try_cast(unit_price AS DECIMAL(12, 2)) AS unit_price
        FROM bronze.products;
    """)
    bronze, prices = read_pipeline([sql])
    assert prices.comment == "Prices; it's strict."
    land(zone, "products", "2026-03-01", "product_id,unit_price\n1,10.00\n")
    land(zone, "products", "2026-03-02", "product_id,unit_price\n2,-1.00\n")
    engine.refresh([bronze, prices], ["2026-03-01"], log)

    with pytest.raises(RuntimeError, match=r"silver.prices: expectation non_negative failed on 1 rows"):
        engine.refresh([bronze, prices], ["2026-03-02"], log)
    assert query(engine, "SELECT product_id FROM bronze.products") == [("1",)]
    assert query(engine, "SELECT product_id, unit_price FROM silver.prices")[0][0] == 1


def test_a_missing_landing_partition_is_a_clear_error(engine):
    with pytest.raises(FileNotFoundError,
                       match=r"no landed file for ingestion date\(s\) \['2026-03-09'\].*run the extract first"):
        engine.refresh([PIPELINE["bronze.orders"]], ["2026-03-09"], log)


@pytest.mark.parametrize("damage", [
    pytest.param(lambda path: path.write_bytes(path.read_bytes()[:-7]), id="cut short"),
    pytest.param(lambda path: path.write_bytes(path.read_bytes() + b"3,C,D,c@d.e,Hanoi,Vietnam,x,y\n"), id="row added"),
    pytest.param(lambda path: path.with_name("_manifest.json").unlink(), id="no manifest"),
])
def test_a_file_that_does_not_match_its_manifest_is_refused_by_name(engine, zone, damage):
    path = land(zone, "customers", "2026-03-01", CUSTOMERS +
                "1,Ann,Lee,ann@x.com,Bangkok,Thailand,2026-03-01 01:00:00+00,2026-03-01 01:00:00+00\n")
    damage(path)
    with pytest.raises(LandedFileError, match=r"customers/ingestion_date=2026-03-01/customers.csv .*Re-run the extract"):
        engine.refresh([PIPELINE["bronze.customers"]], ["2026-03-01"], log)


def test_rows_the_csv_reader_sees_differently_from_the_extract_fail_the_refresh(engine, zone):
    # A manifest that vouches for two rows where the file holds one: what a reader that splits or
    # merges records would produce.
    path = land(zone, "customers", "2026-03-01", CUSTOMERS +
                "1,Ann,Lee,ann@x.com,Bangkok,Thailand,2026-03-01 01:00:00+00,2026-03-01 01:00:00+00\n")
    manifest = json.loads(path.with_name("_manifest.json").read_text())
    manifest["files"]["customers.csv"]["rows"] = 2
    path.with_name("_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LandedFileError, match=r"bronze.customers read 1 rows from .*customers.csv, its manifest counts 2"):
        engine.refresh([PIPELINE["bronze.customers"]], ["2026-03-01"], log)


def test_a_full_refresh_reingests_every_landed_partition_and_nothing_else(engine, zone):
    for day, customer_id in [("2026-03-01", 1), ("2026-03-02", 2)]:
        land(zone, "customers", day,
             CUSTOMERS + f"{customer_id},A,B,a@b.c,Bangkok,Thailand,{day} 01:00:00+00,{day} 01:00:00+00\n")
    partition = Path(zone.extracts_root) / "customers/ingestion_date=2026-03-02"
    shutil.copytree(partition, partition.with_name("ingestion_date=2026-03-02.bak"))  # a copy someone made
    engine.refresh([PIPELINE["bronze.customers"]], ["2026-03-02"], log)
    assert query(engine, "SELECT customer_id FROM bronze.customers") == [("2",)]

    [update] = engine.refresh([PIPELINE["bronze.customers"]], [], log, full_refresh=True)
    assert update.row_count == 2
    assert sorted(update.rows_by_file) == ["customers/ingestion_date=2026-03-01/customers.csv",
                                           "customers/ingestion_date=2026-03-02/customers.csv"]


def test_order_date_is_the_bangkok_date_of_the_utc_instant(tmp_path):
    # 20:00 UTC on 2026-03-01 is 03:00 on 2026-03-02 in Bangkok.
    query_ = sqlglot.parse_one("SELECT to_date(from_utc_timestamp(ordered_at, 'Asia/Bangkok')) FROM t",
                               read="databricks")
    with duckdb.connect() as db:
        for zone_name in ["UTC", "America/New_York", "Asia/Tokyo"]:
            db.execute(f"SET TimeZone = '{zone_name}'")
            db.execute("CREATE OR REPLACE TABLE t AS SELECT TIMESTAMPTZ '2026-03-01 20:00:00+00' AS ordered_at")
            assert db.execute(to_duckdb(query_)).fetchone()[0].isoformat() == "2026-03-02", zone_name


def test_a_malformed_dlt_header_names_the_file_and_table(tmp_path):
    sql = tmp_path / "broken.sql"
    sql.write_text("CREATE OR REFRESH MATERIALIZED VIEW gold.x (CONSTRAINT oops (a > 0)) AS SELECT 1 AS a")
    with pytest.raises(ValueError, match=r"broken.sql: gold.x: not a DLT expectation"):
        read_pipeline([sql])


def test_a_run_of_lakehouse_checks_alone_refreshes_nothing_and_says_why(tmp_path):
    """A check is judged on what its table's refresh reports: with no table selected the run fails
    before the engine is called (on Databricks an empty selection would update every table)."""
    check = dg.AssetCheckKey(dg.AssetKey(["silver", "orders"]), "valid_status")
    result = dg.materialize([lakehouse_tables], selection=dg.AssetSelection.checks(check),
                            resources=environment.local_resources(tmp_path, 1), tags={"dagster/partition": "2026-03-02"},
                            raise_on_error=False)
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "materialize the table to run its checks" in str(failure.event_specific_data.error)
    assert not environment.lakehouse_database(tmp_path).exists()
