"""Landing assets: the nightly extract of each ecomm-db table into the landing zone."""

import logging
from collections.abc import Iterator, Sequence
from datetime import timedelta
from functools import partial

import dagster as dg
from pydantic import Field

from ecomm_assets.extract.landing_zone import (
    LandingZone,
    changes_file,
    deleted_keys_file,
    extract_id,
    key_snapshot_file,
    key_snapshot_folder,
    partition_folder,
)
from ecomm_assets.partitions import ingestion_date_partitions, run_ingestion_dates
from ecomm_assets.retries import StepRetries
from ecomm_assets.source.postgres import SourceDatabase, SourceTable, column_descriptions, source_tables

TABLE_DESCRIPTIONS = {
    "customers": "Customer profiles (name, email, city, country) changed on the ingestion date.",
    "products": "Product catalog rows (name, category, unit price) changed on the ingestion date.",
    "orders": "Orders (customer, time ordered, status, payment method) changed on the ingestion date.",
    "order_items": "Order lines (order, product, quantity, amount charged) changed on the ingestion date.",
}


class ExtractConfig(dg.Config):
    lookback_hours: int = Field(
        default=24, ge=0,
        description="Each partition also re-extracts the rows whose updated_at falls this long before "
                    "its day: a change committed late (a transaction open across the extract, a "
                    "back-dated updated_at) is picked up by the next partition within this lookback.")


def _landing_spec(table: SourceTable) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=["landing", table.name],
        description=f"CSV extract of ecomm-db `public.{table.name}`: {TABLE_DESCRIPTIONS[table.name]} "
        "Each extract of an ingestion date writes new files (never rewrites one): the rows with "
        "updated_at on that day in Asia/Bangkok and in the lookback before it (the first partition: "
        "everything before it too, the initial load), the keys deleted since the extract before, and a "
        "manifest naming them current. Beside them a snapshot of every "
        f"`{table.primary_key}` with its updated_at (for reconciliation).",
        group_name="landing",
        kinds={"postgres", "csv"},
        skippable=True,
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name, type, description=column_descriptions().get(name))
                         for name, type in table.columns]
            ),
        },
    )


def land_extract(source_db: SourceDatabase, landing_zone: LandingZone, tables: Sequence[str], dates: Sequence[str],
                 lookback_hours: int, log: dg.DagsterLogManager | logging.Logger, holder: str
                 ) -> Iterator[tuple[str, dict]]:
    """Land each table's changed rows for ``dates``, the keys deleted since the extract before, and
    its key snapshot, all read from one snapshot of ecomm-db; yields each table's materialization
    metadata as it lands. ``holder`` names the extract to one waiting for the lock (a run id)."""
    lookback = timedelta(hours=lookback_hours)
    due_before = ingestion_date_partitions.time_window_for_partition_key(dates[-1]).end
    first_partition = ingestion_date_partitions.get_first_partition_key()
    previous_keys = {table: landing_zone.open(f"{key_snapshot_folder(table)}/{key_snapshot_file(table)}")
                     for table in tables}
    with source_db.snapshot(log, holder=holder, previous_keys=previous_keys) as snapshot:
        extract = {"extract_id": extract_id(snapshot.taken_at), "snapshot_at": snapshot.taken_at.isoformat(),
                   "dagster_run_id": holder}
        for table in tables:
            landed = []
            for date in dates:
                window = ingestion_date_partitions.time_window_for_partition_key(date)
                # the first partition is the initial load: every row changed before its day too
                start = None if date == first_partition else window.start - lookback
                last = date == dates[-1]
                # The run's last partition also takes what only the run can see: the rows dated after
                # its snapshot (a clock ahead) and the keys deleted since the extract before.
                files = {changes_file(table, extract["extract_id"]): partial(
                    snapshot.copy_changed_rows, table, start, window.end, future_dated=last)}
                if last:
                    files[deleted_keys_file(table, extract["extract_id"])] = partial(snapshot.copy_deleted_keys, table)
                manifest = landing_zone.land(
                    partition_folder(table, date), files,
                    {**extract, "table": table, "ingestion_date": date, "lookback_hours": lookback_hours,
                     "updated_at_from": start.isoformat() if start else None, "updated_at_to": window.end.isoformat()})
                changes = manifest["files"][changes_file(table, extract["extract_id"])]
                deleted = manifest["files"].get(deleted_keys_file(table, extract["extract_id"]), {"rows": 0})
                landed.append({"ingestion_date": date, "rows": changes["rows"], "deleted_keys": deleted["rows"],
                               "bytes": changes["bytes"], "sha256": changes["sha256"],
                               "updated_at_from": manifest["updated_at_from"],
                               "updated_at_to": manifest["updated_at_to"]})
                log.info(f"{table} {date}: {changes['rows']} rows, {changes['bytes']} bytes, "
                         f"{deleted['rows']} deleted keys -> {landing_zone.uri(partition_folder(table, date))}")
            # The key snapshot lands last: the keys deleted since the one it replaces are landed by then,
            # so a run that dies before this point finds them again.
            key_snapshot = landing_zone.land(
                key_snapshot_folder(table),
                {key_snapshot_file(table): partial(snapshot.copy_key_versions, table, due_before)},
                {**extract, "table": table, "versions_before": due_before.isoformat()})
            [keys] = key_snapshot["files"].values()
            yield table, {
                "dagster/row_count": sum(p["rows"] for p in landed),
                "bytes": sum(p["bytes"] for p in landed),
                "deleted_keys": sum(p["deleted_keys"] for p in landed),
                "snapshot_at": snapshot.taken_at.isoformat(),
                "extract_id": extract["extract_id"],
                "updated_at_from": landed[0]["updated_at_from"],
                "updated_at_to": landed[-1]["updated_at_to"],
                "keys_in_source": keys["rows"],
                "path": dg.MetadataValue.path(landing_zone.uri(table)),
                "partitions": dg.MetadataValue.json(landed),
            }


@dg.multi_asset(
    specs=[_landing_spec(table) for table in source_tables().values()],
    partitions_def=ingestion_date_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
)
def landing_extracts(
    context: dg.AssetExecutionContext, config: ExtractConfig, source_db: SourceDatabase,
    landing_zone: LandingZone, retries: StepRetries,
):
    """Land each selected table's changed rows for the run's ingestion dates, the keys deleted since
    the extract before, and its key snapshot, all read from one snapshot of ecomm-db."""
    tables = sorted(key.path[-1] for key in context.selected_asset_keys)
    with retries.on_transient_fault(context):
        for table, metadata in land_extract(source_db, landing_zone, tables, run_ingestion_dates(context),
                                            config.lookback_hours, context.log, holder=context.run.run_id):
            yield dg.MaterializeResult(asset_key=["landing", table], metadata=metadata)
