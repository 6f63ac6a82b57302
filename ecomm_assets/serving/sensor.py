"""The sensor that refreshes what is served when the KPIs land."""

import warnings

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ecomm_assets.metrics.assets import DASHBOARD_MODELS, metric_models
from ecomm_assets.partitions import landed_partitions, partition_range_request


def failed_kpi_checks(instance: dg.DagsterInstance) -> list[str]:
    """The dbt checks (the metric models' tests and their Gold sources') whose latest result failed
    with ERROR severity (dbt tests are ERROR)."""
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(metric_models.check_keys))
    return sorted(f"{key.asset_key.to_user_string()} {key.name}" for key, record in latest.items()
                  if record.status == AssetCheckExecutionRecordStatus.FAILED
                  and record.event.dagster_event.event_specific_data.severity == dg.AssetCheckSeverity.ERROR)


# multi_asset_sensor is superseded by Declarative Automation for launching assets; a sensor is
# what this refresh wants: one request per set of the dashboard's tables, none while a dbt test fails.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)

    @dg.multi_asset_sensor(
        name="refresh_dashboard_when_kpis_land",
        monitored_assets=DASHBOARD_MODELS,
        request_assets=dg.AssetSelection.groups("serving").materializable(),  # not Tableau's live sources
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Refreshes the dashboard once the metric tables it reads have all materialized "
        "for a partition (one request for all the partitions completed since the last), unless a "
        "dbt test of them or of their Gold sources failed with an error.",
    )
    def refresh_dashboard_when_kpis_land(context: dg.MultiAssetSensorEvaluationContext):
        complete = landed_partitions(context)
        if not complete:
            return dg.SkipReason("Waiting for all the dashboard's metric tables to materialize for a partition.")
        first, last = min(complete), max(complete)
        if failed := failed_kpi_checks(context.instance):
            return dg.SkipReason(f"KPIs of {first}...{last} landed but are not served: "
                                 f"failed KPI checks {', '.join(failed)}.")
        return partition_range_request("kpis", first, last, complete)
