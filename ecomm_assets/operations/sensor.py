"""The sensor that exports each ended run's metrics to the operations metrics store (ecomm_ops)."""

from pathlib import Path

import dagster as dg
import psycopg

from ecomm_assets.alerts.sensor import run_end_events
from ecomm_assets.lakehouse.engine import LakehouseEngine
from ecomm_assets.operations.assets import PIPELINE_JOBS, check_run_durations, runs_within_trailing_p95
from ecomm_assets.operations.metrics_store import OpsMetricsStore, RunMetrics
from ecomm_assets.operations.monitoring_page import write_monitoring_page

RUNS_PER_TICK = 20  # a tick stays short whatever the backlog; the next one goes on from the cursor
DBU_DAYS = 7  # the billing table's last days, written again after each export (usage lands late)


@dg.sensor(
    name="export_run_metrics",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    jobs=[check_run_durations],
    description="Writes the metrics of every ended run (duration, steps, rows per asset and day, "
    "check results, quality scores; in production the DBUs of the pipeline and the warehouse) to "
    "the PostgreSQL schema ecomm_ops, in the order the runs "
    "ended, each once, then redraws the pipeline monitoring page from it and has the pipeline "
    "runs among them judged by runs_within_trailing_p95; while the database is "
    "unreachable the runs wait for the next tick.",
)
def export_run_metrics(context: dg.SensorEvaluationContext, ops_metrics: OpsMetricsStore,
                       lakehouse: LakehouseEngine) -> dg.SensorResult:
    after = int(context.cursor) if context.cursor else None
    ended = run_end_events(context.instance, after, since=0.0)[:RUNS_PER_TICK]
    if not ended:
        return dg.SensorResult(skip_reason="No run ended since the last export.", cursor=context.cursor)
    try:
        dbu_usage = lakehouse.dbu_usage(days=DBU_DAYS)
    except Exception as error:  # noqa: BLE001 - no billing access must not hold the run metrics back
        context.log.warning(f"DBU usage not exported: {type(error).__name__}: {error}")
        dbu_usage = []
    metrics = [RunMetrics.of(context.instance, run_end.run_id) for run_end in ended]
    try:
        ops_metrics.write(metrics, dbu_usage)
        write_monitoring_page(ops_metrics.conninfo, Path(ops_metrics.monitoring_page))
    except psycopg.OperationalError as error:
        return dg.SensorResult(
            skip_reason=f"ecomm_ops is unreachable; {len(ended)} run(s) wait for the next tick: "
                        f"{(str(error).strip().splitlines() or [''])[0]}",
            cursor=context.cursor)
    exported = f"Exported {len(ended)} run(s) to ecomm_ops, the last {ended[-1].run_id}."
    pipeline_runs = [m.run[0] for m in metrics if m.run[1] in PIPELINE_JOBS]
    if not pipeline_runs:
        return dg.SensorResult(skip_reason=exported, cursor=str(ended[-1].storage_id))
    context.log.info(exported)
    judge = {"ops": {runs_within_trailing_p95.op.name: {"config": {"run_ids": pipeline_runs}}}}
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"durations:{pipeline_runs[-1]}", run_config=judge)],
                           cursor=str(ended[-1].storage_id))
