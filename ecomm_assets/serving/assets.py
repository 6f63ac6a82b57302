"""The local Ecommerce Analytics dashboard: a static HTML page over the KPI tables."""

from pathlib import Path

import dagster as dg

from ecomm_assets.lakehouse.engine import LakehouseEngine
from ecomm_assets.metrics.assets import DASHBOARD_MODELS
from ecomm_assets.partitions import ingestion_date_partitions, run_ingestion_dates
from ecomm_assets.serving.dashboard import QUERIES, DashboardData, render, write


class LocalDashboard(dg.ConfigurableResource):
    """Where the local dashboard page is written."""

    path: str


@dg.multi_asset(  # a multi_asset of one: backfill_policy on @asset is a beta parameter in Dagster 1.13
    specs=[dg.AssetSpec(
        key=["dashboard", "ecommerce_analytics"],
        deps=[*DASHBOARD_MODELS, dg.AssetKey(["silver", "data_quality"])],
        description="The Ecommerce Analytics dashboard as one self-contained HTML page, amounts in "
        "Thai baht: Sales (Revenue and AOV per day, Top Selling Categories, Customer Acquisition), "
        "Customer Analytics (cohort retention, RFM segments, LTV curve) and Product Performance "
        "(top products, category share, price-change effect), from the dbt metric tables, and Data "
        "Quality (the overall score per day and source table, from silver.data_quality).",
        group_name="serving",
        kinds={"html", "plotly"},
    )],
    partitions_def=ingestion_date_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def ecommerce_analytics_dashboard(
    context: dg.AssetExecutionContext, lakehouse: LakehouseEngine, dashboard: LocalDashboard
) -> dg.MaterializeResult:
    """Render the dashboard. Every refresh draws all days; the partition says which metrics run it follows."""
    dates = run_ingestion_dates(context)
    # DuckDB lets no one read while another process writes: wait for the writer like a writer.
    with lakehouse.writing(context.log, holder=f"run {context.run.run_id} (dashboard)"):
        data = DashboardData(*(lakehouse.query(query) for query in QUERIES))
    span = dates[0] if len(dates) == 1 else f"{dates[0]}...{dates[-1]}"
    shown = f"orders of {data.sales[0][0]} to {data.sales[-1][0]} (Asia/Bangkok)" if data.sales else "no orders yet"
    path = write(render(data, f"dbt_prod_metric: {shown}, refreshed by the run for {span}."), Path(dashboard.path))
    context.log.info(f"Dashboard written: {path}")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "days": len(data.sales),
        **{f"total_{name}": value for name, value in data.headline.items()},
    })
