"""Serving: the dashboard page, and the sensor that refreshes it when the KPIs land."""

from datetime import date
from decimal import Decimal

import dagster as dg

from ecomm_assets.definitions import defs
from ecomm_assets.metrics.assets import kpi_models
from ecomm_assets.serving.assets import KPI_KEYS
from ecomm_assets.serving.dashboard import Kpis, render
from ecomm_assets.serving.sensor import refresh_dashboard_when_kpis_land


def test_the_page_shows_the_headline_kpis_and_four_charts_and_needs_no_network():
    kpis = Kpis(
        sales=[(date(2026, 3, 1), Decimal("1000.50"), 4, Decimal("250.13")),
               (date(2026, 3, 2), Decimal("2000.00"), 6, Decimal("333.33"))],
        categories=[("Books", 12, Decimal("300.00")), ("Toys", 3, Decimal("2700.50"))],
        customers=[(date(2026, 3, 1), 4, 4), (date(2026, 3, 2), 5, 2)],
    )
    page = render(kpis, "test data")
    for kpi, value in {"revenue": "3,000.50", "orders": "10", "aov": "300.05", "new_customers": "6"}.items():
        assert f'data-kpi="{kpi}"><span>' in page and f"<b>{value}</b>" in page
    for panel in ["revenue", "aov", "top-categories", "customer-acquisition"]:
        assert f'<section class="panel" id="{panel}">' in page
    assert "<script src=" not in page and "<link" not in page  # nothing to fetch: plotly.js is inside


class RefreshSensor:
    def __init__(self, instance: dg.DagsterInstance):
        self.instance, self.cursor = instance, None

    def tick(self):
        context = dg.build_multi_asset_sensor_context(
            monitored_assets=KPI_KEYS, instance=self.instance, cursor=self.cursor, definitions=defs)
        result = refresh_dashboard_when_kpis_land(context)
        self.cursor = context.cursor
        return result


def land(instance: dg.DagsterInstance, key: dg.AssetKey, day: str):
    instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day))


def test_one_refresh_per_completed_set_of_kpis_and_none_after_a_failed_kpi_test():
    with dg.instance_for_test() as instance:
        sensor = RefreshSensor(instance)
        for key in KPI_KEYS[:2]:
            land(instance, key, "2026-03-04")
        assert isinstance(sensor.tick(), dg.SkipReason)  # two of three

        land(instance, KPI_KEYS[2], "2026-03-04")
        request = sensor.tick()
        assert isinstance(request, dg.RunRequest)
        assert request.tags["dagster/asset_partition_range_start"] == "2026-03-04"
        assert request.tags["dagster/asset_partition_range_end"] == "2026-03-04"
        assert isinstance(sensor.tick(), dg.SkipReason)  # nothing new, nothing requested

        # A backfill lands two days at once: one request for both.
        for day in ["2026-03-05", "2026-03-06"]:
            for key in KPI_KEYS:
                land(instance, key, day)
        request = sensor.tick()
        assert (request.tags["dagster/asset_partition_range_start"],
                request.tags["dagster/asset_partition_range_end"]) == ("2026-03-05", "2026-03-06")

        # A dbt test of a KPI model fails (ERROR): the next set is not served.
        unique_date = next(key for key in kpi_models.check_keys if key.asset_key == KPI_KEYS[1])
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=unique_date.asset_key, check_name=unique_date.name, passed=False,
            severity=dg.AssetCheckSeverity.ERROR))
        for key in KPI_KEYS:
            land(instance, key, "2026-03-07")
        skipped = sensor.tick()
        assert isinstance(skipped, dg.SkipReason)
        assert f"{unique_date.asset_key.to_user_string()} {unique_date.name}" in skipped.skip_message
