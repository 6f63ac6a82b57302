"""Lakehouse assets: Bronze, Silver and Gold tables of the DLT pipeline ``batch_ecomm_pipeline``.

Each table declared in ``dlt_notebooks/transformations/*.sql`` becomes an asset here, and each of
its expectations an asset check. Nothing about a table is written twice: keys, dependencies,
descriptions, column schemas and checks are all read from the SQL.
"""

import dagster as dg

from ecomm_assets.lakehouse.engine import LakehouseEngine
from ecomm_assets.lakehouse.pipeline_sql import PipelineTable, pipeline_tables
from ecomm_assets.partitions import ingestion_date_partitions

# DuckDB takes one writer at a time: every asset that writes the lakehouse file runs in this pool
# (limit 1 in dagster.yaml), so two runs can never open it for writing together.
LAKEHOUSE_POOL = "lakehouse"


def asset_key(table_name: str) -> dg.AssetKey:
    return dg.AssetKey(table_name.split("."))


def _spec(table: PipelineTable) -> dg.AssetSpec:
    deps = [asset_key(name) for name in table.upstream]
    if table.landing_table:
        deps.append(dg.AssetKey(["landing", table.landing_table]))
    return dg.AssetSpec(
        key=asset_key(table.name),
        deps=deps,
        description=f"{table.comment}\n\nDLT {table.kind} `ecomm_dw.{table.name}`, "
        f"defined in `{table.source_file}`.",
        group_name=table.layer,
        kinds={"databricks", "sql"},
        skippable=True,
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name, type_) for name, type_ in table.columns]
            ),
            "dagster/table_name": f"ecomm_dw.{table.name}",
            "dlt_source": table.source_file,
        },
    )


def _check_specs(table: PipelineTable) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            name=expectation.name,
            asset=asset_key(table.name),
            description=expectation.description,
            blocking=expectation.action == "fail",
        )
        for expectation in table.expectations
    ]


class LakehouseRunConfig(dg.Config):
    full_refresh: bool = False
    """Empty the streaming tables and re-ingest every landed file (DLT full refresh)."""


@dg.multi_asset(
    name="batch_ecomm_pipeline_tables",
    specs=[_spec(table) for table in pipeline_tables()],
    check_specs=[spec for table in pipeline_tables() for spec in _check_specs(table)],
    partitions_def=ingestion_date_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
    pool=LAKEHOUSE_POOL,
)
def lakehouse_tables(
    context: dg.AssetExecutionContext, config: LakehouseRunConfig, lakehouse: LakehouseEngine
):
    """Refresh the selected tables of the DLT pipeline for the run's ingestion dates."""
    selected = [t for t in pipeline_tables() if asset_key(t.name) in context.selected_asset_keys]
    updates = lakehouse.refresh(selected, context.partition_keys, context.log, config.full_refresh)
    for update in updates:
        key = asset_key(update.name)
        check_results = [
            dg.AssetCheckResult(
                asset_key=key,
                check_name=result.name,
                passed=result.failed_records == 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "passed_records": result.passed_records,
                    "failed_records": result.failed_records,
                    "failed_sample": dg.MetadataValue.json(list(result.failed_sample)),
                },
            )
            for result in update.expectations
            if dg.AssetCheckKey(key, result.name) in context.selected_asset_check_keys
        ]
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "dagster/row_count": update.row_count,
                **{f"dropped_by_{r.name}": r.failed_records for r in update.expectations},
            },
            check_results=check_results,
        )
