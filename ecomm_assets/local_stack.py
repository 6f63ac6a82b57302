"""Command line for the local stack: ``python -m ecomm_assets.local_stack <command>``.

  up               start the embedded PostgreSQL (ecomm-db) under ECOMM_HOME
  seed [DAYS]      recreate the source tables and fill them with DAYS (30) of demo data
  partition-range  the ingestion dates the demo data covers, as FIRST...LAST
  summary          print the KPIs that dbt built
  down             stop the embedded PostgreSQL
"""

import sys
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import duckdb
import psycopg

from ecomm_assets import environment
from ecomm_assets.partitions import ingestion_date_partitions
from ecomm_assets.source import demo_data
from ecomm_assets.source.embedded_server import EmbeddedPostgres

SEED_STATE = "seeded_window.txt"


def _server() -> EmbeddedPostgres:
    return EmbeddedPostgres(environment.ecomm_home() / "postgres", environment.local_pg_port())


def _today_start() -> datetime:
    now = datetime.now(ZoneInfo(ingestion_date_partitions.timezone))
    return datetime.combine(now.date(), time(), tzinfo=now.tzinfo)


def seed(days: int) -> None:
    server = _server()
    server.create_source_schema()
    end = _today_start()
    start = end - timedelta(days=days)
    with psycopg.connect(server.resource().conninfo()) as connection:
        counts = demo_data.generate(connection, start, end)
    first, last = start.date().isoformat(), (end - timedelta(days=1)).date().isoformat()
    (environment.ecomm_home() / SEED_STATE).write_text(f"{first}...{last}\n")
    print(f"ecomm-db seeded with {counts}, changes from {first} to {last} (Asia/Bangkok)")


def summary() -> None:
    database = environment.ecomm_home() / "ecomm_dw.duckdb"
    with duckdb.connect(str(database), read_only=True) as db:
        totals = db.execute(
            "SELECT count(*), sum(revenue), sum(order_count), sum(revenue) / sum(order_count)"
            " FROM dbt_prod_metric.agg_sales_kpi").fetchall()[0]
        print(f"\nKPIs in {database} (schema dbt_prod_metric):")
        print(f"  {totals[0]} days, revenue {totals[1]:,.2f}, {totals[2]:,} orders, AOV {totals[3]:,.2f}")
        print("\n  Last 7 days (agg_sales_kpi + agg_customer_kpi):")
        db.sql("""
            SELECT s.order_date, s.revenue, s.order_count, s.avg_order_value,
                   c.active_customers, c.new_customers
            FROM dbt_prod_metric.agg_sales_kpi s
            JOIN dbt_prod_metric.agg_customer_kpi c USING (order_date)
            ORDER BY order_date DESC LIMIT 7""").show()
        print("  Top selling categories (agg_product_kpi):")
        db.sql("""
            SELECT category, sum(quantity_sold) AS units, sum(revenue) AS revenue
            FROM dbt_prod_metric.agg_product_kpi GROUP BY category ORDER BY units DESC""").show()
    dashboard = environment.local_dashboard(environment.ecomm_home()).path
    print(f"  The Ecommerce Analytics dashboard (open it in a browser, it works offline):\n  {dashboard}")


def main(argv: list[str]) -> None:
    command, *args = argv or ["help"]
    if command == "up":
        _server().start()
        print(f"ecomm-db listening on 127.0.0.1:{environment.local_pg_port()}")
    elif command == "seed":
        seed(int(args[0]) if args else 30)
    elif command == "partition-range":
        print((environment.ecomm_home() / SEED_STATE).read_text().strip())
    elif command == "summary":
        summary()
    elif command == "down":
        _server().stop()
    else:
        print(__doc__)
        sys.exit(0 if command == "help" else 2)


if __name__ == "__main__":
    main(sys.argv[1:])
