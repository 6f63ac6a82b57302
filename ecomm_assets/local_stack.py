"""Command line for the local stack: ``python -m ecomm_assets.local_stack <command> [<command> ...]``.

  up               start the embedded PostgreSQL (ecomm-db) under ECOMM_HOME
  seed [DAYS]      fill the source tables with the demo shop as it stood DAYS (30) days ago, and
                   stage its changes since, unless already seeded
  replay           apply each seeded day's changes to ecomm-db, then land that day's partition,
                   as the 01:00 schedule would have; days landed already are skipped
  build [DAYS]     materialize every asset for DAYS (FIRST...LAST or one day) in one run, unless
                   done already; without DAYS, every seeded day after the replay (the landing is
                   done). One line per step here, Dagster's whole log in a file
  summary          print the KPIs that dbt built
  down             stop the embedded PostgreSQL
"""

import logging
import os
import re
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import psycopg
from dagster._core.utils import make_new_run_id

from ecomm_assets import environment
from ecomm_assets.extract.landing_zone import partition_folder
from ecomm_assets.jobs import ecomm_pipeline
from ecomm_assets.local_run_launcher import fail_dead_runs
from ecomm_assets.operations.metrics_store import RunMetrics, failed_records
from ecomm_assets.operations.monitoring_page import write_monitoring_page
from ecomm_assets.partitions import ingestion_date_partitions, partition_range, range_tags
from ecomm_assets.source import demo_data
from ecomm_assets.source.embedded_server import EmbeddedPostgres, server_version

SEED_STATE = "seeded_window.txt"
DAYS_BEFORE = 60  # the demo shop's orders before its window: the first partition loads them
LOOKBACK_HOURS = 24  # as the landing assets' default


def _server() -> EmbeddedPostgres:
    return EmbeddedPostgres(environment.ecomm_home() / "postgres", environment.local_pg_port())


def _today_start() -> datetime:
    return datetime.now(ZoneInfo(ingestion_date_partitions.timezone)).replace(hour=0, minute=0, second=0,
                                                                              microsecond=0)


def seed(days: int) -> None:
    if (environment.ecomm_home() / SEED_STATE).exists():
        print(f"ecomm-db already seeded: changes from {_seeded_window().replace('...', ' to ')} "
              "(`make clean` starts over)")
        return
    server = _server()
    server.create_source_schema()
    end = _today_start()
    start = end - timedelta(days=days)
    with psycopg.connect(server.resource().conninfo()) as connection:
        demo_data.stage(connection, demo_data.plan(start, end, demo_data.DemoSize(days_before=DAYS_BEFORE)))
        demo_data.apply_changes(connection, None, start)
        counts = demo_data.counts(connection)
    first, last = start.date().isoformat(), (end - timedelta(days=1)).date().isoformat()
    (environment.ecomm_home() / SEED_STATE).write_text(f"{first}...{last}\n")
    print(f"ecomm-db seeded with the demo shop as it stood on {first} (Asia/Bangkok): {counts}; its changes "
          f"from {first} to {last} are staged in schema demo")


def replay() -> None:
    """Move ecomm-db through the seeded days one at a time, landing each day's partition after its
    changes, with the same extract the landing assets run (outside a Dagster run: 30 runs would
    take minutes). Each landed partition is recorded as a materialization of its landing asset."""
    from ecomm_assets.extract.assets import land_extract  # here: the partitions start at ECOMM_FIRST_INGESTION_DATE

    first, last = _seeded_window().split("...")
    days = ingestion_date_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
    resources = environment.local_resources(environment.ecomm_home(), environment.local_pg_port())
    landing_zone, server = resources["landing_zone"], _server()
    todo = [day for day in days if not landing_zone.read_manifest(partition_folder("order_items", day))]
    if not todo:
        print(f"Every day {first} to {last} is landed already")
        return
    started = time.monotonic()
    with dg.DagsterInstance.get() as instance, psycopg.connect(server.resource().conninfo()) as connection:
        for day in todo:
            window = ingestion_date_partitions.time_window_for_partition_key(day)
            demo_data.apply_changes(connection, window.start, window.end)
            for table, metadata in land_extract(resources["source_db"], landing_zone, list(demo_data.TABLES), [day],
                                                LOOKBACK_HOURS, logging.getLogger("replay"), holder=f"replay of {day}"):
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(asset_key=["landing", table], partition=day, metadata=metadata))
    print(f"Replayed {len(todo)} days of the shop into ecomm-db, landing each after its changes "
          f"({time.monotonic() - started:.1f} s)")


def _seeded_window() -> str:
    """The ingestion dates the demo data covers, as FIRST...LAST."""
    return (environment.ecomm_home() / SEED_STATE).read_text().strip()


@contextmanager
def _output_to(log: Path) -> Iterator[TextIO]:
    """Everything this process and its children (dbt) print goes to ``log`` for the block; what
    is written to the stream it yields still reaches the terminal."""
    log.parent.mkdir(parents=True, exist_ok=True)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with log.open("a") as file, os.fdopen(os.dup(saved[1]), "w", buffering=1) as terminal:
        for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
            stream.flush()
            os.dup2(file.fileno(), fd)
        try:
            yield terminal
        finally:
            for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
                stream.flush()
                os.dup2(saved[fd], fd)
                os.close(saved[fd])


ENGINE_LINE = re.compile(r"\w+\.\w+: \d+ rows")  # the local engine's line per table it refreshed
NOTICE = ("Waiting for ", "Transient fault, retry ")  # what a step waits for (waiting.py, retries.py)


class StepReport:
    """What each step of a run did, read from its events as they come: one line per step (what it
    materialized and its rows: landed by the run, held by the tables it refreshed; seconds), then
    its error and each failed check with its days and failing rows."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str):
        self.instance, self.run_id, self.cursor = instance, run_id, None
        self.started, self.ended, self.rows = {}, {}, defaultdict(dict)  # rows: {step: {asset: row count}}
        self.failed_checks = defaultdict(lambda: defaultdict(dict))  # {step: {check: {day: failed rows}}}
        self.errors, self.tables_refreshed = {}, defaultdict(int)
        self.notices: list[tuple[str, str]] = []  # (step, what it waits for), in order

    def read(self) -> None:
        """Take in the run's events stored since the last read."""
        while True:
            page = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, limit=1000)
            for record in page.records:
                self._take(record.event_log_entry)
            self.cursor = page.cursor
            if not page.has_more:
                return

    def _take(self, entry) -> None:
        event, step = entry.dagster_event, entry.step_key
        if step is None:
            return
        if event is None:
            if ENGINE_LINE.fullmatch(entry.user_message or ""):
                self.tables_refreshed[step] += 1
            elif (entry.user_message or "").startswith(NOTICE):
                self.notices.append((step, entry.user_message.splitlines()[0]))
        elif event.event_type == dg.DagsterEventType.STEP_START:
            self.started[step] = entry.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            self.ended[step] = (entry.timestamp, True)
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            self.ended[step] = (entry.timestamp, False)
            failure = event.step_failure_data
            error = failure.error
            while error.cause:  # the user code's own error, under Dagster's wrapping
                error = error.cause
            self.errors[step] = (failure.user_failure_data.description if failure.user_failure_data
                                 else error.message.strip().splitlines()[0])
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            # an asset of a range run is materialized once per day, each time with the run's count
            materialization = event.step_materialization_data.materialization
            row_count = materialization.metadata.get("dagster/row_count")
            self.rows[step][materialization.asset_key.to_user_string()] = row_count.value if row_count else 0
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:
                check = f"{evaluation.asset_key.to_user_string()} {evaluation.check_name} ({evaluation.severity.value})"
                self.failed_checks[step][check][evaluation.partition or "all days"] = failed_records(evaluation.metadata)

    def lines(self, step: str) -> list[str]:
        """The lines of ``step``; one that never ended counts as failed, at the time it started."""
        start = self.started[step]
        end, succeeded = self.ended.get(step, (start, False))
        held = "landed" if step == "landing_extracts" else "in its tables"
        lines = [f"  {'ok    ' if succeeded else 'FAILED'} {step:<30} {len(self.rows[step]):>3} assets "
                 f"{sum(self.rows[step].values()):>10,} rows {held:<13} {end - start:7.1f} s"]
        if step in self.errors:
            lines.append(f"         {self.errors[step]}")
        for check, days in sorted(self.failed_checks[step].items()):
            counted = [n for n in days.values() if n is not None]
            lines.append(f"         failed check {check} on {_days(sorted(days))}"
                         + (f": {sum(counted):,.0f} failing rows" if counted else ""))
        return lines


def _print_steps_as_they_end(report: StepReport, out: TextIO, stop: threading.Event, tables: int) -> None:
    """While the run goes on: print what a step waits for as it says so, each step's lines when it
    ends and, at most every 5 s, how many of the ``tables`` a running lakehouse step has refreshed
    (then that it stores their events)."""
    printed, said, said_at, noticed = set(), {}, 0.0, 0
    while not stop.wait(1):
        report.read()
        for step, notice in report.notices[noticed:]:
            print(f"         {step}: {notice}", file=out)
        noticed = len(report.notices)
        for step in [s for s in report.started if s in report.ended and s not in printed]:
            print("\n".join(report.lines(step)), file=out)
            printed.add(step)
        for step, done in report.tables_refreshed.items():
            if step in report.ended or said.get(step) == done or (done < tables and time.monotonic() - said_at < 5):
                continue
            print(f"         {step}: {done} of {tables} tables refreshed" + (
                ", storing their materializations and check results" if done == tables else ""), file=out)
            said[step], said_at = done, time.monotonic()
    report.read()
    for step in [s for s in report.started if s not in printed]:
        print("\n".join(report.lines(step)), file=out)


def _days(days: list[str]) -> str:
    return ", ".join(days) if len(days) <= 3 else f"{len(days)} days, {days[0]} to {days[-1]}"


def unbuilt(instance: dg.DagsterInstance, keys: set[dg.AssetKey], first: str, last: str) -> dict[str, list[str]]:
    """{asset: the days from ``first`` to ``last`` it holds no materialization of}, for each of the
    assets ``keys`` that misses one: what a build of those days would add, whatever run made the rest."""
    days = ingestion_date_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
    missing = {key.to_user_string(): sorted(set(days) - instance.get_materialized_partitions(key)) for key in keys}
    return {asset: days for asset, days in sorted(missing.items()) if days}


def build(days: str | None) -> None:
    """Materialize every asset for ``days`` in one run of the local Dagster instance; without
    ``days``, every asset but the landing (replayed already) for the seeded days."""
    try:
        first, last = partition_range(days or _seeded_window())
    except ValueError as error:
        sys.exit(str(error))
    from ecomm_assets.definitions import defs  # here: the partitions start at ECOMM_FIRST_INGESTION_DATE
    from ecomm_assets.lakehouse.assets import lakehouse_tables

    selection = dg.AssetSelection.all() if days else dg.AssetSelection.all() - dg.AssetSelection.groups("landing")
    tags = range_tags(first, last)
    with dg.DagsterInstance.get() as instance:
        for run_id in fail_dead_runs(instance):
            print(f"Run {run_id} was left started by a process that is gone: marked failed.")
        keys = selection.resolve(defs.resolve_asset_graph())
        missing = unbuilt(instance, keys, first, last)
        if not missing:
            print(f"Each of the {len(keys)} assets is materialized for every day {first} to {last}: "
                  "nothing to do (`make clean` starts over).")
            return
        if len(missing) < len(keys):
            print(f"{len(missing)} of {len(keys)} assets miss days of {first} to {last}, e.g. " + "; ".join(
                f"{asset} ({len(days)} days from {days[0]})" for asset, days in list(missing.items())[:3]))
        log = environment.ecomm_home() / "logs" / f"build_{datetime.now():%Y%m%d_%H%M%S}.log"
        print(f"Building every asset for {first} to {last} in one run (Dagster's log: {log})")
        started, run_id, stop = time.monotonic(), make_new_run_id(), threading.Event()
        with _output_to(log) as terminal:
            reporter = threading.Thread(target=_print_steps_as_they_end, args=(
                StepReport(instance, run_id), terminal, stop,
                len(keys & lakehouse_tables.keys)))
            reporter.start()
            try:
                result = defs.resolve_job_def(ecomm_pipeline.name).execute_in_process(
                    instance=instance, tags=tags, raise_on_error=False, asset_selection=list(keys), run_id=run_id)
            finally:
                stop.set()
                reporter.join()
        print(f"Run {result.run_id} {'succeeded' if result.success else 'FAILED'} in "
              f"{time.monotonic() - started:.0f} s")
        # what export_run_metrics does under the daemon (it writes nothing twice)
        ops = environment.ops_metrics_store()
        ops.write([RunMetrics.of(instance, result.run_id)])
        print(f"Run metrics in PostgreSQL schema ecomm_ops; the monitoring page: "
              f"{write_monitoring_page(ops.conninfo, Path(ops.monitoring_page))}")
        if not result.success:
            sys.exit(f"The run failed; its errors are in {log} and in the Dagster UI (`make dev`).")


def summary() -> None:
    database = environment.lakehouse_database(environment.ecomm_home())
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


COMMANDS = {"up", "seed", "replay", "build", "summary", "down"}


def main(argv: list[str]) -> None:
    """Run the commands of ``argv`` in order, in this one process (each start of the interpreter
    costs seconds of imports); a command's argument, if any, follows it."""
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        sys.exit(0 if argv[:1] in ([], ["help"]) else 2)
    while argv:
        command, argv = argv[0], argv[1:]
        argument = argv.pop(0) if argv and argv[0] not in COMMANDS else None
        if command == "up":
            _server().start()
            print(f"ecomm-db (PostgreSQL {server_version()}) listening on 127.0.0.1:{environment.local_pg_port()}")
        elif command == "seed":
            seed(int(argument or 30))
        elif command == "replay":
            replay()
        elif command == "build":
            build(argument)
        elif command == "summary":
            summary()
        elif command == "down":
            _server().stop()
        else:
            sys.exit(f"{command!r} is not a command: {', '.join(sorted(COMMANDS))}")


if __name__ == "__main__":
    main(sys.argv[1:])
