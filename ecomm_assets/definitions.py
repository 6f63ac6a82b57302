"""The ecomm_data_pipeline code location."""

import dagster as dg

from ecomm_assets import environment
from ecomm_assets.extract.assets import landing_extracts
from ecomm_assets.lakehouse.assets import lakehouse_tables
from ecomm_assets.metrics.assets import kpi_models

batch_ecomm_pipeline = dg.define_asset_job(
    name="batch_ecomm_pipeline",
    description="Nightly extract of yesterday's changes from ecomm-db, then Bronze, Silver and Gold.",
    selection=dg.AssetSelection.groups("landing", "bronze", "silver", "gold"),
)

daily_refresh = dg.define_asset_job(
    name="daily_refresh",
    description="dbt build of the KPI models in dbt_prod_metric (the DailyRefresh job).",
    selection=dg.AssetSelection.groups("metrics"),
)

defs = dg.Definitions(
    assets=[landing_extracts, lakehouse_tables, kpi_models],
    jobs=[batch_ecomm_pipeline, daily_refresh],
    schedules=[
        # The partitions are in Asia/Bangkok, so these fire at 01:00 and 05:00 ICT, each for
        # the day that just ended.
        dg.build_schedule_from_partitioned_job(batch_ecomm_pipeline, hour_of_day=1),
        dg.build_schedule_from_partitioned_job(daily_refresh, hour_of_day=5),
    ],
    resources=environment.resources(),
    # The steps are short and I/O bound; one process per run beats paying a process start per step.
    executor=dg.in_process_executor,
)
