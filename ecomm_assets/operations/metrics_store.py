"""The operations metrics store: each ended run's metrics (duration, steps, rows per asset and
day, check results, quality scores) in the PostgreSQL schema ``ecomm_ops`` (``ecomm_ops.sql``),
where the team's monitoring reads them. Locally it is the embedded PostgreSQL's ``ecomm``
database; in production the database ``ECOMM_OPS_PG_DSN`` names."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psycopg
from pydantic import Field

from ecomm_assets.partitions import run_partitions

SCHEMA_SQL = Path(__file__).with_name("ecomm_ops.sql")


def _instant(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def _seconds(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


def _numbers(metadata: dict[str, dg.MetadataValue]) -> dict[str, float]:
    return {name: float(value.value) for name, value in metadata.items()
            if isinstance(value, dg.IntMetadataValue | dg.FloatMetadataValue) and value.value is not None}


def failed_records(metadata: dict[str, dg.MetadataValue]) -> float | None:
    """The rows a check evaluation counts as failing on its day (the day's count when it has one:
    a lakehouse expectation's; a dbt test's), or None when the check counts none."""
    numbers = _numbers(metadata)
    return numbers.get("partition_failed_records", numbers.get("failed_records",
                                                                numbers.get("dagster_dbt/failed_row_count")))


@dataclass
class RunMetrics:
    """One ended run, as the rows of the ecomm_ops tables."""

    run: tuple
    steps: list[tuple] = field(default_factory=list)
    asset_metrics: list[tuple] = field(default_factory=list)
    check_results: list[tuple] = field(default_factory=list)

    @classmethod
    def of(cls, instance: dg.DagsterInstance, run_id: str) -> "RunMetrics":
        run, stats = instance.get_run_by_id(run_id), instance.get_run_stats(run_id)
        first, last = run_partitions(run)
        metrics = cls(run=(run_id, run.job_name, run.status.value, first, last, _instant(stats.start_time),
                           _instant(stats.end_time), _seconds(stats.start_time, stats.end_time)))
        for step in instance.get_run_step_stats(run_id):
            metrics.steps.append((run_id, step.step_key, step.status.value if step.status else None,
                                  len(step.attempts_list) or 1, _instant(step.start_time),
                                  _instant(step.end_time), _seconds(step.start_time, step.end_time)))
        records = instance.get_records_for_run(run_id, of_type={
            dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION}).records
        for record in records:
            event = record.event_log_entry.dagster_event
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                materialization = event.event_specific_data.materialization
                metrics.asset_metrics += [(run_id, materialization.asset_key.to_user_string(),
                                           materialization.partition or "", name, value)
                                          for name, value in _numbers(materialization.metadata).items()]
            else:
                evaluation = event.event_specific_data
                metrics.check_results.append((
                    run_id, evaluation.asset_key.to_user_string(), evaluation.check_name, evaluation.partition or "",
                    evaluation.passed, evaluation.severity.value, failed_records(evaluation.metadata)))
        return metrics


class OpsMetricsStore(dg.ConfigurableResource):
    """The PostgreSQL database that holds schema ecomm_ops."""

    conninfo: str = Field(description="libpq connection string; a secret one through dg.EnvVar.")
    monitoring_page: str = Field(description="Where the pipeline monitoring page is written.")

    def write(self, metrics: list[RunMetrics], dbu_usage: list[tuple[str, str, float]] = ()) -> None:
        """Write the runs, and the DBUs per day and resource, in one transaction. A run written
        before is not written again (and any row of it already there stays as it is); a day's DBUs
        are replaced by the billing table's latest count (a day's usage grows until it ends)."""
        with psycopg.connect(self.conninfo, connect_timeout=10) as connection, connection.cursor() as cursor:
            cursor.execute(SCHEMA_SQL.read_text())
            for run in metrics:
                cursor.execute("INSERT INTO ecomm_ops.runs VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                               "ON CONFLICT DO NOTHING", run.run)
                for table, rows in [("steps", run.steps), ("asset_metrics", run.asset_metrics),
                                    ("check_results", run.check_results)]:
                    if rows:
                        placeholders = ", ".join(["%s"] * len(rows[0]))
                        cursor.executemany(f"INSERT INTO ecomm_ops.{table} VALUES ({placeholders}) "
                                           "ON CONFLICT DO NOTHING", rows)
            cursor.executemany("INSERT INTO ecomm_ops.dbu_usage VALUES (%s, %s, %s) ON CONFLICT (usage_date, resource) "
                               "DO UPDATE SET dbus = excluded.dbus", dbu_usage)
