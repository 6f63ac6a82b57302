"""Extract benchmarks (issue 4, figures 1-3): SourceSnapshot.copy_changed_rows on the local stack.

1. throughput of a 1,000,000-row partition of order_items, against psql ``\\copy`` and pandas;
2. incremental cost: a fixed 10,000-row window while the table grows from 100,000 to 5,000,000 rows;
3. peak client memory of a 1,000,000-row partition against a 10,000-row one.

One embedded PostgreSQL in ``workdir`` serves all three; the data is generated server-side.
"""

import argparse
import hashlib
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
import sqlalchemy
from psycopg import sql

from ecomm_assets.partitions import ingestion_date_partitions
from ecomm_assets.source.embedded_server import EmbeddedPostgres, _postgres_bin_dir
from ecomm_assets.source.postgres import key_versions_query
from ecomm_assets_tests.benchmarks.common import Figure, median_seconds
from ecomm_assets_tests.support import free_port

TABLE = "order_items"
BIG_DAY, SMALL_DAY = "2026-03-01", "2026-03-02"  # the partitions extracted; all other rows are older
CUSTOMERS, PRODUCTS, ORDERS = 1_000, 1_000, 100_000


@dataclass(frozen=True)
class Sizes:
    big: int  # rows in the BIG_DAY partition (figures 1 and 3)
    small: int  # rows in the SMALL_DAY partition (figures 2 and 3)
    table: tuple[int, ...]  # order_items sizes figure 2 grows through; the last step adds the big partition


FULL = Sizes(big=1_000_000, small=10_000, table=(100_000, 1_000_000, 5_000_000))
QUICK = Sizes(big=100_000, small=1_000, table=(10_000, 100_000, 500_000))

# Fresh interpreter: import the project, extract one window to a file, print the peak RSS (KiB)
# after the imports and at the end. It reads VmHWM, not ru_maxrss: Linux carries the spawning
# process's peak RSS into a child's ru_maxrss at exec (subprocess uses vfork), so ru_maxrss here
# would report this benchmark's own peak (about 1 GiB after pandas), not the extract's.
_MEMORY_PROBE = """
import logging
import sys
from datetime import datetime
from ecomm_assets.source.postgres import SourceDatabase
def peak():
    return next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
dsn, start, end, path = sys.argv[1:]
imported = peak()
with open(path, "wb") as out, SourceDatabase(dsn=dsn).snapshot(logging.getLogger(), "bench") as snapshot:
    snapshot.copy_changed_rows("order_items", datetime.fromisoformat(start), datetime.fromisoformat(end), out)
print(imported, peak())
"""


def _window(day: str) -> tuple[datetime, datetime]:
    window = ingestion_date_partitions.time_window_for_partition_key(day)
    return window.start, window.end


class BenchDatabase:
    """The bench's ecomm-db: the project's schema, order_items grown with server-side SQL."""

    def __init__(self, server: EmbeddedPostgres):
        self.server = server
        self.conninfo = server.resource().conninfo()
        self.rows = 0

    def create(self) -> None:
        self.server.create_source_schema()
        with psycopg.connect(self.conninfo) as connection:
            connection.execute("""
                INSERT INTO customers SELECT g, 'first' || g, 'last' || g, 'c' || g || '@example.com',
                    'Bangkok', 'TH', '2025-01-01', '2025-01-01' FROM generate_series(1, %s) g""", (CUSTOMERS,))
            connection.execute("""
                INSERT INTO products SELECT g, 'product ' || g, 'category ' || mod(g, 20), 1 + mod(g, 500),
                    '2025-01-01', '2025-01-01' FROM generate_series(1, %s) g""", (PRODUCTS,))
            connection.execute("""
                INSERT INTO orders SELECT g, 1 + mod(g, %s), '2025-06-01'::timestamptz + g * interval '1 minute',
                    'delivered', 'card', '2025-06-01', '2025-06-01' FROM generate_series(1, %s) g""",
                               (CUSTOMERS, ORDERS))

    def add_items(self, count: int, start: datetime, end: datetime) -> None:
        """Insert ``count`` order lines whose updated_at are spread evenly over [start, end)."""
        with psycopg.connect(self.conninfo) as connection:
            # The rows are valid by construction; skipping the per-row FK triggers loads 3x faster.
            connection.execute("SET session_replication_role = replica")
            connection.execute("""
                INSERT INTO order_items
                SELECT %(first)s + g, 1 + mod(g, %(orders)s), 1 + mod(g, %(products)s), 1 + mod(g, 5),
                       1 + mod(g, 10000) / 100.0, at - interval '1 hour', at
                FROM generate_series(0, %(count)s - 1) g,
                     LATERAL (SELECT %(start)s + g * (%(end)s - %(start)s) / %(count)s AS at) t""",
                               {"first": self.rows + 1, "orders": ORDERS, "products": PRODUCTS,
                                "count": count, "start": start, "end": end})
        self.rows += count

    def grow_to(self, rows: int) -> None:
        """Add older order lines (outside every benchmarked window) until the table holds ``rows``."""
        oldest = _window(BIG_DAY)[0] - timedelta(days=365)
        self.add_items(rows - self.rows, oldest, oldest + timedelta(days=364))

    def analyze(self) -> None:
        """VACUUM too: sets hint bits now, and keeps autovacuum from running during the timings."""
        with psycopg.connect(self.conninfo, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")

    def select(self, day: str, order: str = " ORDER BY updated_at, 1") -> str:
        """The SELECT copy_changed_rows runs for the partition ``day``, as SQL text."""
        start, end = _window(day)
        query = sql.SQL("SELECT * FROM {table} WHERE updated_at >= {start} AND updated_at < {end}" + order
                        ).format(table=sql.Identifier(TABLE), start=start, end=end)
        with psycopg.connect(self.conninfo) as connection:
            return query.as_string(connection)


def _ours(db: BenchDatabase, day: str, path: Path) -> int:
    """copy_changed_rows of the partition ``day`` into ``path``; returns the row count."""
    with open(path, "wb") as out, db.server.resource().snapshot(logging.getLogger(), "bench") as snapshot:
        return snapshot.copy_changed_rows(TABLE, *_window(day), out)


def _psql(db: BenchDatabase, day: str, path: Path) -> None:
    command = [str(_postgres_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", db.conninfo,
               "-c", f"\\copy ({db.select(day)}) to '{path}' csv header"]
    subprocess.run(command, check=True, env={**os.environ, "PGOPTIONS": "-c TimeZone=UTC"})


def _pandas(db: BenchDatabase, day: str, path: Path) -> None:
    server = db.server
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://{server.user}@127.0.0.1:{server.port}/{server.dbname}",
        connect_args={"options": "-c TimeZone=UTC"})
    try:
        pd.read_sql(db.select(day), engine).to_csv(path, index=False)
    finally:
        engine.dispose()


def _server_only(db: BenchDatabase, select: str) -> float:
    """Median time the server takes to produce the CSV alone (COPY to its /dev/null), no client."""
    with psycopg.connect(db.conninfo, autocommit=True) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        return median_seconds(lambda: connection.execute(f"COPY ({select}) TO '/dev/null' (FORMAT csv, HEADER)"), 3)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _throughput(db: BenchDatabase, workdir: Path, quick: bool) -> list[Figure]:
    """Figure 1: the big partition, ours against psql \\copy and against pandas."""
    ours_file, psql_file, pandas_file = (workdir / f"{name}.csv" for name in ("ours", "psql", "pandas"))
    runs, pandas_runs = 5, 1 if quick else 2
    rows = _ours(db, BIG_DAY, ours_file)  # untimed: warms the cache, counts the partition
    ours = median_seconds(lambda: _ours(db, BIG_DAY, ours_file), runs)
    psql = median_seconds(lambda: _psql(db, BIG_DAY, psql_file), runs)
    pandas = median_seconds(lambda: _pandas(db, BIG_DAY, pandas_file), pandas_runs)
    server, unordered = _server_only(db, db.select(BIG_DAY)), _server_only(db, db.select(BIG_DAY, order=""))
    mb = ours_file.stat().st_size / 1e6
    same = "identical" if _digest(ours_file) == _digest(psql_file) else "DIFFERENT"
    extract = f"{rows:,} rows, {mb:.0f} MB, ours {mb / ours:.0f} MB/s"
    bound = (f"the server alone (COPY to /dev/null) takes {server:.2f} s of ours {ours:.2f} s, "
             f"{unordered:.2f} s without the ORDER BY")
    return [
        Figure("extract throughput vs psql \\copy", "copy_changed_rows", ours, "psql \\copy", psql,
               "ratio <= 1.25 (>= 0.8x psql speed)", ours / psql <= 1.25, runs,
               note=f"{extract}, psql {mb / psql:.0f} MB/s; the two files are {same}"),
        Figure("extract throughput vs pandas", "copy_changed_rows", ours, "pandas read_sql + to_csv", pandas,
               "ratio <= 0.1 (>= 10x faster)", ours / pandas <= 0.1, pandas_runs,
               note=f"{extract}, pandas {mb / pandas:.1f} MB/s (slow: {pandas_runs} run(s) only); {bound}"),
    ]


def _incremental(db: BenchDatabase, sizes: Sizes, workdir: Path) -> Figure:
    """Figure 2: the small partition while the table grows; the big partition arrives at the last step."""
    ms, server_ms, path, runs = {}, {}, workdir / "small.csv", 21
    for size in sizes.table:
        if size == sizes.table[-1]:
            db.add_items(sizes.big, *_window(BIG_DAY))
        db.grow_to(size)
        db.analyze()
        rows = _ours(db, SMALL_DAY, path)  # untimed: warms the cache, counts the partition
        ms[size] = 1000 * median_seconds(lambda: _ours(db, SMALL_DAY, path), runs)
        server_ms[size] = 1000 * _server_only(db, db.select(SMALL_DAY))
    first, last = sizes.table[0], sizes.table[-1]
    steps = ", ".join(f"{size:,} rows {ms[size]:.1f} ms (server alone {server_ms[size]:.1f} ms)"
                      for size in sizes.table)
    return Figure(f"incremental cost, {rows:,}-row window", f"table of {last:,} rows", ms[last],
                  f"table of {first:,} rows", ms[first], "ratio <= 1.5", ms[last] / ms[first] <= 1.5, runs,
                  unit="ms", note=f"{steps}; each run includes connecting")


def _key_snapshot(db: BenchDatabase, workdir: Path, window_ms: float) -> Figure:
    """Figure 9: the key snapshot every extract run lands, of the whole order_items table, against
    psql \\copy of the same query."""
    ours_file, psql_file, runs = workdir / "keys_ours.csv", workdir / "keys_psql.csv", 3
    before = _window(SMALL_DAY)[1]

    def ours() -> int:
        with open(ours_file, "wb") as out, db.server.resource().snapshot(logging.getLogger(), "bench") as snapshot:
            return snapshot.copy_key_versions(TABLE, before, out)

    with psycopg.connect(db.conninfo) as connection:
        query = key_versions_query(TABLE, before).as_string(connection)
    command = [str(_postgres_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", db.conninfo,
               "-c", f"\\copy ({query}) to '{psql_file}' csv header"]
    rows = ours()  # untimed: warms the cache, counts the keys
    ours_s = median_seconds(ours, runs)
    psql_s = median_seconds(lambda: subprocess.run(command, check=True, env={**os.environ, "PGOPTIONS": "-c TimeZone=UTC"}), runs)
    mb = ours_file.stat().st_size / 1e6
    same = "identical" if _digest(ours_file) == _digest(psql_file) else "DIFFERENT"
    return Figure(f"key snapshot of a {rows:,}-row table", "copy_key_versions", ours_s, "psql \\copy", psql_s,
                  "report", True, runs,
                  note=f"{rows:,} keys with their updated_at, {mb:.0f} MB, the two files are {same}; paid once "
                       f"per table and extract run, against {window_ms:.0f} ms for a 10,000-row partition")


def _memory_probe(db: BenchDatabase, day: str, path: Path, runs: int) -> tuple[float, float]:
    """Median peak RSS (MiB) of a fresh process extracting ``day``, and the same right after its imports."""
    start, end = _window(day)
    peaks = []
    for _ in range(runs):
        output = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, db.conninfo, start.isoformat(),
                                 end.isoformat(), str(path)], check=True, capture_output=True, text=True).stdout
        peaks.append([int(kib) / 1024 for kib in output.split()])
    return statistics.median(p[1] for p in peaks), statistics.median(p[0] for p in peaks)


def _memory(db: BenchDatabase, sizes: Sizes, workdir: Path) -> Figure:
    """Figure 3: peak client memory, big partition against small partition."""
    path, runs = workdir / "memory.csv", 3
    big, big_imported = _memory_probe(db, BIG_DAY, path, runs)
    small, small_imported = _memory_probe(db, SMALL_DAY, path, runs)
    return Figure("extract peak memory", f"{sizes.big:,}-row partition", big, f"{sizes.small:,}-row partition",
                  small, "ratio <= 1.2", big / small <= 1.2, runs, unit="MiB",
                  note=f"peak RSS (VmHWM) of a fresh process; {small_imported:.0f} MiB after importing the "
                       f"project, the extract adds {big - big_imported:.1f} MiB (big) and "
                       f"{small - small_imported:.1f} MiB (small)")


def run(workdir: Path, quick: bool = False) -> list[Figure]:
    """Measure figures 1-3 on one embedded PostgreSQL started in ``workdir``."""
    sizes = QUICK if quick else FULL
    workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="postgres-", dir=workdir))
    server = EmbeddedPostgres(folder / "data", free_port())
    server.start()
    try:
        db = BenchDatabase(server)
        db.create()
        db.add_items(sizes.small, *_window(SMALL_DAY))
        incremental = _incremental(db, sizes, workdir)  # grows the table to its full size
        return [*_throughput(db, workdir, quick), incremental, _memory(db, sizes, workdir),
                _key_snapshot(db, workdir, incremental.ours)]
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes divided by 10, for a smoke run")
    args = parser.parse_args()
    began = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="extract-bench-"))
    try:
        for figure in run(workdir, quick=args.quick):
            print(figure.as_dict())
    finally:
        shutil.rmtree(workdir)
    print(f"total {time.perf_counter() - began:.0f} s")
