"""The demo shop: big enough to be interesting, alive before and during its window, and the same
for the same seed."""

from datetime import timedelta

import psycopg
from support import FIRST_DAY, source_rows

from ecomm_assets.source import demo_data

WINDOW = 30
SIZE = demo_data.DemoSize(days_before=60)
END = FIRST_DAY + timedelta(days=WINDOW)


def generate(postgres, seed):
    postgres.create_source_schema()
    with psycopg.connect(postgres.resource().conninfo()) as connection:
        return demo_data.generate(connection, FIRST_DAY, END, SIZE, seed=seed)


def snapshot(postgres):
    return {table: source_rows(postgres, f"SELECT * FROM {table}")
            for table in ("customers", "products", "orders", "order_items")}


def test_a_shop_that_was_there_before_its_window_and_lives_on_in_it(postgres):
    counts = generate(postgres, seed=1)

    assert counts["customers"] == SIZE.customers and counts["products"] == SIZE.products
    daily = source_rows(postgres, """SELECT (ordered_at AT TIME ZONE 'Asia/Bangkok')::date, count(*),
        extract(isodow FROM (ordered_at AT TIME ZONE 'Asia/Bangkok')::date) FROM orders GROUP BY 1""")
    assert len(daily) == WINDOW + SIZE.days_before  # every day has orders, the first as many as the last
    assert all(0.8 * SIZE.orders_per_day <= n <= 1.3 * SIZE.orders_per_day for _, n, _ in daily)
    by_weekday = {d: sum(n for _, n, dow in daily if dow == d) for d in range(1, 8)}
    assert by_weekday[6] > by_weekday[1]  # more on Saturdays than on Mondays
    [(signed_up_before, new_in_window)] = source_rows(postgres, f"""SELECT count(*) FILTER (WHERE created_at <
        '{FIRST_DAY.isoformat()}'), count(*) FILTER (WHERE created_at >= '{FIRST_DAY.isoformat()}') FROM customers""")
    assert signed_up_before > 10_000 and 20 * WINDOW <= new_in_window <= 40 * WINDOW  # about 30 sign-ups a day
    [(window_orders, returning)] = source_rows(postgres, f"""
        WITH o AS (SELECT customer_id, ordered_at, min(ordered_at) OVER (PARTITION BY customer_id) AS first FROM orders)
        SELECT count(*), count(*) FILTER (WHERE first < '{FIRST_DAY.isoformat()}') FROM o
        WHERE ordered_at >= '{FIRST_DAY.isoformat()}'""")
    assert returning > 0.6 * window_orders  # most of the window's orders come from customers who ordered before
    [(first_orders_at_sign_up,)] = source_rows(postgres, f"""SELECT bool_and(first - created_at < interval '2 hours')
        FROM customers JOIN (SELECT customer_id, min(ordered_at) AS first FROM orders GROUP BY 1) o USING (customer_id)
        WHERE created_at >= '{FIRST_DAY.isoformat()}'""")
    assert first_orders_at_sign_up  # a customer signs up to place an order
    cohorts = dict(source_rows(postgres, """SELECT date_trunc('month', first AT TIME ZONE 'Asia/Bangkok'), count(*)
        FROM (SELECT customer_id, min(ordered_at) AS first FROM orders GROUP BY 1) o GROUP BY 1"""))
    # every month of the data brings customers; the first holds more (the customers who signed up
    # before the data and come back in it), not everyone (it held 80% before sign-ups placed orders)
    assert max(cohorts.values()) < 0.6 * sum(cohorts.values())
    sizes = [size for _, size in sorted(cohorts.items())]
    assert all(size >= 0.1 * sum(sizes) for size in sizes[1:-1])  # the first and last months are partial
    statuses = dict(source_rows(postgres, "SELECT status, count(*) FROM orders GROUP BY 1"))
    assert set(statuses) == {"pending", "shipped", "delivered", "cancelled", "returned"}
    assert statuses["returned"] == SIZE.invalid_orders  # breaks the contract on purpose
    [(negative,)] = source_rows(postgres, "SELECT count(*) FROM order_items WHERE item_price < 0")
    assert negative == SIZE.invalid_items


def test_the_window_holds_the_changes_history_is_made_of(postgres):
    """In the window some customers move (a few twice), products are repriced and orders move on:
    what the day-by-day replay of `make run` turns into versions in Silver's history."""
    postgres.create_source_schema()
    with psycopg.connect(postgres.resource().conninfo()) as connection:
        demo_data.stage(connection, demo_data.plan(FIRST_DAY, END, SIZE, seed=1))
    in_window = f"updated_at >= '{FIRST_DAY.isoformat()}'"
    [(moved_twice,)] = source_rows(postgres, f"""SELECT count(*) FROM (SELECT customer_id FROM demo.customers
        WHERE {in_window} GROUP BY 1 HAVING count(DISTINCT city) = 2 AND count(*) = 2) t""")
    [(repriced,)] = source_rows(postgres, f"SELECT count(DISTINCT product_id) FROM demo.products WHERE {in_window}")
    [(delivered,)] = source_rows(postgres, f"SELECT count(*) FROM demo.orders WHERE status = 'delivered' AND {in_window}")
    [(deleted,)] = source_rows(postgres, "SELECT count(*) FROM demo.deleted WHERE source_table = 'orders'")
    assert moved_twice >= 10 and repriced >= 25 and delivered >= 5_000 and deleted == SIZE.deleted_orders


def test_the_same_seed_gives_the_same_shop(postgres):
    generate(postgres, seed=5)
    first = snapshot(postgres)
    generate(postgres, seed=5)
    assert snapshot(postgres) == first
