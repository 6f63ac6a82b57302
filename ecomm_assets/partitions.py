"""The one partitions definition every partitioned asset shares.

Partition ``D`` stands for the rows of ecomm-db whose ``updated_at`` falls on day ``D`` in
Asia/Bangkok (ICT). Sharing a single definition keeps a backfill of the whole graph in one run.
"""

import os
import sys
from datetime import date

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, PARTITION_NAME_TAG

# The first day of the data: ECOMM_FIRST_INGESTION_DATE (YYYY-MM-DD), which `make run` and
# `make dev` set to the first seeded day, so the UI does not list hundreds of empty days.
FIRST_INGESTION_DATE = os.getenv("ECOMM_FIRST_INGESTION_DATE") or "2025-01-01"

ingestion_date_partitions = dg.DailyPartitionsDefinition(start_date=FIRST_INGESTION_DATE, timezone="Asia/Bangkok")


def run_ingestion_dates(context: dg.AssetExecutionContext) -> list[str]:
    """The ingestion dates of the run; a range that selects none (its first after its last) is an error."""
    if not context.partition_keys:
        selected = context.partition_key_range
        raise dg.Failure(f"The partition range {selected.start}...{selected.end} selects no ingestion "
                         "date: its first date must not come after its last.")
    return context.partition_keys


def partition_range(days: str) -> tuple[str, str]:
    """FIRST...LAST (or one day) as partition keys; a ValueError says in one line what is wrong."""
    first, _, last = days.partition("...")
    keys = ingestion_date_partitions.get_partition_keys()
    for day in (first, last or first):
        try:
            date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"{day!r} is not a day: write YYYY-MM-DD, or FIRST...LAST for a range.") from None
        if day not in keys:
            raise ValueError(f"There is no partition {day}: the partitions run from {keys[0]} to {keys[-1]}.")
    if first > (last or first):
        raise ValueError(f"{days} is empty: its first day comes after its last.")
    return first, last or first


def range_tags(first: str, last: str) -> dict[str, str]:
    """The tags of one run over the partitions ``first`` to ``last`` (a single-run backfill)."""
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def run_partitions(run: dg.DagsterRun) -> tuple[str | None, str | None]:
    """The first and last ingestion date a run covered, from its tags (None, None: not partitioned)."""
    first = run.tags.get(ASSET_PARTITION_RANGE_START_TAG, run.tags.get(PARTITION_NAME_TAG))
    return first, run.tags.get(ASSET_PARTITION_RANGE_END_TAG, first)


def landed_partitions(context: dg.MultiAssetSensorEvaluationContext) -> dict[str, dict[dg.AssetKey, dg.EventLogRecord]]:
    """{partition: {asset: its latest materialization}} of the partitions for which every asset the
    sensor monitors materialized since its cursor; the cursor is advanced past them."""
    monitored = set(context.asset_keys)
    landed = context.latest_materialization_records_by_partition_and_asset()
    complete = {p: records for p, records in landed.items() if set(records) == monitored}
    for records in complete.values():
        context.advance_cursor(records)
    return complete


def partition_range_request(name: str, first: str, last: str, records: dict) -> dg.RunRequest:
    """One run of the partitions ``first`` to ``last``, keyed by what landed (``records`` as from
    landed_partitions), so that the same landing never asks twice."""
    newest = max(r.storage_id for by_asset in records.values() for r in by_asset.values())
    return dg.RunRequest(run_key=f"{name}-{first}-{last}-{newest}", tags=range_tags(first, last))


if __name__ == "__main__":  # `make run DAYS=...` asks here first: a wrong range is refused in a second
    try:
        partition_range(sys.argv[1])
    except ValueError as error:
        sys.exit(str(error))
