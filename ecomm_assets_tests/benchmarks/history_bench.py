"""The daily cost against the history kept (figure 9): one nightly refresh of the lakehouse with
30, 365 and 730 days of history behind it, at the same daily volume.

The history is built in bulk: the demo shop's life over the days is staged in an embedded
ecomm-db, the source is moved to the eve of the measured day, every day before it is landed by one
extract and read by one refresh of the local engine (730 nightly runs would take hours, and their
result is the same tables). Then the measured day runs as the 01:00 job would, in a fresh process:
its changes applied, its partition extracted, the lakehouse refreshed for it. The figure is the
refresh (the lakehouse SQL) and the process's peak memory.
"""

import json
import logging
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import psycopg

from ecomm_assets import environment
from ecomm_assets.extract.assets import land_extract
from ecomm_assets.lakehouse.duckdb_engine import DuckDBLakehouse
from ecomm_assets.lakehouse.pipeline_sql import pipeline_tables
from ecomm_assets.partitions import ingestion_date_partitions
from ecomm_assets.source import demo_data
from ecomm_assets.source.embedded_server import EmbeddedPostgres
from ecomm_assets_tests.benchmarks.common import Figure
from ecomm_assets_tests.support import free_port

ICT = ZoneInfo("Asia/Bangkok")
END = datetime(2027, 6, 1, tzinfo=ICT)  # the measured day is 2027-05-31; 730 days back is within the partitions
CUSTOMERS_PER_DAY = 30  # the demo's sign-ups a day
log = logging.getLogger("bench")

# The measured day, in a fresh process: its extract, then the timed refresh; prints seconds and VmHWM.
_MEASURED_DAY = """
import json, logging, sys, time
from ecomm_assets import environment
from ecomm_assets.extract.assets import land_extract
from ecomm_assets.lakehouse.pipeline_sql import pipeline_tables
from ecomm_assets.source import demo_data
home, port, day = sys.argv[1], int(sys.argv[2]), sys.argv[3]
resources = environment.local_resources(__import__("pathlib").Path(home), port)
log = logging.getLogger("bench")
start = time.perf_counter()
list(land_extract(resources["source_db"], resources["landing_zone"], list(demo_data.TABLES), [day], 24, log, "bench"))
extract = time.perf_counter() - start
start = time.perf_counter()
resources["lakehouse"].refresh(pipeline_tables(), [day], log)
refresh = time.perf_counter() - start
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"extract": extract, "refresh": refresh, "peak_kib": peak}))
"""


def _history(workdir: Path, days: int, size: demo_data.DemoSize) -> dict:
    """Build ``days`` of history, then measure the next day's nightly refresh."""
    folder = Path(tempfile.mkdtemp(prefix=f"history-{days}-", dir=workdir))
    server = EmbeddedPostgres(folder / "postgres", free_port())
    server.start()
    try:
        server.create_source_schema()
        start = END - timedelta(days=days + 1)
        dates = ingestion_date_partitions.get_partition_keys_in_range(
            dg.PartitionKeyRange(start.date().isoformat(), (END - timedelta(days=2)).date().isoformat()))
        measured = (END - timedelta(days=1)).date().isoformat()
        with psycopg.connect(server.resource().conninfo()) as connection:
            demo_data.stage(connection, demo_data.plan(start, END, size))
            demo_data.apply_changes(connection, None, END - timedelta(days=1))
        home = folder / "home"
        resources = environment.local_resources(home, server.port)
        list(land_extract(resources["source_db"], resources["landing_zone"], list(demo_data.TABLES), dates, 24, log,
                          "bench history"))
        engine: DuckDBLakehouse = resources["lakehouse"]
        engine.refresh(pipeline_tables(), dates, log)
        with psycopg.connect(server.resource().conninfo()) as connection:
            demo_data.apply_changes(connection, END - timedelta(days=1), END)
        out = subprocess.run([sys.executable, "-c", _MEASURED_DAY, str(home), str(server.port), measured],
                             check=True, capture_output=True, text=True).stdout
        measured_run = json.loads(out.strip().splitlines()[-1])
        with duckdb.connect(engine.database, read_only=True) as db:
            count = lambda table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
            measured_run["history_rows"] = {t: count(f"silver.{t}") for t in
                                            ("customers_history", "products_history", "orders_history")}
            measured_run["bronze_rows_per_day"] = round(sum(count(f"bronze.{t}") for t in demo_data.TABLES) / (days + 1))
            measured_run["order_items"] = count("silver.order_items_latest")
        measured_run["database_mib"] = Path(engine.database).stat().st_size / 2**20
        return measured_run
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def run(workdir: Path, quick: bool = False) -> list[Figure]:
    sizes = (30, 90) if quick else (30, 365, 730)
    measured = {}
    for days in sizes:
        size = demo_data.DemoSize(customers=CUSTOMERS_PER_DAY * days, orders_per_day=100 if quick else 333,
                                  deleted_orders=days // 10)
        measured[days] = _history(workdir, days, size)
    base, longest = measured[sizes[0]], measured[sizes[-1]]

    def note(days: int) -> str:
        m = measured[days]
        return (f"{days} days: refresh {m['refresh']:.2f} s, extract {m['extract']:.2f} s, peak {m['peak_kib'] / 1024:.0f} MiB, "
                f"DuckDB file {m['database_mib']:.0f} MiB, {m['order_items']:,} order lines, Bronze {m['bronze_rows_per_day']:,} "
                f"rows/day, history rows {m['history_rows']}")

    notes = "; ".join(note(days) for days in sizes)
    return [
        Figure(f"daily refresh with {sizes[-1]} days of history", f"{sizes[-1]} days", longest["refresh"],
               f"{sizes[0]} days", base["refresh"], "ratio <= 1.3", longest["refresh"] / base["refresh"] <= 1.3, 1,
               note=notes),
        Figure(f"daily refresh's peak memory with {sizes[-1]} days of history", f"{sizes[-1]} days",
               longest["peak_kib"] / 1024, f"{sizes[0]} days", base["peak_kib"] / 1024, "ratio <= 1.3",
               longest["peak_kib"] / base["peak_kib"] <= 1.3, 1, unit="MiB"),
    ]
