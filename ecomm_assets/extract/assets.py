"""Landing assets: the nightly extract of each ecomm-db table into the landing zone."""

import dagster as dg

from ecomm_assets.extract.landing_zone import LandingZone
from ecomm_assets.partitions import ingestion_date_partitions
from ecomm_assets.source.postgres import SourceDatabase, source_columns

TABLE_DESCRIPTIONS = {
    "customers": "Customer profiles (name, email, city, country) changed on the ingestion date.",
    "products": "Product catalog rows (name, category, unit price) changed on the ingestion date.",
    "orders": "Orders (customer, time ordered, status, payment method) changed on the ingestion date.",
    "order_items": "Order lines (order, product, quantity, amount charged) changed on the ingestion date.",
}


def _landing_spec(table: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=["landing", table],
        description=f"CSV extract of ecomm-db `public.{table}`: {TABLE_DESCRIPTIONS[table]} "
        "One file per ingestion date, rows with updated_at on that day in Asia/Bangkok.",
        group_name="landing",
        kinds={"postgres", "csv"},
        skippable=True,
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name, type) for name, type in source_columns()[table]]
            ),
        },
    )


@dg.multi_asset(
    specs=[_landing_spec(table) for table in source_columns()],
    partitions_def=ingestion_date_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
)
def landing_extracts(
    context: dg.AssetExecutionContext, source_db: SourceDatabase, landing_zone: LandingZone
):
    """Stream each selected table's changed rows, one CSV per partition, with PostgreSQL COPY."""
    for asset_key in sorted(context.selected_asset_keys):
        table = asset_key.path[-1]
        per_partition = []
        for partition_key in context.partition_keys:
            window = ingestion_date_partitions.time_window_for_partition_key(partition_key)
            with landing_zone.replace_partition(table, partition_key) as (out, uri):
                rows, size = source_db.copy_changed_rows(table, window.start, window.end, out)
            per_partition.append({"ingestion_date": partition_key, "rows": rows, "bytes": size,
                                  "updated_at_from": window.start.isoformat(),
                                  "updated_at_to": window.end.isoformat(), "path": uri})
            context.log.info(f"{table} {partition_key}: {rows} rows, {size} bytes -> {uri}")
        yield dg.MaterializeResult(
            asset_key=asset_key,
            metadata={
                "dagster/row_count": sum(p["rows"] for p in per_partition),
                "bytes": sum(p["bytes"] for p in per_partition),
                "updated_at_from": per_partition[0]["updated_at_from"],
                "updated_at_to": per_partition[-1]["updated_at_to"],
                "path": dg.MetadataValue.path(
                    per_partition[0]["path"] if len(per_partition) == 1
                    else f"{landing_zone.extracts_root}/{table}"
                ),
                "partitions": dg.MetadataValue.json(per_partition),
            },
        )
