"""The repair that runs itself: when the reconciliation check ``in_sync`` names an ingestion date
that the next nightly run's lookback no longer reaches, that date's partition is extracted and
refreshed again, once. The repair run carries the tag ``ecomm/repair_of``; the alert sensor says
what it did, and says it with an error when the date is still out of sync after it."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ecomm_assets.extract.assets import ExtractConfig
from ecomm_assets.jobs import batch_ecomm_pipeline

IN_SYNC = dg.AssetCheckKey(dg.AssetKey(["silver", "source_reconciliation"]), "in_sync")
REPAIR_TAG = "ecomm/repair_of"
# A date repaired within this time is not repaired again: if it is still out of sync, a person must look.
ONCE_WITHIN = timedelta(days=7)


def _healing_by_itself(day: str, judged_on: str) -> bool:
    """The nightly run after ``judged_on`` re-extracts ``day`` within its lookback."""
    lookback = timedelta(hours=ExtractConfig.model_fields["lookback_hours"].default)
    return date.fromisoformat(day) >= date.fromisoformat(judged_on) + timedelta(days=1) - lookback


@dg.sensor(
    name="rerun_out_of_sync_days",
    job=batch_ecomm_pipeline,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-runs, once, the ingestion date that the latest failed in_sync check names when "
    "the next nightly run's lookback does not reach it (a change committed too late).",
)
def rerun_out_of_sync_days(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key([IN_SYNC]).get(IN_SYNC)
    if latest is None or latest.status != AssetCheckExecutionRecordStatus.FAILED:
        return dg.SensorResult(skip_reason="in_sync passes: nothing to repair.")
    evaluation = latest.event.dagster_event.event_specific_data
    named = sorted(str(day) for day in evaluation.metadata["failed_sample"].value)
    due = [day for day in named if not _healing_by_itself(day, evaluation.partition)]
    repairs, done_before = [], []
    for day in due:
        if context.instance.get_run_records(dg.RunsFilter(
                tags={REPAIR_TAG: day}, created_after=datetime.now(UTC) - ONCE_WITHIN), limit=1):
            done_before.append(day)
        else:
            repairs.append(dg.RunRequest(run_key=f"repair-{day}-{latest.id}", partition_key=day,
                                         tags={REPAIR_TAG: day}))
    said = [f"in_sync names {', '.join(named)}"]
    if repairs:
        said.append(f"re-running {', '.join(r.partition_key for r in repairs)}")
    if done_before:
        said.append(f"repaired once already, left to a person: {', '.join(done_before)}")
    if len(due) < len(named):
        said.append("the next nightly run's lookback reaches the others")
    return dg.SensorResult(run_requests=repairs, skip_reason=None if repairs else "; ".join(said) + ".")
