"""The run metrics table in ecomm_ops as an asset, and the check that a pipeline run was not
slower than usual: each single-day run of the two pipeline jobs against the 95th percentile of
the same job's previous successful single-day runs."""

import dagster as dg
import psycopg
from pydantic import Field

from ecomm_assets.jobs import batch_ecomm_pipeline, daily_refresh
from ecomm_assets.operations.metrics_store import OpsMetricsStore

PIPELINE_JOBS = [batch_ecomm_pipeline.name, daily_refresh.name]
TRAILING_RUNS = 28  # the runs the percentile is taken over: four weeks of nightly runs
MINIMUM_HISTORY = 7  # fewer earlier runs judge nothing (a percentile of three runs is noise)
SLOWER = 1.5  # a run is slow above this multiple of its trailing p95

ecomm_ops_runs = dg.AssetSpec(
    key=["ecomm_ops", "runs"],
    group_name="operations",
    description="One row per ended run of this code location (job, status, ingestion dates, "
                "duration), in PostgreSQL schema ecomm_ops; written by the export_run_metrics sensor.",
    kinds={"postgres"},
)

# Each judged run with its trailing p95 and the number of runs it was taken over. A run is judged
# when it succeeded for one ingestion date; a range backfill's duration says nothing of a night's.
JUDGED = """
SELECT r.run_id, r.job_name, r.partition_end, r.duration_seconds, history.p95, history.runs
FROM ecomm_ops.runs AS r
CROSS JOIN LATERAL (
    SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_seconds) AS p95, count(*) AS runs
    FROM (SELECT earlier.duration_seconds FROM ecomm_ops.runs AS earlier
          WHERE earlier.job_name = r.job_name AND earlier.status = 'SUCCESS'
            AND earlier.partition_start = earlier.partition_end AND earlier.ended_at < r.ended_at
          ORDER BY earlier.ended_at DESC LIMIT %(trailing)s) AS last_runs
) AS history
WHERE r.status = 'SUCCESS' AND r.partition_start = r.partition_end AND r.job_name = ANY(%(jobs)s)
  AND (r.run_id = ANY(%(run_ids)s) OR (cardinality(%(run_ids)s) = 0 AND r.ended_at = (
      SELECT max(latest.ended_at) FROM ecomm_ops.runs AS latest
      WHERE latest.job_name = r.job_name AND latest.status = 'SUCCESS'
        AND latest.partition_start = latest.partition_end)))
ORDER BY r.ended_at
"""


class JudgedRuns(dg.Config):
    run_ids: list[str] = Field(default=[], description="The runs to judge; none: the latest "
                                                       "single-day run of each pipeline job.")


@dg.asset_check(
    asset=ecomm_ops_runs.key,
    name="runs_within_trailing_p95",
    blocking=False,
    description=f"Warns of a single-day run of {' or '.join(PIPELINE_JOBS)} that took more than "
                f"{SLOWER}x the 95th percentile of the same job's last {TRAILING_RUNS} successful "
                f"single-day runs (judged from {MINIMUM_HISTORY} on); started by export_run_metrics "
                "after it exports such runs.",
)
def runs_within_trailing_p95(config: JudgedRuns, ops_metrics: OpsMetricsStore) -> dg.AssetCheckResult:
    with psycopg.connect(ops_metrics.conninfo, connect_timeout=10) as connection:
        runs = connection.execute(JUDGED, {"trailing": TRAILING_RUNS, "jobs": PIPELINE_JOBS,
                                           "run_ids": config.run_ids}).fetchall()
    judged = [run for run in runs if run[5] >= MINIMUM_HISTORY]
    slow = [f"run {run_id} ({job}, {day}) took {seconds:.1f} s, over {SLOWER}x its trailing p95 of {p95:.1f} s"
            for run_id, job, day, seconds, p95, _ in judged if seconds > SLOWER * p95]
    return dg.AssetCheckResult(
        passed=not slow,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(slow) or f"{len(judged)} run(s) judged, none slow "
                                       f"({len(runs) - len(judged)} with fewer than {MINIMUM_HISTORY} earlier runs)",
        metadata={"judged_runs": len(judged), "slow_runs": len(slow),
                  "runs": [{"run_id": r[0], "job": r[1], "day": r[2], "seconds": round(r[3], 1),
                            "trailing_p95": None if r[4] is None else round(r[4], 1), "earlier_runs": r[5]}
                           for r in runs]},
    )


check_run_durations = dg.define_asset_job(
    name="check_run_durations",
    description="Judges the durations of the pipeline runs just exported to ecomm_ops.",
    selection=dg.AssetSelection.checks(runs_within_trailing_p95),
)
