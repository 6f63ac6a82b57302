"""The demo shop: big enough to be interesting, alive, and the same for the same seed."""

from datetime import timedelta

import psycopg
from support import FIRST_DAY, source_rows

from ecomm_assets.source import demo_data


def generate(postgres, seed):
    postgres.create_source_schema()
    with psycopg.connect(postgres.resource().conninfo()) as connection:
        return demo_data.generate(connection, FIRST_DAY, FIRST_DAY + timedelta(days=30), seed=seed)


def snapshot(postgres):
    return {table: source_rows(postgres, f"SELECT * FROM {table}")
            for table in ("customers", "products", "orders", "order_items")}


def test_thirty_days_of_a_living_shop(postgres):
    counts = generate(postgres, seed=1)

    assert counts == {"customers": 1_000, "products": 500, "orders": 10_000, "order_items": 30_000}
    [(first, last)] = source_rows(postgres, """
        SELECT min(least(c.updated_at, c.created_at)), max(c.updated_at) FROM (
          SELECT created_at, updated_at FROM customers UNION ALL SELECT created_at, updated_at FROM products
          UNION ALL SELECT created_at, updated_at FROM orders UNION ALL SELECT created_at, updated_at FROM order_items) c""")
    assert FIRST_DAY <= first and last < FIRST_DAY + timedelta(days=30)
    statuses = dict(source_rows(postgres, "SELECT status, count(*) FROM orders GROUP BY 1"))
    assert set(statuses) == {"pending", "shipped", "delivered", "cancelled", "returned"}
    assert statuses["returned"] == demo_data.DemoSize().invalid_orders  # breaks the contract on purpose
    [(moved_on_later_day,)] = source_rows(postgres, """SELECT count(*) FROM orders
        WHERE (updated_at AT TIME ZONE 'Asia/Bangkok')::date > (ordered_at AT TIME ZONE 'Asia/Bangkok')::date""")
    [(repriced,)] = source_rows(postgres, "SELECT count(*) FROM products WHERE updated_at > created_at + interval '1 day'")
    [(moved_city,)] = source_rows(postgres, "SELECT count(*) FROM customers WHERE updated_at > created_at")
    assert moved_on_later_day > 5_000 and repriced > 50 and moved_city > 50


def test_the_same_seed_gives_the_same_shop(postgres):
    generate(postgres, seed=5)
    first = snapshot(postgres)
    generate(postgres, seed=5)
    assert snapshot(postgres) == first
