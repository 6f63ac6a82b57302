"""Lakehouse assets: Bronze, Silver and Gold tables of the DLT pipeline ``batch_ecomm_pipeline``.

Each table declared in ``dlt_notebooks/transformations/*.sql`` becomes an asset here, and each of
its expectations an asset check. Nothing about a table is written twice: keys, dependencies,
descriptions, column schemas and checks are all read from the SQL. Every table that reads landed
files also gets the blocking check ``rows_match_manifest``.
"""

from collections.abc import Sequence

import dagster as dg

from ecomm_assets.extract.landing_zone import LandingZone, data_file, partition_folder
from ecomm_assets.lakehouse.engine import LakehouseEngine, TableUpdate
from ecomm_assets.lakehouse.pipeline_sql import PipelineTable, pipeline_tables
from ecomm_assets.partitions import ingestion_date_partitions, run_ingestion_dates

MANIFEST_CHECK = "rows_match_manifest"


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
    specs = [
        dg.AssetCheckSpec(
            name=expectation.name,
            asset=asset_key(table.name),
            description=expectation.description,
            blocking=expectation.action == "fail",
        )
        for expectation in table.expectations
    ]
    if table.landing_files:
        specs.append(dg.AssetCheckSpec(
            name=MANIFEST_CHECK,
            asset=asset_key(table.name),
            description=f"Blocking: for every landed file the run read, {table.name} holds exactly the "
            "rows the extract counted in ecomm-db (its manifest): source rows in the window = landed "
            "rows = rows in the table, nothing lost on the way.",
            blocking=True,
        ))
    return specs


def _landed_files(table: PipelineTable, ingestion_dates: Sequence[str]) -> list[str]:
    """The files under the landing root a refresh of ``table`` for ``ingestion_dates`` reads."""
    if table.kind == "streaming table":
        return [f"{partition_folder(table.landing_table, d)}/{data_file(table.landing_table)}"
                for d in ingestion_dates]
    return [table.landing_files]


def _rows_match_manifest(table: PipelineTable, update: TableUpdate, ingestion_dates: Sequence[str],
                         landing_zone: LandingZone) -> dg.AssetCheckResult:
    files = []
    for key in sorted(set(_landed_files(table, ingestion_dates)) | set(update.rows_by_file)):
        folder, name = key.rsplit("/", 1)
        manifest = landing_zone.read_manifest(folder) or {"files": {}}
        files.append({"file": key, "source_rows": manifest["files"].get(name, {}).get("rows"),
                      "table_rows": update.rows_by_file.get(key, 0)})
    mismatched = [f["file"] for f in files if f["source_rows"] != f["table_rows"]]
    return dg.AssetCheckResult(
        asset_key=asset_key(table.name),
        check_name=MANIFEST_CHECK,
        passed=not mismatched,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "source_rows": sum(f["source_rows"] or 0 for f in files),
            "table_rows": sum(f["table_rows"] for f in files),
            "mismatched_files": dg.MetadataValue.json(mismatched),
            "files": dg.MetadataValue.json(files),
        },
    )


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
)
def lakehouse_tables(
    context: dg.AssetExecutionContext, config: LakehouseRunConfig, lakehouse: LakehouseEngine,
    landing_zone: LandingZone,
):
    """Refresh the selected tables of the DLT pipeline for the run's ingestion dates."""
    dates = run_ingestion_dates(context)
    tables = {t.name: t for t in pipeline_tables() if asset_key(t.name) in context.selected_asset_keys}
    with lakehouse.writing(context.log, holder=f"run {context.run.run_id} (lakehouse refresh)"):
        updates = lakehouse.refresh(list(tables.values()), dates, context.log, config.full_refresh)
    for update in updates:
        key, table = asset_key(update.name), tables[update.name]
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
        ]
        if table.landing_files:
            check_results.append(_rows_match_manifest(table, update, [] if config.full_refresh else dates,
                                                      landing_zone))
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "dagster/row_count": update.row_count,
                **{f"dropped_by_{r.name}": r.failed_records for r in update.expectations},
            },
            check_results=[r for r in check_results
                           if dg.AssetCheckKey(key, r.check_name) in context.selected_asset_check_keys],
        )
