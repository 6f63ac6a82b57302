"""The ecomm_data_pipeline code location."""

import warnings

import dagster as dg

from ecomm_assets import environment
from ecomm_assets.alerts.sensor import failure_alerts
from ecomm_assets.extract.assets import landing_extracts
from ecomm_assets.jobs import batch_ecomm_pipeline, daily_refresh, ecomm_pipeline, schedules
from ecomm_assets.lakehouse.assets import lakehouse_tables
from ecomm_assets.lakehouse.repair_sensor import rerun_out_of_sync_days
from ecomm_assets.metrics.assets import DASHBOARD_MODELS, metric_models
from ecomm_assets.metrics.sensor import build_metrics_when_gold_lands
from ecomm_assets.operations.assets import check_run_durations, ecomm_ops_runs, runs_within_trailing_p95
from ecomm_assets.operations.sensor import export_run_metrics
from ecomm_assets.serving.assets import ecommerce_analytics_dashboard
from ecomm_assets.serving.sensor import refresh_dashboard_when_kpis_land

# Tableau serves the KPIs when it is configured, the local dashboard page when not. Production
# loads the site's content from the state file only (fetch-state writes it at deploy time).
tableau = environment.tableau_workspace()
if tableau is None:
    serving = [ecommerce_analytics_dashboard]
else:
    from ecomm_assets.serving.tableau import tableau_workbook_assets

    serving = tableau_workbook_assets(tableau, environment.tableau_state_path(),
                                      fetch_if_missing=environment.ecomm_env() != "prod")

# Gold and the metrics must hold yesterday's partition by 05:00 Asia/Bangkok (the lakehouse runs at
# 01:00, dbt as soon as Gold lands); the sensor evaluates the checks, the alert sensor reports the
# ones that fail.
# Dagster 1.13 marks these builders superseded by FreshnessPolicy, which judges when an asset was
# last updated, not whether the day's partition is there: they are kept on purpose.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    freshness_checks = dg.build_time_partition_freshness_checks(
        assets=[key for key in lakehouse_tables.keys if key.path[0] == "gold"] + DASHBOARD_MODELS,
        deadline_cron="0 5 * * *",
        timezone="Asia/Bangkok",
    )
    freshness_checks_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=freshness_checks, default_status=dg.DefaultSensorStatus.RUNNING
    )

# Who answers for every asset, shown on its page and in the catalog.
OWNER = "team:data-engineering"

defs = dg.Definitions(
    assets=dg.map_asset_specs(lambda spec: spec.replace_attributes(owners=[OWNER]),
                              [landing_extracts, lakehouse_tables, metric_models, *serving, ecomm_ops_runs]),
    asset_checks=[*freshness_checks, runs_within_trailing_p95],
    sensors=[failure_alerts, freshness_checks_sensor, build_metrics_when_gold_lands,
             refresh_dashboard_when_kpis_land, export_run_metrics, rerun_out_of_sync_days],
    jobs=[batch_ecomm_pipeline, daily_refresh, ecomm_pipeline, check_run_durations],
    schedules=schedules,
    resources=environment.resources(),
    # The steps are short and I/O bound; one process per run beats paying a process start per step.
    executor=dg.in_process_executor,
)
