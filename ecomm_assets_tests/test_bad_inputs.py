"""A catalog of bad inputs: each is written into ecomm-db (its constraints loosened where the
input needs it), the whole pipeline runs once, and each test states what became of it: kept,
normalised, quarantined with the rules it broke, or a check that fails. No row goes missing:
every source row is in the star schema or in quarantine, or a failing check counts it.

All of them change on 2026-03-03 (ICT), among the small shop's ordinary rows.
"""

import json
from datetime import date, timedelta

import dagster as dg
import psycopg
import pytest
from bad_inputs import BAD_INPUTS
from support import DAYS, FIRST_DAY, SMALL_SHOP, Pipeline, source_rows

from ecomm_assets.source import demo_data


@pytest.fixture(scope="module")
def run(postgres, tmp_path_factory):
    """The small shop plus the bad inputs, through the whole pipeline in one run."""
    postgres.create_source_schema()
    with psycopg.connect(postgres.resource().conninfo()) as connection:
        demo_data.generate(connection, FIRST_DAY, FIRST_DAY + timedelta(days=len(DAYS)), SMALL_SHOP, seed=7)
        connection.execute(BAD_INPUTS)
    pipeline = Pipeline(tmp_path_factory.mktemp("bad_inputs"), postgres)
    result = pipeline.materialize(DAYS[0], DAYS[-1])
    checks = {(e.asset_key.to_user_string(), e.check_name, e.partition): e for e in result.get_asset_check_evaluations()}
    return pipeline, checks


def rows(pipeline: Pipeline, table: str, columns: str, where: str) -> list[tuple]:
    return sorted(pipeline.query(f"SELECT {columns} FROM {table} WHERE {where}"), key=repr)


def quarantined(pipeline: Pipeline, table: str, key: str) -> dict:
    """{key: (sorted rules broken, source file name, ingestion date)} of the quarantined bad inputs."""
    return {k: (sorted(rules), file.rsplit("/", 2)[-2], str(day)) for k, rules, file, day in rows(
        pipeline, f"silver.{table}_quarantine", f"{key}, _failed_rules, _source_file, _ingestion_date",
        f"{key} >= 900000 OR {key} IS NULL")}


def test_text_is_kept_as_written_trimmed(run):
    pipeline, _ = run
    assert rows(pipeline, "silver.dim_customer", "customer_id, first_name, last_name, email, city, country",
                "customer_id >= 900000") == [
        (900001, 'Anne, "Annie"', "O'Brien \\ Smith", "anne.obrien@example.com", "New\nYork", "United\tStates"),
        (900002, "สมชาย 😀", "李小龍", "somchai@example.com", "Zürich", "ไทย"),
        (900003, "", "Empty", "empty@example.com", "Bangkok", "Thailand"),  # an empty string stays one
        (900004, None, "Null", "null@example.com", "Bangkok", "Thailand"),  # and NULL stays NULL
    ]


def test_status_is_compared_lower_case_and_trimmed(run):
    pipeline, _ = run
    assert rows(pipeline, "silver.dim_orders", "order_id, status", "order_id = 900001") == [(900001, "shipped")]


def test_a_payment_method_the_shop_does_not_accept_is_kept_as_unknown_and_warned_of(run):
    pipeline, checks = run
    assert rows(pipeline, "gold.sales_analytics", "order_id, payment_method, payment_method_key",
                "order_id IN (900001, 900003)") == [(900001, "PromptPay", "promptpay"), (900003, "bitcoin", "unknown")]
    warning = checks[("silver/orders_changes", "valid_payment_method", "2026-03-03")]
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert warning.metadata["partition_failed_records"].value == 1
    assert all(check.passed for (_, name, day), check in checks.items()
               if name == "valid_payment_method" and day != "2026-03-03")


def test_order_date_is_the_day_in_bangkok_to_the_microsecond(run):
    pipeline, _ = run
    assert rows(pipeline, "silver.dim_orders", "order_id, order_date", "order_id IN (900003, 900004)") == [
        (900003, date(2026, 3, 3)), (900004, date(2026, 3, 2))]
    assert rows(pipeline, "gold.sales_analytics", "order_item_id, order_date", "order_item_id IN (900002, 900003)") == [
        (900002, date(2026, 3, 3)), (900003, date(2026, 3, 2))]


def test_rows_breaking_a_rule_are_quarantined_with_its_name(run):
    pipeline, checks = run
    landed = ("ingestion_date=2026-03-03", "2026-03-03")
    assert quarantined(pipeline, "orders", "order_id") == {
        None: (["valid_id"], *landed),
        900002: (["valid_status"], *landed),
    }
    assert quarantined(pipeline, "products", "product_id") == {900001: (["valid_price"], *landed)}
    assert quarantined(pipeline, "order_items", "order_item_id") == {
        900004: (["valid_quantity"], *landed),  # zero
        900005: (["valid_quantity"], *landed),  # negative
        900006: (["valid_price"], *landed),  # negative
        900007: (["valid_price"], *landed),  # not a number
        900008: (["valid_reference"], *landed),  # no such product
        900009: (["valid_reference"], *landed),  # no such order
        900010: (["valid_reference"], *landed),  # its order is quarantined
        900011: (["valid_reference"], *landed),  # its product is quarantined
    }
    # The checks of that day fail and count them; the quarantine is named where a person looks.
    status = checks[("silver/orders", "valid_status", "2026-03-03")]
    assert not status.passed
    assert status.metadata["quarantine"].value == "ecomm_dw.silver.orders_quarantine"
    assert checks[("silver/order_items", "valid_quantity", "2026-03-03")].metadata["partition_failed_records"].value == 2
    assert checks[("silver/orders", "valid_id", "2026-03-03")].metadata["partition_failed_records"].value == 1


def test_an_added_source_column_is_rescued_in_bronze_and_warned_of(run):
    pipeline, checks = run
    landed = rows(pipeline, "bronze.products", "_ingestion_date, _rescued_data", "product_id = '900002'")
    # landed on its day and again by the next day's lookback
    assert [(str(day), json.loads(rescued)["supplier"]) for day, rescued in landed] == [
        ("2026-03-03", "ACME Gifts Ltd"), ("2026-03-04", "ACME Gifts Ltd")]
    assert rows(pipeline, "silver.dim_product", "product_id, product_name", "product_id = 900002") == [
        (900002, "Gift box")]
    # and a person is told, on both days, which column is new
    for day in ["2026-03-03", "2026-03-04"]:
        drift = checks[("bronze/rescued_columns", "no_new_source_columns", day)]
        assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
        assert drift.metadata["partition_failed_records"].value == 1
        assert set(drift.metadata["failed_sample"].value) == {"products.supplier"}
    assert checks[("bronze/rescued_columns", "no_new_source_columns", "2026-03-02")].passed


def test_a_key_twice_in_the_source_fails_the_reconciliation(run):
    """Silver holds one version per key: the later of the two rows with order_id 900005. The
    other cannot be placed, and the reconciliation counts it on its day."""
    pipeline, checks = run
    assert rows(pipeline, "silver.dim_orders", "order_id, status", "order_id = 900005") == [(900005, "delivered")]
    in_sync = checks[("silver/source_reconciliation", "in_sync", "2026-03-03")]
    assert not in_sync.passed
    assert rows(pipeline, "silver.source_reconciliation", "source_table, source_rows - silver_rows",
                "source_rows <> silver_rows") == [("orders", 1)]


def test_the_quality_score_of_the_day_counts_each_bad_input_once(run):
    """2026-03-03 holds the bad inputs. Each dimension's score is the share of rows that passed,
    rounded half up; overall weighs completeness 30, validity 30, referential integrity 20,
    uniqueness 10, consistency 10."""
    pipeline, checks = run
    scores = {(table, dimension): (judged, failed, str(score)) for table, dimension, judged, failed, score in rows(
        pipeline, "silver.data_quality", "source_table, dimension, rows, failed_rows, score",
        "_ingestion_date = DATE'2026-03-03'")}
    # the refund voucher's price of -1.00 is one of the day's two products
    assert scores[("products", "validity")] == (2, 1, "50.00")
    assert scores[("products", "overall")] == (None, None, "85.00")  # 30 + 15 + 20 + 10 + 10
    # order 900005 twice: the extract's second copy breaks uniqueness, the version Silver cannot
    # hold breaks completeness (1 of 61); NULL key, 'returned' and bitcoin make 3 invalid orders of
    # the 61 held
    assert scores[("orders", "uniqueness")] == (62, 1, "98.39")
    assert scores[("orders", "completeness")] == (61, 1, "98.36")
    assert scores[("orders", "validity")] == (61, 3, "95.08")
    assert scores[("orders", "overall")] == (None, None, "97.87")  # (30*98.36 + 30*95.08 + 20*100 + 10*98.39 + 10*100) / 100
    # 10 lines point at an order or product outside the star, 4 bad lines plus 1 of the demo break a value rule
    assert scores[("order_items", "referential_integrity")] == (266, 10, "96.24")
    assert scores[("order_items", "validity")] == (266, 5, "98.12")
    assert scores[("order_items", "overall")] == (None, None, "98.68")  # (30*100 + 30*98.12 + 20*96.24 + 10*100 + 10*100) / 100
    assert {score for (table, _), (_, _, score) in scores.items() if table == "customers"} == {"100.00"}
    # below 95 warns on that day only: products
    warning = checks[("silver/data_quality", "quality_above_threshold", "2026-03-03")]
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert warning.metadata["partition_failed_records"].value == 1
    assert all(check.passed for (_, name, day), check in checks.items()
               if name == "quality_above_threshold" and day != "2026-03-03")


def test_every_source_row_is_in_the_star_or_in_quarantine(run, postgres):
    pipeline, checks = run
    for source_table, star_table, duplicates in [("customers", "dim_customer", 0), ("products", "dim_product", 0),
                                                 ("orders", "dim_orders", 1), ("order_items", "fact_orders", 0)]:
        (source_count,), = source_rows(postgres, f"SELECT count(*) FROM {source_table}")
        star = len(rows(pipeline, f"silver.{star_table}", "1", "true"))
        quarantine = len(rows(pipeline, f"silver.{source_table}_quarantine", "1", "true"))
        assert star + quarantine + duplicates == source_count, source_table
    for (asset, check, _), evaluation in checks.items():
        if check == "rows_match_manifest":
            assert evaluation.passed, asset


def test_the_kpis_count_exactly_the_valid_rows(run, postgres):
    """No bad input moves a number: revenue and orders per day equal those computed here from the
    source with the contract's rules (the later row of the doubled key, text prices that are no
    number left out, status compared trimmed and lower-cased)."""
    pipeline, _ = run
    expected = source_rows(postgres, """
        WITH o AS (SELECT DISTINCT ON (order_id) * FROM orders WHERE order_id IS NOT NULL
                   ORDER BY order_id, updated_at DESC),
             i AS (SELECT *, CASE WHEN item_price ~ '^-?[0-9]+(\\.[0-9]+)?$' THEN item_price::numeric END AS price
                   FROM order_items)
        SELECT (o.ordered_at AT TIME ZONE 'Asia/Bangkok')::date, sum(i.price), count(DISTINCT o.order_id)
        FROM i JOIN o USING (order_id)
        JOIN customers c ON c.customer_id = o.customer_id
        JOIN products p ON p.product_id = i.product_id
        WHERE lower(trim(o.status)) IN ('shipped', 'delivered', 'cancelled', 'pending')
          AND i.price >= 0 AND i.quantity > 0 AND p.unit_price >= 0
        GROUP BY 1""")
    assert rows(pipeline, "dbt_prod_metric.agg_sales_kpi", "order_date, revenue, order_count", "true") == expected
