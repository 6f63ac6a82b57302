"""Deterministic demo data for ecomm-db: a shop's life, and the source moved forward through it.

The shop is planned as the versions its rows go through, each written at its ``updated_at``:
customers sign up (over the year before the window, for the demo), place their first order as they
sign up and come back with their own habits (most rarely, a few often, all less as time passes),
products are listed and repriced, orders come in every day with a weekly rhythm (more at the
weekend) and move pending -> shipped -> delivered or get cancelled, some customers move city
(a few twice), support deletes a few orders, and a handful of rows break the data contract on
purpose (an unknown order status, a negative item price) so that the Silver expectations have
something to catch.

The versions are staged in schema ``demo`` of ecomm-db; ``apply_changes`` then moves the source
tables forward to any instant, as the business would have changed them: ``make run`` applies the
shop's past, then the last days one at a time, extracting each day after its changes, the way the
01:00 schedule saw them. ``generate`` applies everything at once (the tests' small shops).
"""

import bisect
import itertools
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
from faker import Faker
from psycopg import sql

CATEGORIES = ("Electronics", "Home & Kitchen", "Books", "Fashion", "Beauty", "Sports", "Toys", "Grocery")
PAYMENT_METHODS = ("credit_card", "debit_card", "promptpay", "bank_transfer", "cash_on_delivery")
CITIES = (("Bangkok", "Thailand"), ("Chiang Mai", "Thailand"), ("Phuket", "Thailand"),
          ("Singapore", "Singapore"), ("Kuala Lumpur", "Malaysia"), ("Hanoi", "Vietnam"),
          ("Jakarta", "Indonesia"), ("Manila", "Philippines"))
# Orders per weekday (Monday first, Asia/Bangkok) against the average day.
WEEKLY_RHYTHM = (0.93, 0.94, 0.97, 0.99, 1.05, 1.14, 0.98)
# How a customer's orders thin out after sign-up: the chance that one comes back falls by e every
# LOYALTY_DECAY, down to LOYALTY_FLOOR of what it was.
LOYALTY_DECAY = timedelta(days=90)
LOYALTY_FLOOR = 0.1
# The source tables, parents first, with their columns (as COPY writes them) and primary key.
TABLES = {
    "customers": ("customer_id", "customer_id, first_name, last_name, email, city, country, created_at, updated_at"),
    "products": ("product_id", "product_id, product_name, category, unit_price, created_at, updated_at"),
    "orders": ("order_id", "order_id, customer_id, ordered_at, status, payment_method, created_at, updated_at"),
    "order_items": ("order_item_id", "order_item_id, order_id, product_id, quantity, item_price, created_at, updated_at"),
}


@dataclass(frozen=True)
class DemoSize:
    customers: int = 12_000  # about 30 sign-ups a day over the year before the window and in it
    products: int = 500
    orders_per_day: int = 333
    days_before: int = 0  # the shop's life before the window: customers sign up over a year, orders these days
    invalid_orders: int = 5  # status outside the contract
    invalid_items: int = 5  # negative item_price
    deleted_orders: int = 3  # removed by support, with their lines, after their last change


@dataclass
class ShopLife:
    versions: dict[str, list[tuple]] = field(default_factory=lambda: {table: [] for table in TABLES})
    deleted: list[tuple[str, int, datetime]] = field(default_factory=list)  # (table, key, when)


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    return start + timedelta(seconds=rng.uniform(0, max((end - start).total_seconds(), 0)))


def plan(start: datetime, end: datetime, size: DemoSize = DemoSize(), seed: int = 42) -> ShopLife:
    """The shop's life up to ``end``, its window being ``start`` to ``end``: every version of every
    row, each stamped with the moment it was written."""
    rng = random.Random(seed)
    fake = Faker()
    fake.seed_instance(seed)
    life, day, hour = ShopLife(), timedelta(days=1), timedelta(hours=1)
    orders_from = start - size.days_before * day
    signups_from = start - 365 * day if size.days_before else start

    prices = {}  # product_id: [(from, price)]
    for product_id in range(1, size.products + 1):
        created = _between(rng, signups_from - 6 * hour, signups_from)  # listed before anyone orders
        name, category = f"{fake.color_name()} {fake.word().title()} {rng.randrange(100, 999)}", rng.choice(CATEGORIES)
        price = Decimal(rng.randrange(99, 50_000)) / 100
        prices[product_id] = [(created, price)]
        repricings = rng.choices((0, 1, 2), weights=(75, 20, 5))[0]
        for at in sorted(_between(rng, orders_from, end) for _ in range(repricings)):
            price = (price * Decimal(rng.uniform(0.7, 1.3))).quantize(Decimal("0.01"))
            prices[product_id].append((at, price))
        life.versions["products"] += [(product_id, name, category, p, created, at) for at, p in prices[product_id]]

    customers = []  # (created, customer_id, weight)
    for customer_id in range(1, size.customers + 1):
        created = _between(rng, signups_from, end - day)
        first, last = fake.first_name(), fake.last_name()
        email = f"{first}.{last}.{customer_id}@example.com".lower()
        city = rng.choice(CITIES)
        life.versions["customers"].append((customer_id, first, last, email, *city, created, created))
        moves = rng.choices((0, 1, 2), weights=(85, 10, 5))[0]
        for at in sorted(_between(rng, max(created, orders_from), end) for _ in range(moves)):
            city = rng.choice([c for c in CITIES if c != city])
            life.versions["customers"].append((customer_id, first, last, email, *city, created, at))
        customers.append((created, customer_id, rng.lognormvariate(0, 1.5)))  # most rarely, a few often
    customers.sort()
    signed_up = [created for created, _, _ in customers]
    habits = list(itertools.accumulate(weight for _, _, weight in customers))

    def price_at(product_id: int, moment: datetime) -> Decimal:
        return [p for at, p in prices[product_id] if at <= moment][-1]

    def first_order(created: datetime) -> datetime:
        return min(created + rng.uniform(0.05, 2) * hour, end - timedelta(seconds=1))

    # Each day: the first orders of the day's sign-ups, then the rest of its demand from customers
    # who signed up before, each as likely as their habit.
    order_id = item_id = 0
    window_orders = []
    for day_start in (orders_from + n * day for n in range((end - orders_from).days)):
        placed = round(size.orders_per_day * WEEKLY_RHYTHM[day_start.weekday()] * rng.uniform(0.9, 1.1))
        new = customers[bisect.bisect_left(signed_up, day_start):bisect.bisect_left(signed_up, day_start + day)]
        day_orders = [(first_order(created), customer_id) for created, customer_id, _ in new]
        day_orders += [(_between(rng, day_start, day_start + day), None) for _ in range(max(placed - len(new), 0))]
        for ordered_at, customer_id in sorted(day_orders, key=lambda order: order[0]):
            if customer_id is None:
                signed = bisect.bisect_right(signed_up, ordered_at)
                if not signed:
                    continue
                while True:  # a customer drifts away: one who signed up long ago is less likely to come back
                    created, customer_id, _ = customers[bisect.bisect_left(habits, rng.random() * habits[signed - 1])]
                    if rng.random() < LOYALTY_FLOOR + (1 - LOYALTY_FLOOR) * math.exp((created - ordered_at) / LOYALTY_DECAY):
                        break
            order_id += 1
            payment = rng.choice(PAYMENT_METHODS)
            statuses = [("pending", ordered_at)]
            if rng.random() < 0.08:
                statuses.append(("cancelled", ordered_at + rng.uniform(1, 48) * hour))
            else:
                shipped = ordered_at + rng.uniform(12, 72) * hour
                statuses += [("shipped", shipped), ("delivered", shipped + rng.uniform(24, 96) * hour)]
            statuses = [(status, at) for status, at in statuses if at < end]
            life.versions["orders"] += [(order_id, customer_id, ordered_at, status, payment, ordered_at, at)
                                        for status, at in statuses]
            if ordered_at >= start:
                window_orders.append(order_id)
            for _ in range(rng.randint(1, 5)):  # three lines on average
                item_id += 1
                product_id, quantity = rng.randrange(1, size.products + 1), rng.randint(1, 4)
                life.versions["order_items"].append(
                    [item_id, order_id, product_id, quantity, price_at(product_id, ordered_at) * quantity,
                     ordered_at, ordered_at])

    # the rows that break the contract, and the orders support deleted, all in the window
    window = set(window_orders)
    for order_id in rng.sample(window_orders, min(size.invalid_orders, len(window_orders))):
        last = max(i for i, version in enumerate(life.versions["orders"]) if version[0] == order_id)
        version = life.versions["orders"][last]
        life.versions["orders"][last] = (*version[:3], "returned", *version[4:])
    window_items = [item for item in life.versions["order_items"] if item[1] in window]
    for item in rng.sample(window_items, min(size.invalid_items, len(window_items))):
        item[4] = -item[4]
    for order_id in rng.sample(window_orders, min(size.deleted_orders, len(window_orders))):
        last_change = max(v[6] for v in life.versions["orders"] if v[0] == order_id)
        deleted_at = _between(rng, last_change, min(last_change + 24 * hour, end))
        life.deleted += [("order_items", item[0], deleted_at) for item in life.versions["order_items"]
                         if item[1] == order_id]
        life.deleted.append(("orders", order_id, deleted_at))
    life.versions["order_items"] = [tuple(item) for item in life.versions["order_items"]]
    return life


def stage(conn: psycopg.Connection, life: ShopLife) -> None:
    """Write the shop's planned versions to schema ``demo``, beside the (empty) source tables."""
    conn.execute("DROP SCHEMA IF EXISTS demo CASCADE")
    conn.execute("CREATE SCHEMA demo")
    with conn.cursor() as cursor:
        for table, (_, columns) in TABLES.items():
            cursor.execute(sql.SQL("CREATE TABLE demo.{table} AS SELECT {columns} FROM public.{table} WHERE false")
                           .format(table=sql.Identifier(table), columns=sql.SQL(columns)))
            with cursor.copy(sql.SQL("COPY demo.{} FROM STDIN").format(sql.Identifier(table))) as copy:
                for row in life.versions[table]:
                    copy.write_row(row)
        cursor.execute("CREATE TABLE demo.deleted (source_table text, key bigint, deleted_at timestamptz)")
        with cursor.copy("COPY demo.deleted FROM STDIN") as copy:
            for row in life.deleted:
                copy.write_row(row)
    conn.commit()


def _within(column: str, since: datetime | None, until: datetime) -> sql.Composable:
    lower = sql.SQL("{} <= {} AND ").format(since, sql.Identifier(column)) if since else sql.SQL("")
    return sql.SQL("{}{} < {}").format(lower, sql.Identifier(column), until)


def apply_changes(conn: psycopg.Connection, since: datetime | None, until: datetime) -> None:
    """Move the source tables forward: every change the shop made in ``[since, until)`` (from the
    beginning without ``since``), each row in the last version it reached, then the deletes."""
    for table, (key, columns) in TABLES.items():
        updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c.strip()))
                                     for c in columns.split(",")[1:])
        conn.execute(sql.SQL(
            "INSERT INTO public.{table} ({columns}) SELECT DISTINCT ON ({key}) {columns} FROM demo.{table} "
            "WHERE {window} ORDER BY {key}, updated_at DESC ON CONFLICT ({key}) DO UPDATE SET {updates}").format(
            table=sql.Identifier(table), columns=sql.SQL(columns), key=sql.Identifier(key),
            window=_within("updated_at", since, until), updates=updates))
    for table, (key, _) in reversed(TABLES.items()):
        conn.execute(sql.SQL("DELETE FROM public.{table} WHERE {key} IN (SELECT key FROM demo.deleted "
                             "WHERE source_table = {name} AND {window})").format(
            table=sql.Identifier(table), key=sql.Identifier(key), name=table,
            window=_within("deleted_at", since, until)))
    conn.commit()


def counts(conn: psycopg.Connection) -> dict[str, int]:
    return {table: conn.execute(sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(table))).fetchone()[0]
            for table in TABLES}


def generate(conn: psycopg.Connection, start: datetime, end: datetime,
             size: DemoSize = DemoSize(), seed: int = 42) -> dict[str, int]:
    """Fill the (empty) source tables with the shop as it stands at ``end``. Returns rows per table."""
    stage(conn, plan(start, end, size, seed))
    apply_changes(conn, None, end)
    return counts(conn)
