"""Freshness: Gold and the KPIs hold yesterday's partition by 05:00 Asia/Bangkok.

The code location's freshness checks run, as their sensor runs them, over an instance that
records which partitions were materialized; Dagster's clock is set to the morning in question.
"""

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.test_utils import freeze_time

from ecomm_assets.alerts.sensor import Alerting, failure_alerts
from ecomm_assets.definitions import defs, freshness_checks

ICT = ZoneInfo("Asia/Bangkok")
CHECKED = ["gold/sales_analytics", "gold/agg_daily_sales", "dbt_prod_metric/agg_sales_kpi",
           "dbt_prod_metric/agg_product_kpi", "dbt_prod_metric/agg_customer_kpi",
           "dbt_prod_metric/agg_customer_lifetime", "dbt_prod_metric/agg_customer_cohort",
           "dbt_prod_metric/agg_product_performance"]


def run_freshness_checks(instance: dg.DagsterInstance, now: datetime) -> dict[str, bool]:
    keys = [key for checks in freshness_checks for key in checks.check_keys]
    with freeze_time(now):
        job = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection=set(), asset_check_selection=set(keys))
        result = job.execute_in_process(instance=instance)
    return {e.asset_key.to_user_string(): e.passed for e in result.get_asset_check_evaluations()}


def test_gold_and_kpis_must_hold_yesterday_by_five_in_bangkok():
    with dg.instance_for_test() as instance:
        for asset in CHECKED:  # everything landed for 2026-03-04
            instance.report_runless_asset_event(dg.AssetMaterialization(asset.split("/"), partition="2026-03-04"))
        # 2026-03-05 landed for Gold, not yet for the KPIs
        for asset in CHECKED[:2]:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset.split("/"), partition="2026-03-05"))

        # Before 05:00 on 2026-03-06 the day due is 2026-03-04: all fresh.
        assert run_freshness_checks(instance, datetime(2026, 3, 6, 4, 59, tzinfo=ICT)) == dict.fromkeys(CHECKED, True)
        # From 05:00 the 2026-03-05 partition is due: the KPIs are late.
        assert run_freshness_checks(instance, datetime(2026, 3, 6, 5, 1, tzinfo=ICT)) == {
            asset: asset.startswith("gold/") for asset in CHECKED}


def test_a_sensor_runs_the_freshness_checks_by_default():
    sensor = defs.resolve_sensor_def("freshness_checks_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_sensor_def("failure_alerts").default_status == dg.DefaultSensorStatus.RUNNING


def test_a_late_partition_is_alerted_with_what_is_missing_and_the_deadline(tmp_path):
    with dg.instance_for_test() as instance:
        for asset in CHECKED:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset.split("/"), partition="2026-03-04"))
        run_freshness_checks(instance, datetime(2026, 3, 6, 5, 1, tzinfo=ICT))
        alert_log = tmp_path / "alerts.jsonl"
        # from the first run on: the checks ran at a frozen time, long before the sensor's first look-back
        cursor = json.dumps({"alert_log": {"after": 0, "sent": []}})
        failure_alerts(dg.build_sensor_context(instance=instance, cursor=cursor,
                                               resources={"alerting": Alerting(alert_log=str(alert_log))}))

    alerts = {alert["fields"]["asset"]: alert for alert in map(json.loads, alert_log.read_text().splitlines())}
    assert set(alerts) == set(CHECKED)
    kpis = alerts["dbt_prod_metric/agg_sales_kpi"]
    assert kpis["title"] == "Check failed (WARN): dbt_prod_metric/agg_sales_kpi freshness_check, partition 2026-03-05"
    assert kpis["fields"]["reason"] == "Asset is overdue. We expected partition 2026-03-05 to have arrived, and it has not."
    assert kpis["fields"]["deadline"] == "2026-03-06 05:00 Asia/Bangkok (cron 0 5 * * *)"
