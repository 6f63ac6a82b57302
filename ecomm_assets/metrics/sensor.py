"""The sensor that builds the metrics when Gold lands: dbt runs after the lakehouse, not at a
fixed hour that the lakehouse may have missed."""

import warnings

import dagster as dg

from ecomm_assets.jobs import daily_refresh
from ecomm_assets.metrics.assets import gold_tables, metric_models
from ecomm_assets.partitions import landed_partitions, partition_range_request


def _built_since(instance: dg.DagsterInstance, partition: str, storage_id: int) -> bool:
    """Every metric model of ``partition`` materialized after event ``storage_id`` (the same run
    built Gold and the metrics, as `make run` does)."""
    for key in metric_models.keys:
        [latest] = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records or [None]
        if latest is None or latest.storage_id < storage_id:
            return False
    return True


# multi_asset_sensor is superseded by Declarative Automation, whose eager condition would start
# dbt once per Gold table and partition; this one waits for both Gold tables and asks for one run.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)

    @dg.multi_asset_sensor(
        name="build_metrics_when_gold_lands",
        monitored_assets=gold_tables(),
        job=daily_refresh,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Starts daily_refresh (dbt) for the partitions whose Gold tables have all "
        "materialized since its last request (one run for the range), unless the metrics of "
        "those partitions were built after them already.",
    )
    def build_metrics_when_gold_lands(context: dg.MultiAssetSensorEvaluationContext):
        complete = landed_partitions(context)
        if not complete:
            return dg.SkipReason("Waiting for Gold's tables to materialize for a partition.")
        due = sorted(p for p, records in complete.items()
                     if not _built_since(context.instance, p, max(r.storage_id for r in records.values())))
        if not due:
            return dg.SkipReason(f"Gold of {min(complete)}...{max(complete)} landed; its metrics were built after it.")
        return partition_range_request("gold", due[0], due[-1], complete)
