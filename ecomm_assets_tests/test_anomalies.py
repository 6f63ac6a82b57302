"""Business anomalies: the pipeline loses nothing, yet the numbers are wrong. A checkout bug is
planted in ecomm-db (a day with half the orders, then a day with none) and the dbt tests of the
metric models say so: a warning for a day outside its trailing band, an error for a day without
orders. A migration that re-stamps every order lands far more rows than usual: Bronze's volume
check warns."""

from datetime import timedelta

import dagster as dg
import psycopg
import pytest
from support import FIRST_DAY, NIGHTLY, SMALL_SHOP, Pipeline

from ecomm_assets.source import demo_data

pytestmark = pytest.mark.slow

# Three weeks of the small shop (80 orders a day), to 2026-03-05.
START = FIRST_DAY - timedelta(days=16)
DAYS = [(START + timedelta(days=n)).date().isoformat() for n in range(21)]
ORDERS_OF_DAY = "SELECT order_id FROM orders WHERE (ordered_at AT TIME ZONE 'Asia/Bangkok')::date = %s"


def lose_orders(connection: psycopg.Connection, day: str, every: int) -> int:
    """Delete every ``every``-th order placed on ``day`` (1: all of them) with its lines, as a
    checkout that failed would never have written them. Returns the orders left that day."""
    connection.execute(f"""
        WITH lost AS (SELECT order_id FROM ({ORDERS_OF_DAY}) AS day_orders WHERE order_id %% {every} = 0),
             lines AS (DELETE FROM order_items WHERE order_id IN (SELECT order_id FROM lost))
        DELETE FROM orders WHERE order_id IN (SELECT order_id FROM lost)""", [day])
    return len(connection.execute(ORDERS_OF_DAY, [day]).fetchall())


def dbt_check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_a_day_with_half_the_orders_warns_and_a_day_without_orders_fails(postgres, tmp_path):
    postgres.create_source_schema()
    with psycopg.connect(postgres.resource().conninfo()) as connection:
        demo_data.generate(connection, START, START + timedelta(days=len(DAYS)), SMALL_SHOP, seed=7)
        left = lose_orders(connection, DAYS[-1], every=2)
    pipeline = Pipeline(tmp_path / "home", postgres)
    pipeline.materialize(DAYS[0], DAYS[-2], selection=NIGHTLY)
    with psycopg.connect(postgres.resource().conninfo()) as connection:  # the migration, on the last day
        migrated = connection.execute("UPDATE orders SET updated_at = %s WHERE updated_at < %s",
                                      [f"{DAYS[-1]} 12:00+07", f"{DAYS[-1]} 12:00+07"]).rowcount

    result = pipeline.materialize(DAYS[-1])

    # every order re-landed that day: many times the usual orders volume, and only that day
    volume = [e for e in result.get_asset_check_evaluations() if e.check_name == "usual_volume"]
    assert [(e.partition, e.passed) for e in volume] == [(DAYS[-1], False)]
    assert volume[0].metadata["failed_sample"].value == ["orders"]
    [(rows, median)] = pipeline.query(f"SELECT rows, trailing_median FROM bronze.landed_volume "
                                      f"WHERE source_table = 'orders' AND _ingestion_date = DATE'{DAYS[-1]}'")
    assert rows >= migrated > 3 * median

    # half the orders: outside the band of the days before; revenue per day varies too much in a
    # shop this small for half of it to stand out, and the AOV is as usual
    warning = dbt_check(result, "sales_within_their_trailing_band")
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    [(day, metric, value, low, high)] = pipeline.query(  # the day the run judged (an earlier day may spike)
        "SELECT order_date, metric, value, band_low, band_high FROM dbt_prod_metric.agg_sales_anomalies "
        f"WHERE is_anomaly AND order_date = DATE'{DAYS[-1]}'")
    assert (day.isoformat(), metric, value) == (DAYS[-1], "order_count", left) and value < low < 80 < high
    assert dbt_check(result, "orders_on_every_day").passed

    # the next day the checkout takes no order at all
    with psycopg.connect(postgres.resource().conninfo()) as connection:
        assert lose_orders(connection, DAYS[-1], every=1) == 0
    result = pipeline.materialize(DAYS[-1], raise_on_error=False)

    error = dbt_check(result, "orders_on_every_day")
    assert not error.passed and error.severity == dg.AssetCheckSeverity.ERROR
    assert not result.success  # dbt failed the build on it: the dashboard is not refreshed
