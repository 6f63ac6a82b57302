"""History: what Silver remembers of the versions ecomm-db went through, and what Gold makes of it.

The source here is written by hand, a change at a time, each followed by the nightly run of its
day: a customer who moves twice, a product repriced between two orders, an order that goes
pending -> shipped -> delivered, a customer deleted, and a change dated in the future.
"""

import pytest
from support import NIGHTLY

pytestmark = pytest.mark.slow


@pytest.fixture
def nightly(postgres, new_pipeline):
    """An empty ecomm-db and a pipeline home; ``run(day, *statements)`` writes the statements to
    the source, then runs the nightly job of ``day``."""
    postgres.create_source_schema()
    pipeline = new_pipeline()

    def run(day: str, *statements: str):
        with postgres.resource().connect() as connection:
            for statement in statements:
                connection.execute(statement)
        return pipeline.materialize(day, selection=NIGHTLY)

    return pipeline, run


def customer(customer_id: int, city: str, at: str, created: str = "2026-03-01 09:00+07") -> str:
    return (f"INSERT INTO customers VALUES ({customer_id}, 'Ann', 'Lee', 'ann{customer_id}@x.com', '{city}', "
            f"'Thailand', '{created}', '{at}') ON CONFLICT (customer_id) DO UPDATE SET city = EXCLUDED.city, "
            f"updated_at = EXCLUDED.updated_at")


def order(order_id: int, customer_id: int, product_id: int, quantity: int, price: str, at: str) -> list[str]:
    return [f"INSERT INTO orders VALUES ({order_id}, {customer_id}, '{at}', 'pending', 'credit_card', '{at}', '{at}')",
            f"INSERT INTO order_items VALUES ({order_id}, {order_id}, {product_id}, {quantity}, {price}, '{at}', '{at}')"]


def product(price: str, at: str) -> str:
    return (f"INSERT INTO products VALUES (1, 'Kettle', 'Home & Kitchen', {price}, '2026-03-01 08:00+07', '{at}') "
            "ON CONFLICT (product_id) DO UPDATE SET unit_price = EXCLUDED.unit_price, updated_at = EXCLUDED.updated_at")


def test_versions_of_customers_products_and_orders_and_the_facts_as_they_were(nightly):
    pipeline, run = nightly
    run("2026-03-01", customer(1, "Bangkok", "2026-03-01 09:00+07"), customer(2, "Hanoi", "2026-03-01 09:30+07"),
        product("100.00", "2026-03-01 08:00+07"), *order(1, 1, 1, 2, "200.00", "2026-03-01 10:00+07"))
    run("2026-03-02", customer(1, "Chiang Mai", "2026-03-02 11:00+07"), product("120.00", "2026-03-02 12:00+07"),
        *order(2, 1, 1, 1, "120.00", "2026-03-02 15:00+07"),
        "UPDATE orders SET status = 'shipped', updated_at = '2026-03-02 16:00+07' WHERE order_id = 1")
    run("2026-03-03", customer(1, "Phuket", "2026-03-03 08:00+07"), *order(3, 1, 1, 3, "360.00", "2026-03-03 09:00+07"),
        "UPDATE orders SET status = 'delivered', updated_at = '2026-03-03 10:00+07' WHERE order_id = 1")

    # A customer who moved twice has three versions, one current, each valid until the next began.
    assert pipeline.query("""SELECT city, strftime(valid_from AT TIME ZONE 'Asia/Bangkok', '%m-%d %H:%M'),
        strftime(valid_to AT TIME ZONE 'Asia/Bangkok', '%m-%d %H:%M'), is_current FROM silver.dim_customer_history
        WHERE customer_id = 1 ORDER BY valid_from""") == [
        ("Bangkok", "03-01 09:00", "03-02 11:00", False),
        ("Chiang Mai", "03-02 11:00", "03-03 08:00", False),
        ("Phuket", "03-03 08:00", None, True)]
    # Each order carries the city at order time beside today's, and the list price it was sold at.
    assert pipeline.query("""SELECT s.order_id, s.customer_city_at_order, s.customer_city, s.list_price_at_order,
        s.quantity, s.customer_sk = h.customer_sk FROM gold.sales_analytics s
        JOIN silver.dim_customer_history h ON h.customer_id = s.customer_id AND h.city = s.customer_city_at_order
        ORDER BY 1""") == [
        (1, "Bangkok", "Phuket", 100, 2, True),
        (2, "Chiang Mai", "Phuket", 120, 1, True),
        (3, "Phuket", "Phuket", 120, 3, True)]
    # What the repricing did to units sold: 2 units at the old price, 4 at the new one.
    assert pipeline.query("""SELECT list_price_at_order, sum(quantity) FROM gold.sales_analytics
        WHERE product_id = 1 GROUP BY 1 ORDER BY 1""") == [(100, 2), (120, 4)]
    assert len({row[0] for row in pipeline.query("SELECT product_sk FROM gold.sales_analytics")}) == 2
    # The order's status history: fulfilment took two days.
    assert pipeline.query("""SELECT status, strftime(valid_from AT TIME ZONE 'Asia/Bangkok', '%m-%d %H:%M')
        FROM silver.order_status_history WHERE order_id = 1 ORDER BY valid_from""") == [
        ("pending", "03-01 10:00"), ("shipped", "03-02 16:00"), ("delivered", "03-03 10:00")]


def test_a_deleted_customers_last_version_is_closed_and_a_future_dated_change_is_landed_and_flagged(nightly):
    pipeline, run = nightly
    run("2026-03-01", customer(1, "Bangkok", "2026-03-01 09:00+07"), customer(2, "Hanoi", "2026-03-01 09:30+07"))
    # A clock ahead: customer 3's change is dated years after today's extract reads it.
    result = run("2026-03-02", "DELETE FROM customers WHERE customer_id = 2",
                 customer(3, "Manila", "2031-01-01 00:00+07", created="2026-03-02 10:00+07"))

    [(deleted_at, extracted_at)] = pipeline.query(
        "SELECT h.valid_to, c._extracted_at FROM silver.dim_customer_history h JOIN silver.customers_changes c "
        "ON c.customer_id = h.customer_id AND c._deleted WHERE h.customer_id = 2")
    assert deleted_at == extracted_at  # closed when the extract saw the customer gone
    assert pipeline.query("SELECT customer_id, is_current FROM silver.dim_customer_history ORDER BY 1") == [
        (1, True), (2, False), (3, True)]
    assert [row[0] for row in pipeline.query("SELECT customer_id FROM silver.dim_customer ORDER BY 1")] == [1, 3]
    [flagged] = [e for e in result.get_asset_check_evaluations()
                 if e.asset_key.to_user_string() == "silver/customers_changes" and e.check_name == "not_future_dated"]
    assert not flagged.passed and flagged.partition == "2026-03-02"
    assert flagged.metadata["partition_failed_records"].value == 1
    [(row_key,)] = pipeline.query("SELECT _row_key FROM silver.customers_changes WHERE customer_id = 3")
    assert flagged.metadata["failed_sample"].value == [row_key]
