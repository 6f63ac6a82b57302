"""The two daily jobs and their schedules: the nightly extract and lakehouse refresh at 01:00, the
dbt KPIs at 05:00 Asia/Bangkok, each for the day that just ended."""

import dagster as dg

batch_ecomm_pipeline = dg.define_asset_job(
    name="batch_ecomm_pipeline",
    description="Nightly extract of yesterday's changes from ecomm-db, then Bronze, Silver and Gold "
                "(in production: an update of the DLT pipeline of the same name).",
    selection=dg.AssetSelection.groups("landing", "bronze", "silver", "gold"),
)

daily_refresh = dg.define_asset_job(
    name="daily_refresh",
    description="dbt build of the KPI models in dbt_prod_metric (the DailyRefresh job).",
    selection=dg.AssetSelection.groups("metrics"),
)

# The partitions are in Asia/Bangkok, so these fire at 01:00 and 05:00 ICT.
schedules = [
    dg.build_schedule_from_partitioned_job(batch_ecomm_pipeline, hour_of_day=1),
    dg.build_schedule_from_partitioned_job(daily_refresh, hour_of_day=5),
]
