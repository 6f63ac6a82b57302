"""Deterministic demo data for ecomm-db: a shop's life over the last N days.

Customers sign up, products are listed, orders are placed with one to five items, and life goes
on: orders move pending -> shipped -> delivered (or get cancelled), some products change price
and some customers move city. Each change sets ``updated_at`` to the moment it happens, so the
nightly extract of day D picks up exactly what changed on D. A handful of rows break the data
contract on purpose (an unknown order status, a negative item price) so that the Silver
expectations have something to catch.
"""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
from faker import Faker

CATEGORIES = ("Electronics", "Home & Kitchen", "Books", "Fashion", "Beauty", "Sports", "Toys", "Grocery")
PAYMENT_METHODS = ("credit_card", "debit_card", "promptpay", "bank_transfer", "cash_on_delivery")
CITIES = (("Bangkok", "Thailand"), ("Chiang Mai", "Thailand"), ("Phuket", "Thailand"),
          ("Singapore", "Singapore"), ("Kuala Lumpur", "Malaysia"), ("Hanoi", "Vietnam"),
          ("Jakarta", "Indonesia"), ("Manila", "Philippines"))


@dataclass(frozen=True)
class DemoSize:
    customers: int = 1_000
    products: int = 500
    orders: int = 10_000
    invalid_orders: int = 5  # status outside the contract
    invalid_items: int = 5  # negative item_price


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    return start + timedelta(seconds=rng.uniform(0, (end - start).total_seconds()))


def generate(conn: psycopg.Connection, start: datetime, end: datetime,
             size: DemoSize = DemoSize(), seed: int = 42) -> dict[str, int]:
    """Fill the (empty) source tables with a shop's life between ``start`` and ``end``.

    Every ``created_at`` and ``updated_at`` falls inside the window. Returns rows per table.
    """
    rng = random.Random(seed)
    fake = Faker()
    fake.seed_instance(seed)
    day = timedelta(days=1)

    customers = []
    for customer_id in range(1, size.customers + 1):
        created = _between(rng, start, end - day)
        city, country = rng.choice(CITIES)
        updated = created
        if rng.random() < 0.1:  # moved city after signing up
            updated = _between(rng, created, end)
            city, country = rng.choice(CITIES)
        first, last = fake.first_name(), fake.last_name()
        email = f"{first}.{last}.{customer_id}@example.com".lower()
        customers.append((customer_id, first, last, email, city, country, created, updated))

    products, repricings = [], {}
    for product_id in range(1, size.products + 1):
        created = _between(rng, start, start + timedelta(hours=6))
        price = Decimal(rng.randrange(99, 50_000)) / 100
        updated, current_price = created, price
        if rng.random() < 0.2:  # repriced once; items ordered before keep the old price
            updated = _between(rng, created, end)
            current_price = (price * Decimal(rng.uniform(0.7, 1.3))).quantize(Decimal("0.01"))
            repricings[product_id] = (updated, price)
        name = f"{fake.color_name()} {fake.word().title()} {rng.randrange(100, 999)}"
        products.append((product_id, name, rng.choice(CATEGORIES), current_price, created, updated))

    def price_at(product_id: int, moment: datetime) -> Decimal:
        repriced_at, old_price = repricings.get(product_id, (None, None))
        return old_price if repriced_at and moment < repriced_at else products[product_id - 1][3]

    orders, items = [], []
    invalid_orders = set(rng.sample(range(1, size.orders + 1), size.invalid_orders))
    for order_id in range(1, size.orders + 1):
        customer = rng.choice(customers)
        ordered_at = _between(rng, customer[6], end)
        status, updated = "pending", ordered_at
        if rng.random() < 0.08:
            cancelled = ordered_at + timedelta(hours=rng.uniform(1, 48))
            if cancelled < end:
                status, updated = "cancelled", cancelled
        else:
            shipped = ordered_at + timedelta(hours=rng.uniform(12, 72))
            delivered = shipped + timedelta(hours=rng.uniform(24, 96))
            for event, at in (("shipped", shipped), ("delivered", delivered)):
                if at < end:
                    status, updated = event, at
        if order_id in invalid_orders:
            status = "returned"
        orders.append((order_id, customer[0], ordered_at, status, rng.choice(PAYMENT_METHODS),
                       ordered_at, updated))
        for _ in range(1 + order_id % 5):  # 1..5 items, three on average
            product_id = rng.randrange(1, size.products + 1)
            quantity = rng.randint(1, 4)
            items.append([len(items) + 1, order_id, product_id, quantity,
                          price_at(product_id, ordered_at) * quantity,
                          ordered_at, ordered_at])
    for item in rng.sample(items, size.invalid_items):
        item[4] = -item[4]

    tables = {
        "customers": ("customer_id, first_name, last_name, email, city, country, created_at, updated_at", customers),
        "products": ("product_id, product_name, category, unit_price, created_at, updated_at", products),
        "orders": ("order_id, customer_id, ordered_at, status, payment_method, created_at, updated_at", orders),
        "order_items": ("order_item_id, order_id, product_id, quantity, item_price, created_at, updated_at", items),
    }
    with conn.cursor() as cursor:
        for table, (columns, rows) in tables.items():
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    conn.commit()
    return {table: len(rows) for table, (_, rows) in tables.items()}
