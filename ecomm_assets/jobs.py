"""The jobs: the nightly extract and lakehouse refresh, scheduled at 01:00 Asia/Bangkok for the day
that just ended; the dbt metrics, started by build_metrics_when_gold_lands when Gold holds the day
(by 05:00, the deadline their freshness checks hold them to); and the whole pipeline over a range
of days, which `make run` runs."""

import dagster as dg

batch_ecomm_pipeline = dg.define_asset_job(
    name="batch_ecomm_pipeline",
    description="Nightly extract of yesterday's changes from ecomm-db, then Bronze, Silver and Gold "
                "(in production: an update of the DLT pipeline of the same name).",
    selection=dg.AssetSelection.groups("landing", "bronze", "silver", "gold"),
)

daily_refresh = dg.define_asset_job(
    name="daily_refresh",
    description="dbt build of the metric models in dbt_prod_metric (the DailyRefresh job), started "
                "when Gold lands.",
    selection=dg.AssetSelection.groups("metrics"),
)

ecomm_pipeline = dg.define_asset_job(
    name="ecomm_pipeline",
    description="Every asset from the extract to the dashboard over a range of days, in one run "
                "(what `make run` runs).",
    selection=dg.AssetSelection.all(),
)

# The partitions are in Asia/Bangkok, so this fires at 01:00 ICT.
schedules = [dg.build_schedule_from_partitioned_job(batch_ecomm_pipeline, hour_of_day=1)]
