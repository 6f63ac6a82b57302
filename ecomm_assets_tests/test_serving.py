"""Serving: the dashboard page, and the sensor that refreshes it when the KPIs land."""

import re
import shutil
import subprocess
from datetime import date
from decimal import Decimal

import dagster as dg
import pytest

from ecomm_assets.definitions import defs
from ecomm_assets.metrics.assets import DASHBOARD_MODELS, metric_models
from ecomm_assets.serving.dashboard import DashboardData, render
from ecomm_assets.serving.sensor import refresh_dashboard_when_kpis_land

# Two days of metrics: revenue 3,000.50 over 10 orders (AOV 300.05), 6 new customers; two
# cohorts, three segments, two products of which one was repriced.
TWO_DAYS = DashboardData(
    sales=[(date(2026, 3, 1), Decimal("1000.50"), 4, Decimal("250.13")),
           (date(2026, 3, 2), Decimal("2000.00"), 6, Decimal("333.33"))],
    categories=[("Books", 12, Decimal("300.00")), ("Toys", 3, Decimal("2700.50"))],
    customers=[(date(2026, 3, 1), 4, 4), (date(2026, 3, 2), 5, 2)],
    cohorts=[(date(2026, 2, 1), 0, 4, Decimal("1.0000"), Decimal("120.00")),
             (date(2026, 2, 1), 1, 4, Decimal("0.5000"), Decimal("180.25")),
             (date(2026, 3, 1), 0, 2, Decimal("1.0000"), Decimal("95.00"))],
    segments=[("champions", 3, Decimal("2000.00")), ("new", 2, Decimal("500.50")), ("at_risk", 1, Decimal("500.00"))],
    top_products=[("Lego castle", "Toys", 3, Decimal("2700.50")), ("Atlas", "Books", 12, Decimal("300.00"))],
    price_changes=[("Atlas", Decimal("30.00"), Decimal("24.00"), Decimal("2.00"), Decimal("3.00"))],
    quality=[(date(2026, 3, 1), "orders", Decimal("100.00")), (date(2026, 3, 2), "orders", Decimal("97.12"))],
)
PANELS = ["revenue", "aov", "top-categories", "customer-acquisition",  # Sales
          "cohort-retention", "segments", "ltv-curve",  # Customer Analytics
          "top-products", "category-share", "price-changes",  # Product Performance
          "quality-score"]  # Data Quality


def test_the_page_shows_the_headline_kpis_and_its_four_views_and_needs_no_network():
    page = render(TWO_DAYS, "test data")
    for kpi, value in {"revenue": "3,000.50", "orders": "10", "aov": "300.05", "new_customers": "6"}.items():
        assert f'data-kpi="{kpi}"><span>' in page and f"<b>{value}</b>" in page
    assert '<span>Revenue (THB)</span>' in page and '<span>AOV (THB)</span>' in page
    for view in ["sales", "customer-analytics", "product-performance", "data-quality"]:
        assert f'<a href="#{view}">' in page and f'<h2 id="{view}">' in page
    for panel in PANELS:
        assert f'<section class="panel" id="{panel}">' in page
    assert "<script src=" not in page and "<link" not in page  # nothing to fetch: plotly.js is inside


class RefreshSensor:
    def __init__(self, instance: dg.DagsterInstance):
        self.instance, self.cursor = instance, None

    def tick(self):
        context = dg.build_multi_asset_sensor_context(
            monitored_assets=DASHBOARD_MODELS, instance=self.instance, cursor=self.cursor, definitions=defs)
        result = refresh_dashboard_when_kpis_land(context)
        self.cursor = context.cursor
        return result


def land(instance: dg.DagsterInstance, key: dg.AssetKey, day: str):
    instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day))


def test_one_refresh_per_completed_set_of_kpis_and_none_after_a_failed_kpi_test():
    with dg.instance_for_test() as instance:
        sensor = RefreshSensor(instance)
        for key in DASHBOARD_MODELS[:-1]:
            land(instance, key, "2026-03-04")
        assert isinstance(sensor.tick(), dg.SkipReason)  # all but one

        land(instance, DASHBOARD_MODELS[-1], "2026-03-04")
        request = sensor.tick()
        assert isinstance(request, dg.RunRequest)
        assert request.tags["dagster/asset_partition_range_start"] == "2026-03-04"
        assert request.tags["dagster/asset_partition_range_end"] == "2026-03-04"
        assert isinstance(sensor.tick(), dg.SkipReason)  # nothing new, nothing requested

        # A backfill lands two days at once: one request for both.
        for day in ["2026-03-05", "2026-03-06"]:
            for key in DASHBOARD_MODELS:
                land(instance, key, day)
        request = sensor.tick()
        assert (request.tags["dagster/asset_partition_range_start"],
                request.tags["dagster/asset_partition_range_end"]) == ("2026-03-05", "2026-03-06")

        # A dbt test of a KPI model fails (ERROR): the next set is not served.
        unique_date = next(key for key in metric_models.check_keys
                           if key.asset_key.path[-1] == "agg_sales_kpi" and key.name.startswith("unique"))
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=unique_date.asset_key, check_name=unique_date.name, passed=False,
            severity=dg.AssetCheckSeverity.ERROR))
        for key in DASHBOARD_MODELS:
            land(instance, key, "2026-03-07")
        skipped = sensor.tick()
        assert isinstance(skipped, dg.SkipReason)
        assert f"{unique_date.asset_key.to_user_string()} {unique_date.name}" in skipped.skip_message


def chromium() -> str:
    """Debian's chromium; .ci/run installs it. Elsewhere a missing browser is a loud skip."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("BROWSER TESTS NOT RUN: no chromium on PATH (apt-get install chromium)")
    return browser


def test_the_dashboard_draws_its_eleven_charts_in_a_real_browser_offline(tmp_path):
    page = tmp_path / "dashboard.html"
    page.write_text(render(TWO_DAYS, "test data"))
    browser = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--virtual-time-budget=10000", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    subprocess.run([*browser, f"--screenshot={tmp_path / 'dashboard.png'}", page.as_uri()],
                   capture_output=True, timeout=300, check=True)

    # Plotly drew an SVG chart in each panel: the page needed nothing from the network.
    for panel in PANELS:
        section = dom.split(f'id="{panel}"')[1].split("</section>")[0]
        assert 'class="main-svg"' in section, panel
    assert len(re.findall(r'class="[^"]*\bjs-plotly-plot\b', dom)) == len(PANELS)
    # The numbers a person reads: the headline cards, the axis labels and titles, the cohort cells.
    assert "<b>3,000.50</b>" in dom and "<b>300.05</b>" in dom
    assert ">Books<" in dom and ">Toys<" in dom
    assert ">Revenue (THB)<" in dom and ">Months since first order<" in dom
    assert ">2026-02 (4)<" in dom and ">50%<" in dom  # the February cohort of 4: half came back
    assert ">champions<" in dom and ">Lego castle<" in dom
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
