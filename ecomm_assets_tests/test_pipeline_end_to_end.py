"""The pipeline end to end: ecomm-db -> landing -> Bronze/Silver/Gold -> dbt KPIs and metrics.

The KPIs and the customer and product metrics are checked against the source tables themselves,
computed here in PostgreSQL with the contract's rules: order_date is the ICT date of ordered_at,
and a line counts when its order has a valid status, its price and quantity are valid and its
order, customer and product exist.
"""

import json
import random
from decimal import Decimal

import dagster as dg
import pytest
from support import DAYS, NIGHTLY, SERVED_TABLES, source_rows

from ecomm_assets.alerts.sensor import Alerting, failure_alerts
from ecomm_assets.definitions import defs
from ecomm_assets.local_stack import StepReport, unbuilt

pytestmark = pytest.mark.slow

VALID_LINES = """
    FROM order_items i
    JOIN orders o ON o.order_id = i.order_id
    JOIN customers c ON c.customer_id = o.customer_id
    JOIN products p ON p.product_id = i.product_id
    WHERE o.status IN ('shipped', 'delivered', 'cancelled', 'pending')
      AND i.item_price >= 0 AND i.quantity > 0 AND p.unit_price >= 0
"""
ORDER_DATE = "(o.ordered_at AT TIME ZONE 'Asia/Bangkok')::date"


def expected_sales_kpi(shop):
    return source_rows(shop, f"""
        SELECT {ORDER_DATE}, sum(i.item_price), count(DISTINCT o.order_id),
               round(sum(i.item_price) / count(DISTINCT o.order_id), 2)
        {VALID_LINES} GROUP BY 1""")


def expected_product_kpi(shop):
    return source_rows(shop, f"""
        SELECT {ORDER_DATE}, p.product_id, p.product_name, p.category, sum(i.quantity), sum(i.item_price)
        {VALID_LINES} GROUP BY 1, 2, 3, 4""")


def expected_customer_kpi(shop):
    return source_rows(shop, f"""
        WITH lines AS (SELECT {ORDER_DATE} AS order_date, o.customer_id {VALID_LINES}),
             firsts AS (SELECT customer_id, min(order_date) AS first_day FROM lines GROUP BY 1)
        SELECT l.order_date, count(DISTINCT l.customer_id),
               count(DISTINCT l.customer_id) FILTER (WHERE f.first_day = l.order_date)
        FROM lines l JOIN firsts f USING (customer_id) GROUP BY 1""")


ORDERS = f"""
    SELECT o.order_id, o.customer_id, {ORDER_DATE} AS order_date, o.status,
           sum(i.quantity) AS items, sum(i.item_price) AS revenue
    {VALID_LINES} GROUP BY 1, 2, 3, 4"""


def expected_customer_lifetime(shop):
    """Per customer: dates, orders, items, gross and net revenue (no cancelled orders), AOV half up,
    days since the last order to the data's last day, new/returning, RFM by quintile of percent
    rank and the segment rules."""
    return source_rows(shop, f"""
        WITH orders AS ({ORDERS}),
        per_customer AS (
            SELECT customer_id, min(order_date) AS first_day, max(order_date) AS last_day, count(*) AS n,
                   sum(items) AS items, sum(revenue) AS gross,
                   coalesce(sum(revenue) FILTER (WHERE status <> 'cancelled'), 0) AS net
            FROM orders GROUP BY 1),
        measured AS (SELECT *, max(last_day) OVER () - last_day AS recency FROM per_customer),
        scored AS (
            SELECT *, least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY recency DESC))) AS r,
                   least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY n))) AS f,
                   least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY net))) AS m
            FROM measured)
        SELECT s.customer_id, s.first_day, s.last_day, s.n, s.items, s.gross, s.net, round(s.gross / s.n, 2), s.recency,
               CASE WHEN n > 1 THEN 'returning' ELSE 'new' END, r, f, m,
               CASE WHEN n = 1 AND r >= 4 THEN 'new' WHEN r >= 4 AND f >= 4 THEN 'champions'
                    WHEN r >= 3 AND f >= 3 THEN 'loyal' WHEN r <= 2 AND f >= 3 THEN 'at_risk'
                    WHEN r <= 2 THEN 'hibernating' ELSE 'needs_attention' END,
               trim(c.city)
        FROM scored s JOIN customers c ON c.customer_id = s.customer_id""")


def expected_customer_cohort(shop):
    """Per cohort (month of the first order) and each month of the data since: active customers,
    retention, revenue and cumulative revenue per cohort customer."""
    return source_rows(shop, f"""
        WITH orders AS ({ORDERS}),
        lines AS (SELECT customer_id, date_trunc('month', order_date)::date AS month, revenue FROM orders),
        firsts AS (SELECT customer_id, min(month) AS cohort FROM lines GROUP BY 1),
        sizes AS (SELECT cohort, count(*) AS size FROM firsts GROUP BY 1),
        grid AS (SELECT cohort, size, month FROM sizes JOIN (SELECT DISTINCT month FROM lines) m ON m.month >= cohort),
        activity AS (SELECT cohort, month, count(DISTINCT customer_id) AS active, sum(revenue) AS revenue
                     FROM lines JOIN firsts USING (customer_id) GROUP BY 1, 2)
        SELECT cohort, ((extract(year FROM month) - extract(year FROM cohort)) * 12
                        + extract(month FROM month) - extract(month FROM cohort))::int,
               month, size, coalesce(active, 0), round(coalesce(active, 0)::numeric / size, 4),
               coalesce(revenue, 0), round(coalesce(revenue, 0) / size, 2),
               round(sum(coalesce(revenue, 0)) OVER (PARTITION BY cohort ORDER BY month) / size, 2)
        FROM grid LEFT JOIN activity USING (cohort, month)""")


def expected_product_performance(shop):
    """Per product and month: units, revenue, orders, price, ranks, revenue share, cancellations."""
    return source_rows(shop, f"""
        WITH monthly AS (
            SELECT date_trunc('month', {ORDER_DATE})::date AS month, p.product_id, p.product_name,
                   p.category, sum(i.quantity) AS units, sum(i.item_price) AS revenue,
                   count(DISTINCT o.order_id) AS n,
                   count(DISTINCT o.order_id) FILTER (WHERE o.status = 'cancelled') AS cancelled
            {VALID_LINES} GROUP BY 1, 2, 3, 4)
        SELECT month, product_id, product_name, category, units, revenue, n, round(revenue / units, 2),
               rank() OVER (PARTITION BY month ORDER BY revenue DESC),
               rank() OVER (PARTITION BY month, category ORDER BY revenue DESC),
               round(revenue / sum(revenue) OVER (PARTITION BY month), 4), round(cancelled::numeric / n, 4)
        FROM monthly""")


def metric_rows(pipeline, table: str, columns: str) -> list[tuple]:
    return sorted(pipeline.query(f"SELECT {columns} FROM dbt_prod_metric.{table}"), key=repr)


def assert_kpis_match_source(pipeline, shop):
    assert pipeline.rows("dbt_prod_metric.agg_sales_kpi") == expected_sales_kpi(shop)
    assert pipeline.rows("dbt_prod_metric.agg_product_kpi") == expected_product_kpi(shop)
    assert pipeline.rows("dbt_prod_metric.agg_customer_kpi") == expected_customer_kpi(shop)
    assert metric_rows(pipeline, "agg_customer_lifetime", """customer_id, first_order_date, last_order_date,
        order_count, items, gross_revenue, net_revenue, avg_order_value, days_since_last_order, customer_type,
        recency_score, frequency_score, monetary_score, segment, current_city""") == expected_customer_lifetime(shop)
    assert metric_rows(pipeline, "agg_customer_cohort", """cohort_month, months_since_first_order, order_month,
        cohort_size, active_customers, retention_rate, revenue, revenue_per_customer,
        cumulative_revenue_per_customer""") == expected_customer_cohort(shop)
    assert metric_rows(pipeline, "agg_product_performance", """order_month, product_id, product_name, category,
        units, revenue, order_count, avg_selling_price, revenue_rank, revenue_rank_in_category, revenue_share,
        cancellation_rate""") == expected_product_performance(shop)


def test_kpis_equal_an_independent_computation_from_the_source(shop, new_pipeline):
    pipeline = new_pipeline()
    pipeline.materialize(DAYS[0], DAYS[2])  # a single-run backfill of three days
    pipeline.materialize(DAYS[3])
    result = pipeline.materialize(DAYS[4])

    assert_kpis_match_source(pipeline, shop)
    assert len(expected_sales_kpi(shop)) == len(DAYS)
    assert pipeline.query("SELECT comment FROM duckdb_columns() WHERE schema_name = 'dbt_prod_metric' AND table_name = "
                          "'agg_customer_lifetime' AND column_name = 'net_revenue'") == [
        ("Gross revenue without cancelled orders, in Thai baht.",)]  # descriptions persisted as comments
    sales = expected_sales_kpi(shop)
    sales_kpi = next(e.materialization.metadata for e in result.get_asset_materialization_events()
                     if e.asset_key == dg.AssetKey(["dbt_prod_metric", "agg_sales_kpi"]))
    assert sales_kpi["dagster/row_count"].value == len(DAYS)
    assert sales_kpi["preview"].value.splitlines()[2].startswith(f"| {DAYS[-1]} | {sales[-1][1]} |")
    page = (pipeline.home / "dashboard/ecommerce_analytics.html").read_text()
    assert f'data-kpi="revenue"><span>Revenue (THB)</span><b>{sum(r[1] for r in sales):,.2f}</b>' in page
    assert f'data-kpi="orders"><span>Orders</span><b>{sum(r[2] for r in sales):,}</b>' in page

    # Every source row is accounted for. Each partition's file holds the rows the extract counted
    # in the source (its manifest) and Bronze holds exactly those; Silver holds the version of
    # every key the source had at the extract (the reconciliation), and each of them is either in
    # the star schema or in quarantine with the rules it broke.
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    for source_table, star_table in [("customers", "dim_customer"), ("products", "dim_product"),
                                     ("orders", "dim_orders"), ("order_items", "fact_orders")]:
        (source_count,), = source_rows(shop, f"SELECT count(*) FROM {source_table}")
        (in_window,), = source_rows(shop, f"""SELECT count(*) FROM {source_table}
            WHERE updated_at >= '2026-03-04 00:00+07' AND updated_at < '2026-03-06 00:00+07'""")
        landed = checks[(f"bronze/{source_table}", "rows_match_manifest")]
        assert landed.passed
        assert landed.metadata["source_rows"].value == landed.metadata["table_rows"].value == in_window
        assert checks[(f"bronze/{source_table}_keys", "rows_match_manifest")].metadata["table_rows"].value == source_count
        assert len(pipeline.rows(f"silver.{source_table}")) == source_count
        quarantined = len(pipeline.rows(f"silver.{source_table}_quarantine"))
        assert len(pipeline.rows(f"silver.{star_table}")) + quarantined == source_count
    assert checks[("silver/source_reconciliation", "in_sync")].passed
    assert sum(row[2] for row in pipeline.rows("silver.source_reconciliation")) == sum(
        count for (count,) in source_rows(shop, """SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM products)
            + (SELECT count(*) FROM orders) + (SELECT count(*) FROM order_items)"""))
    def quarantined(table: str, rule: str) -> int:
        return pipeline.query(f"SELECT count(*) FROM silver.{table}_quarantine "
                              f"WHERE list_contains(_failed_rules, '{rule}')")[0][0]
    assert quarantined("orders", "valid_status") == 3
    assert quarantined("order_items", "valid_price") == 3
    (lines_of_invalid_orders,), = source_rows(shop, """SELECT count(*) FROM order_items i
        JOIN orders o USING (order_id) WHERE o.status = 'returned'""")
    assert quarantined("order_items", "valid_reference") == lines_of_invalid_orders
    assert checks[("silver/order_items", "valid_reference")].metadata["failed_records"].value == lines_of_invalid_orders
    assert checks[("silver/star_key_violations", "unique_keys")].passed
    assert len(pipeline.rows("gold.sales_analytics")) == len(pipeline.rows("silver.fact_orders"))


def test_any_order_of_runs_and_a_late_update_give_the_from_scratch_kpis(shop, new_pipeline):
    daily = new_pipeline("daily")
    order = DAYS[:]
    random.Random(3).shuffle(order)
    for day in order + order[:2]:  # every day once in shuffled order, then two re-runs
        daily.materialize(day, selection=NIGHTLY)

    # A late update: on 2026-03-06 an order placed on the first day is cancelled and one of its
    # lines is re-priced. Only the 2026-03-06 partition sees these rows.
    (order_id, ordered_on), = source_rows(shop, """
        SELECT o.order_id, (o.ordered_at AT TIME ZONE 'Asia/Bangkok')::date FROM orders o
        WHERE o.status = 'delivered' AND (o.ordered_at AT TIME ZONE 'Asia/Bangkok')::date = '2026-03-01'
        ORDER BY o.order_id LIMIT 1""")
    before = dict((row[0], row) for row in expected_sales_kpi(shop))[ordered_on]
    with shop.resource().connect() as connection:
        connection.execute("UPDATE orders SET status = 'cancelled', updated_at = '2026-03-06 10:00+07' "
                           "WHERE order_id = %s", (order_id,))
        connection.execute("UPDATE order_items SET item_price = item_price + 1000, updated_at = '2026-03-06 10:05+07' "
                           "WHERE order_item_id = (SELECT min(order_item_id) FROM order_items WHERE order_id = %s)",
                           (order_id,))
    daily.materialize("2026-03-06", selection=NIGHTLY)
    # The metrics of the days the shop traded: 2026-03-06 has no order (dbt's orders_on_every_day).
    daily.materialize(DAYS[0], DAYS[-1], selection="group:metrics")
    # No run built every asset, yet each day of each asset is built but the dashboard's: `make run`
    # of these days judges by what is materialized, not by which run did it.
    every_asset = dg.AssetSelection.all().resolve(defs.resolve_asset_graph())
    assert unbuilt(daily.instance, every_asset, DAYS[0], DAYS[-1]) == {"dashboard/ecommerce_analytics": DAYS}

    from_scratch = new_pipeline("from_scratch")
    from_scratch.materialize(DAYS[0], "2026-03-06", selection=NIGHTLY)
    from_scratch.materialize(DAYS[0], DAYS[-1], selection="group:metrics")
    assert daily.served() == from_scratch.served()
    assert_kpis_match_source(daily, shop)
    first_day = dict((row[0], row) for row in daily.rows("dbt_prod_metric.agg_sales_kpi"))[ordered_on]
    assert first_day[1] == before[1] + Decimal(1000)  # the old date's revenue moved with the update


def test_rematerializing_a_partition_rewrites_no_file_and_changes_no_table(shop, new_pipeline):
    """The re-run extracts its day again into new files beside the first (landed files are
    immutable); Bronze reads the new ones once, the change feed leaves out the rows it holds
    already, and no served table changes. The first extract's files, superseded and read in full
    by Bronze, are retired; every other file stays byte for byte."""
    pipeline = new_pipeline()
    pipeline.materialize(DAYS[0], DAYS[-1])
    feeds = [f"silver.{table}_changes" for table in ["customers", "products", "orders", "order_items"]]
    before = {table: pipeline.rows(table) for table in SERVED_TABLES + feeds}
    landed = {p: p.read_bytes() for p in (pipeline.home / "landing").rglob("*.csv") if "key_snapshot" not in str(p)}
    first_extract = pipeline.landed("orders", DAYS[2])

    pipeline.materialize(DAYS[2])

    assert {table: pipeline.rows(table) for table in SERVED_TABLES + feeds} == before
    retired = {p for p in landed if f"ingestion_date={DAYS[2]}" in str(p)}
    assert first_extract in retired and not any(p.exists() for p in retired)
    assert {p: p.read_bytes() for p in landed if p not in retired} == {p: c for p, c in landed.items() if p not in retired}
    second_extract = pipeline.landed("orders", DAYS[2])
    assert second_extract != first_extract and second_extract.read_bytes().count(b"\n") > 1
    manifest = json.loads(first_extract.with_name("_manifest.json").read_text())
    assert first_extract.name in manifest["superseded"] and second_extract.name in manifest["files"]
    assert pipeline.query(f"SELECT count(DISTINCT _extracted_at) FROM bronze.orders "
                          f"WHERE _ingestion_date = DATE '{DAYS[2]}'") == [(2,)]


def test_each_run_records_its_checks_on_its_days(shop, new_pipeline, tmp_path):
    """What the UI's partition view reads: each ingestion date's check result, failed on the days
    whose rows break the rule and passed on the others, for daily runs and a range backfill alike."""
    bad_days = {day for (day,) in source_rows(shop, """
        SELECT DISTINCT to_char(updated_at AT TIME ZONE 'Asia/Bangkok', 'YYYY-MM-DD') FROM orders
        WHERE status NOT IN ('shipped', 'delivered', 'cancelled', 'pending')""")}
    good_day = next(day for day in DAYS if day not in bad_days)
    bad_day = min(bad_days)
    valid_status = dg.AssetCheckKey(dg.AssetKey(["silver", "orders"]), "valid_status")
    with dg.instance_for_test() as instance:
        def recorded() -> dict[str, str]:
            return {info.partition_key: info.latest_execution_status.value for info in
                    instance.event_log_storage.get_asset_check_partition_info([valid_status])}

        daily = new_pipeline("daily", instance)  # the 01:00 job, day by day
        daily.materialize(good_day, selection=NIGHTLY)
        daily.materialize(bad_day, selection=NIGHTLY)
        assert recorded() == {good_day: "SUCCEEDED", bad_day: "FAILED"}

        backfill = new_pipeline("backfill", instance).materialize(DAYS[0], DAYS[-1])
        assert recorded() == {day: "FAILED" if day in bad_days else "SUCCEEDED" for day in DAYS}

        # `make run` prints each failed check with its days and failing rows, under its step.
        [(bad_orders,)] = source_rows(shop, "SELECT count(*) FROM orders "
                                            "WHERE status NOT IN ('shipped', 'delivered', 'cancelled', 'pending')")
        report = StepReport(instance, backfill.run_id)
        report.read()
        lines = [line for step in report.started for line in report.lines(step)]
        assert (f"         failed check silver/orders valid_status (WARN) on {', '.join(sorted(bad_days))}: "
                f"{bad_orders} failing rows") in lines, lines
        [landing] = [line for line in lines if "landing_extracts" in line]
        assert landing.startswith("  ok     landing_extracts") and " rows landed " in landing

        # The alert of a backfill's failed check names the days it failed on.
        alerting = Alerting(alert_log=str(tmp_path / "alerts.jsonl"))
        cursor = json.dumps({"alert_log": {"after": instance.fetch_run_status_changes(  # just before the backfill ended
            dg.DagsterEventType.RUN_SUCCESS, limit=1).records[0].storage_id - 1, "sent": []}})
        failure_alerts(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"alerting": alerting}))
        titles = [json.loads(line)["title"] for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
        several = f" ({len(bad_days)} days)" if len(bad_days) > 1 else ""  # one day's title is a daily run's
        assert f"Check failed (WARN): silver/orders valid_status, partition {', '.join(sorted(bad_days))}{several}" \
               in titles
        assert len(titles) == len({title.split(",")[0] for title in titles})  # one per failed check
