"""What the tests share besides fixtures: the small shop, a pipeline home, waiting, ports."""

import shutil
import socket
import time
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import psycopg
import pytest

from ecomm_assets import REPO_ROOT, environment
from ecomm_assets.definitions import defs
from ecomm_assets.extract.landing_zone import partition_folder
from ecomm_assets.partitions import range_tags
from ecomm_assets.source import demo_data
from ecomm_assets.source.embedded_server import EmbeddedPostgres

ICT = ZoneInfo("Asia/Bangkok")
# The small shop the tests run on: five days of life, 2026-03-01 to 2026-03-05 (ICT).
FIRST_DAY = datetime(2026, 3, 1, tzinfo=ICT)
DAYS = ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]
SMALL_SHOP = demo_data.DemoSize(customers=60, products=40, orders_per_day=80, invalid_orders=3, invalid_items=3)
# The 01:00 job's selection: the extract and the lakehouse, no dbt.
NIGHTLY = "group:landing or group:bronze or group:silver or group:gold"
# Columns stamped with the time of the run; everything else must be reproducible.
RUN_TIME_COLUMNS = {"_ingested_at", "_processed_at"}
# Columns saying which landed file a row came from: they differ between two pipeline homes.
LINEAGE_COLUMNS = {"_source_file", "_ingestion_date", "_rescued_data", "_extracted_at"}
# What the business sees: every Silver, Gold and KPI table.
SERVED_TABLES = ["silver.customers", "silver.products", "silver.orders", "silver.order_items",
                 "silver.dim_customer", "silver.dim_product", "silver.dim_orders", "silver.fact_orders",
                 "gold.sales_analytics", "gold.agg_daily_sales", "dbt_prod_metric.agg_sales_kpi",
                 "dbt_prod_metric.agg_product_kpi", "dbt_prod_metric.agg_customer_kpi"]


def wait_for(condition, seconds: float, what: str, interval: float = 0.01):
    """The first true value of ``condition()``, asked every ``interval`` seconds for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {what} after {seconds} s"
        time.sleep(interval)
    return value


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pipeline:
    """The real code location's assets over one pipeline home (landing folder + DuckDB file)."""

    def __init__(self, home: Path, postgres: EmbeddedPostgres, instance: dg.DagsterInstance | None = None):
        self.home = home
        self.resources = environment.local_resources(home, postgres.port)
        self.assets = defs.assets
        # the home's runs share one instance, as in a deployment (dbt asks it whether Gold holds a day)
        self.instance = instance or dg.DagsterInstance.ephemeral()

    def materialize(self, first: str, last: str | None = None, selection: str = "*",
                    raise_on_error: bool = True, tags: dict[str, str] | None = None,
                    **run_config) -> dg.ExecuteInProcessResult:
        """One run over the partition range first..last (a single-run backfill when they differ);
        ``run_config`` by op name, e.g. ``landing_extracts={"lookback_hours": 0}``."""
        tags = {**range_tags(first, last or first), **(tags or {})}
        with pytest.MonkeyPatch.context() as env:
            env.setenv("ECOMM_HOME", str(self.home))  # dbt's profile reads it
            result = dg.materialize(self.assets, selection=selection, resources=self.resources, tags=tags,
                                    instance=self.instance,
                                    raise_on_error=raise_on_error,
                                    run_config={"ops": {op: {"config": c} for op, c in run_config.items()}})
        assert result.success or not raise_on_error
        return result

    def landed(self, table: str, day: str) -> Path:
        """The current file of changed rows of ``table`` for the ingestion date ``day``."""
        folder = partition_folder(table, day)
        [name] = [name for name in self.resources["landing_zone"].read_manifest(folder)["files"]
                  if name.startswith(f"{table}__")]
        return Path(self.resources["landing_zone"].extracts_root) / folder / name

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(environment.lakehouse_database(self.home)), read_only=True) as db:
            return db.execute(sql).fetchall()

    def rows(self, table: str, exclude: set[str] = frozenset()) -> list[tuple]:
        """Sorted content of a table, without the run-time stamps and the columns in ``exclude``."""
        with duckdb.connect(str(environment.lakehouse_database(self.home)), read_only=True) as db:
            columns = [c for (c,) in db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema || '.' || table_name = ?"
                " ORDER BY ordinal_position", [table]).fetchall()
                if c not in RUN_TIME_COLUMNS | exclude]
            assert columns, f"no table {table}"
            return sorted(db.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall(), key=repr)

    def served(self) -> dict[str, list[tuple]]:
        """Every Silver, Gold and KPI table, without run-time stamps and file lineage."""
        return {table: self.rows(table, exclude=LINEAGE_COLUMNS) for table in SERVED_TABLES}


def new_dagster_database(postgres: EmbeddedPostgres) -> str:
    """A new, empty database of ``postgres`` for a Dagster instance's storage: its URL, as
    dagster-postgres takes it."""
    database = f"dagster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user={postgres.user} dbname=postgres",
                         autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {database}")
    return f"postgresql+psycopg2://{postgres.user}@127.0.0.1:{postgres.port}/{database}?sslmode=disable"


def local_instance(dagster_home: Path, postgres: EmbeddedPostgres) -> dict[str, str]:
    """A Dagster instance on disk configured as `make` configures the project's (instance/local.yaml),
    its storage a new database of ``postgres``: the environment variables that name it."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "ecomm_assets/instance/local.yaml", dagster_home / "dagster.yaml")
    return {"DAGSTER_HOME": str(dagster_home), "ECOMM_DAGSTER_PG_URL": new_dagster_database(postgres)}


def source_rows(postgres: EmbeddedPostgres, query: str) -> list[tuple]:
    with psycopg.connect(postgres.resource().conninfo()) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        return sorted(connection.execute(query).fetchall(), key=repr)
