"""The shape of the asset graph: what a reviewer should see change when the graph changes."""

import os
import shutil
import subprocess
import sys

import dagster as dg

from ecomm_assets import REPO_ROOT
from ecomm_assets.definitions import defs
from ecomm_assets.partitions import ingestion_date_partitions
from ecomm_assets.source.postgres import column_descriptions, source_tables

# Every table on the path from ecomm-db to the dashboard, with what it is built from.
SOURCE_TABLES = ["customers", "products", "orders", "order_items"]
HISTORIES = {"customers": "dim_customer_history", "products": "dim_product_history", "orders": "order_status_history"}
EXPECTED_DEPS = {
    **{f"landing/{table}": set() for table in SOURCE_TABLES},
    **{f"bronze/{table}{suffix}": {f"landing/{table}"} for table in SOURCE_TABLES for suffix in ["", "_keys"]},
    "bronze/rescued_columns": {f"bronze/{table}" for table in SOURCE_TABLES},  # new source columns
    "bronze/unplaced_files": {f"bronze/{table}" for table in SOURCE_TABLES},  # files in no partition
    "bronze/landed_volume": {f"bronze/{table}" for table in SOURCE_TABLES},  # rows landed vs the usual
    # the change feed, applied by AUTO CDC: the latest version of each key, and (three of them) history
    **{f"silver/{table}_changes": {f"bronze/{table}"} for table in SOURCE_TABLES},
    "silver/orders_changes": {"bronze/orders", "silver/dim_payment_method"},  # the methods the shop accepts
    "silver/dim_payment_method": set(),
    "silver/dim_date": set(),
    **{f"silver/{table}": {f"silver/{table}_changes"} for table in ["customers", "products", "orders"]},
    "silver/order_items_latest": {"silver/order_items_changes"},
    **{f"silver/{table}_history": {f"silver/{table}_changes"} for table in HISTORIES},
    **{f"silver/{view}": {f"silver/{table}_history"} for table, view in HISTORIES.items()},
    "silver/order_items": {"silver/order_items_latest", "silver/dim_orders", "silver/dim_customer",
                           "silver/dim_product"},
    **{f"silver/{table}_quarantine": {f"silver/{table}"} for table in SOURCE_TABLES},
    "silver/dim_customer": {"silver/customers"},
    "silver/dim_product": {"silver/products"},
    "silver/dim_orders": {"silver/orders"},
    "silver/fact_orders": {"silver/order_items", "silver/dim_orders"},
    "silver/source_reconciliation": {*(f"bronze/{table}_keys" for table in SOURCE_TABLES),
                                     "silver/customers", "silver/products", "silver/orders", "silver/order_items_latest"},
    "silver/star_key_violations": {"silver/dim_customer", "silver/dim_product", "silver/dim_orders",
                                   "silver/fact_orders"},
    "silver/row_accounting": {*(f"silver/{table}" for table in SOURCE_TABLES),
                               *(f"silver/{table}_quarantine" for table in SOURCE_TABLES),
                               "silver/dim_customer", "silver/dim_product", "silver/dim_orders", "silver/fact_orders"},
    "silver/history_violations": {*(f"silver/{view}" for view in HISTORIES.values()),
                                  *(f"silver/{table}" for table in HISTORIES)},
    # the quality score: the star's tables, the change feeds and the reconciliation
    "silver/data_quality": {*(f"silver/{table}" for table in SOURCE_TABLES),
                            *(f"silver/{table}_changes" for table in SOURCE_TABLES), "silver/source_reconciliation"},
    "gold/sales_analytics": {"silver/fact_orders", "silver/dim_orders", "silver/dim_customer",
                             "silver/dim_product", "silver/dim_customer_history", "silver/dim_product_history"},
    "gold/agg_daily_sales": {"gold/sales_analytics"},
    "dbt_prod_metric/agg_sales_kpi": {"gold/agg_daily_sales"},
    "dbt_prod_metric/agg_product_kpi": {"gold/sales_analytics"},
    "dbt_prod_metric/agg_customer_kpi": {"gold/sales_analytics"},
    "dbt_prod_metric/agg_customer_lifetime": {"gold/sales_analytics"},
    "dbt_prod_metric/agg_customer_cohort": {"gold/sales_analytics"},
    "dbt_prod_metric/agg_product_performance": {"gold/sales_analytics", "silver/dim_product_history"},
    "dbt_prod_metric/agg_sales_anomalies": {"dbt_prod_metric/agg_sales_kpi"},  # revenue, orders, AOV vs 28 days
    "dashboard/ecommerce_analytics": {"dbt_prod_metric/agg_sales_kpi", "dbt_prod_metric/agg_product_kpi",
                                      "dbt_prod_metric/agg_customer_kpi", "dbt_prod_metric/agg_customer_lifetime",
                                      "dbt_prod_metric/agg_customer_cohort",
                                      "dbt_prod_metric/agg_product_performance", "silver/data_quality"},
}
# The DLT expectations, mirrored as asset checks; and the landed-rows check of each table that
# reads landed files, blocking.
EXPECTED_EXPECTATION_CHECKS = {
    *((f"silver/{table}_changes", "not_future_dated") for table in SOURCE_TABLES),
    ("silver/orders_changes", "valid_payment_method"),
    ("silver/customers", "valid_id"),
    ("silver/products", "valid_id"),
    ("silver/products", "valid_price"),
    ("silver/orders", "valid_id"),
    ("silver/orders", "valid_status"),
    ("silver/order_items", "valid_id"),
    ("silver/order_items", "valid_reference"),
    ("silver/order_items", "valid_price"),
    ("silver/order_items", "valid_quantity"),
    ("silver/source_reconciliation", "in_sync"),
    ("silver/star_key_violations", "unique_keys"),
    ("silver/row_accounting", "every_row_accounted"),
    ("silver/history_violations", "sound_history"),
    ("silver/data_quality", "quality_above_threshold"),
    ("bronze/rescued_columns", "no_new_source_columns"),
    ("bronze/unplaced_files", "every_file_in_a_partition"),
    ("bronze/landed_volume", "usual_volume"),
}
EXPECTED_MANIFEST_CHECKS = {(f"bronze/{table}{suffix}", "rows_match_manifest")
                            for table in SOURCE_TABLES for suffix in ["", "_keys"]}

graph = defs.resolve_asset_graph()


def test_every_table_from_landing_to_kpis_exists_with_its_dependencies():
    deps = {
        key.to_user_string(): {parent.to_user_string() for parent in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable
    }
    assert deps == EXPECTED_DEPS


def test_every_asset_shares_the_one_partitions_definition_and_runs_backfills_in_one_run():
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        assert node.partitions_def == ingestion_date_partitions, key
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), key
    assert ingestion_date_partitions.timezone == "Asia/Bangkok"


def test_every_asset_documents_itself():
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        layer = key.path[0]
        assert node.description, key
        assert node.group_name == {"dbt_prod_metric": "metrics", "dashboard": "serving"}.get(layer, layer), key
        assert node.kinds, key
        assert node.owners == ["team:data-engineering"], key
        if layer != "dashboard":  # a page, not a table
            assert node.metadata.get("dagster/column_schema"), key


def test_every_column_says_what_it_means_on_every_table():
    # every source column is commented once, by name, in schema.sql; the others where they are defined
    described = {column for table in source_tables().values() for column, _ in table.columns}
    assert set(column_descriptions()) == described
    for key in graph.materializable_asset_keys:
        for column in getattr(graph.get(key).metadata.get("dagster/column_schema"), "columns", []):
            assert column.description, (key, column.name)


def test_each_dlt_expectation_is_an_asset_check():
    checks = {(check.asset_key.to_user_string(), check.name) for check in graph.asset_check_keys}
    assert EXPECTED_EXPECTATION_CHECKS | EXPECTED_MANIFEST_CHECKS <= checks
    lakehouse_blocking = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys
                          if graph.get_check_spec(key).blocking and key.asset_key.path[0] in ("bronze", "silver")}
    assert lakehouse_blocking == EXPECTED_MANIFEST_CHECKS | {("silver/star_key_violations", "unique_keys"),
                                                             ("silver/row_accounting", "every_row_accounted"),
                                                             ("silver/history_violations", "sound_history")}
    # dbt's tests arrive as checks too: the not_null tests on the Gold sources among them.
    assert ("gold/sales_analytics", "source_not_null_gold_sales_analytics_item_price") in checks


def test_the_lakehouse_runs_at_01_bangkok_time_and_dbt_when_gold_lands():
    [schedule] = defs.get_repository_def().schedule_defs
    assert (schedule.job_name, schedule.cron_schedule, schedule.execution_timezone) == (
        "batch_ecomm_pipeline", "0 1 * * *", "Asia/Bangkok")
    sensor = defs.resolve_sensor_def("build_metrics_when_gold_lands")
    assert sensor.job_name == "daily_refresh" and sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_the_jobs_split_the_graph_at_the_lakehouse():
    def keys_of(job_name):
        job = defs.resolve_job_def(job_name)
        return {key.path[0] for key in job.asset_layer.selected_asset_keys}

    assert keys_of("batch_ecomm_pipeline") == {"landing", "bronze", "silver", "gold"}
    assert keys_of("daily_refresh") == {"dbt_prod_metric"}


def test_the_partitions_start_at_the_first_day_of_the_data():
    """`make run` and `make dev` pass the first seeded day; the UI then lists no empty days before it."""
    first = subprocess.run(
        [sys.executable, "-c", "from ecomm_assets.partitions import ingestion_date_partitions as p; "
                               "print(p.get_first_partition_key())"],
        env={**os.environ, "ECOMM_FIRST_INGESTION_DATE": "2026-10-23"}, capture_output=True, text=True, check=True)
    assert first.stdout.strip() == "2026-10-23"


def test_dagster_dev_started_directly_parses_a_missing_dbt_manifest(tmp_path):
    """`dagster dev` (not `make dev`) in a checkout where `make manifest` never ran."""
    repo = REPO_ROOT
    shutil.copytree(repo / "ecomm_assets", tmp_path / "ecomm_assets")
    shutil.copytree(repo / "dbt_project", tmp_path / "dbt_project", ignore=shutil.ignore_patterns("target", "logs"))
    subprocess.run([sys.executable, "-c", "import ecomm_assets.metrics.project"], cwd=tmp_path, check=True,
                   env={**os.environ, "DAGSTER_IS_DEV_CLI": "1", "PYTHONPATH": str(tmp_path)})
    assert (tmp_path / "dbt_project" / "target" / "manifest.json").exists()
