"""Metric assets: the dbt models in schema ``dbt_prod_metric`` (the KPIs, customer lifetime and
cohorts, product performance), built on the Gold tables."""

import json
import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from ecomm_assets.lakehouse.engine import LakehouseEngine
from ecomm_assets.metrics.project import dbt_project
from ecomm_assets.partitions import ingestion_date_partitions, run_ingestion_dates
from ecomm_assets.retries import StepRetries


class MetricsTranslator(DagsterDbtTranslator):
    """dbt sources keep the lakehouse keys (gold/<table>); models are keyed by their schema."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str:
        return "metrics"


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=MetricsTranslator(
        settings=DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True)
    ),
    partitions_def=ingestion_date_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def metric_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseEngine,
                  retries: StepRetries):
    """Build and test the metric models. They are small aggregates recomputed from Gold on every run,
    so any sequence of partition runs leaves them equal to a full recompute. dbt writes into the
    lakehouse, so it holds the lakehouse's writer lock while it runs. The tests that judge days (a
    day without orders, sales outside their trailing band) judge the run's, read by dbt from the
    environment."""
    dates = run_ingestion_dates(context)
    _refuse_unless_gold_holds(context, lakehouse, dates)
    os.environ.update(ECOMM_RUN_FIRST_DAY=dates[0], ECOMM_RUN_LAST_DAY=dates[-1])  # dagster-dbt hands dbt a copy
    with (retries.on_transient_fault(context),
          lakehouse.writing(context.log, holder=f"run {context.run.run_id} (dbt build)")):
        # Held until dbt is done: only then may this process read what dbt wrote (DuckDB admits
        # one process), to add each model's row count and a preview of its latest rows.
        # A failing test's result is recorded before the step fails on it: dagster-dbt would raise
        # at the end of the stream, and the list would lose every result.
        invocation = dbt.cli(["build"], context=context, raise_on_error=False)
        events = list(invocation.stream())
        for event in events:
            if isinstance(event, dg.Output):
                key = context.asset_key_for_output(event.output_name)
                columns = [c.name for c in context.assets_def.specs_by_key[key].metadata[
                    "dagster/column_schema"].columns]
                event = event.with_metadata({**event.metadata, **_table_metadata(lakehouse, key, columns)})
            yield event
    if not invocation.is_successful():
        raise invocation.get_error()


def gold_tables() -> list[dg.AssetKey]:
    """The Gold tables the metric models read (their dbt sources in gold)."""
    return sorted(key for key in metric_models.dependency_keys if key.path[0] == "gold")


def _refuse_unless_gold_holds(context: dg.AssetExecutionContext, lakehouse: LakehouseEngine,
                              dates: list[str]) -> None:
    """The metrics of a day are built from a Gold that holds the day and that no update is writing:
    otherwise the run fails at once and says why (build_metrics_when_gold_lands starts them when
    Gold's partition succeeds)."""
    for key in gold_tables():
        missing = sorted(set(dates) - context.instance.get_materialized_partitions(key))
        if missing:
            raise dg.Failure(
                f"{key.to_user_string()} holds no partition {', '.join(missing[:5])}"
                f"{f' (and {len(missing) - 5} more)' if len(missing) > 5 else ''}: the lakehouse run "
                "(batch_ecomm_pipeline) of those days has not succeeded. The metrics are built when it does.")
    if active := lakehouse.updates_in_progress():
        raise dg.Failure(f"Gold is being updated by pipeline update(s) {', '.join(active)}: the metrics would "
                         "read it half written. They are built when the update succeeds.")


def _dashboard_models() -> list[dg.AssetKey]:
    """The models the dbt exposure of the Ecommerce Analytics dashboard depends on."""
    manifest = json.loads(dbt_project.manifest_path.read_text())
    [exposure] = [e for e in manifest["exposures"].values() if e["name"] == "ecommerce_analytics_dashboard"]
    return sorted(dg.AssetKey([manifest["nodes"][n]["schema"], manifest["nodes"][n]["name"]])
                  for n in exposure["depends_on"]["nodes"])


# The metric tables the dashboard reads (the KPIs, the customer and product metrics), in one
# order: what freshness, the dashboard, Tableau's lineage and the refresh sensor watch.
DASHBOARD_MODELS = _dashboard_models()


def _table_metadata(lakehouse: LakehouseEngine, key: dg.AssetKey, columns: list[str]) -> dict:
    """The row count of a metric table and its ten last rows (by its first columns) as a markdown table."""
    table = ".".join(key.path)
    (rows,), = lakehouse.query(f"SELECT count(*) FROM {table}")
    latest = lakehouse.query(f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1 DESC, 2 LIMIT 10")
    lines = [" | ".join(columns), " | ".join("---" for _ in columns),
             *(" | ".join(str(value) for value in row) for row in latest)]
    return {"dagster/row_count": rows, "preview": dg.MetadataValue.md("\n".join(f"| {line} |" for line in lines))}
