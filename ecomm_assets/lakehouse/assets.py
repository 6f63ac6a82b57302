"""Lakehouse assets: Bronze, Silver and Gold tables of the DLT pipeline ``batch_ecomm_pipeline``.

Each table declared in ``dlt_notebooks/transformations/*.sql`` becomes an asset here, and each of
its expectations an asset check. Nothing about a table is written twice: keys, dependencies,
descriptions, column schemas and checks are all read from the SQL. Every table that reads landed
files also gets the blocking check ``rows_match_manifest``.
"""

import fnmatch
import warnings
from collections.abc import Sequence
from pathlib import PurePosixPath

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from ecomm_assets.environment import lakehouse_catalog
from ecomm_assets.extract.landing_zone import LandingZone, named_files, partition_folder
from ecomm_assets.lakehouse.engine import ExpectationResult, LakehouseEngine, TableUpdate, query_each
from ecomm_assets.lakehouse.pipeline_sql import PipelineTable, pipeline_tables
from ecomm_assets.partitions import ingestion_date_partitions, run_ingestion_dates
from ecomm_assets.retries import StepRetries
from ecomm_assets.source.postgres import column_descriptions

MANIFEST_CHECK = "rows_match_manifest"
INGESTION_DATE = "_ingestion_date"
QUALITY_TABLE = "silver.data_quality"


def asset_key(table_name: str) -> dg.AssetKey:
    return dg.AssetKey(table_name.split("."))


def _spec(table: PipelineTable) -> dg.AssetSpec:
    deps = [asset_key(name) for name in table.upstream]
    if table.landing_table:
        deps.append(dg.AssetKey(["landing", table.landing_table]))
    return dg.AssetSpec(
        key=asset_key(table.name),
        deps=deps,
        description=f"{table.comment}\n\nDLT {table.kind} `{lakehouse_catalog()}.{table.name}`, "
        f"defined in `{table.source_file}`.",
        group_name=table.layer,
        kinds={"databricks", "sql"},
        skippable=True,
        metadata={
            "dagster/column_schema": dg.TableSchema(
                # source columns carry their meaning from schema.sql, derived ones from the SQL comment
                # where the pipeline defines them
                columns=[dg.TableColumn(name, type_, description=column_descriptions().get(name)
                                        or table.column_descriptions.get(name))
                         for name, type_ in table.columns]
            ),
            "dagster/table_name": f"{lakehouse_catalog()}.{table.name}",
            "dlt_source": table.source_file,
        },
    )


def _quarantine(table: PipelineTable) -> str | None:
    """The quarantine table of ``table`` (``<table>_quarantine`` in the pipeline), if it has one."""
    name = f"{table.name}_quarantine"
    return name if any(t.name == name for t in pipeline_tables()) else None


def _check_specs(table: PipelineTable) -> list[dg.AssetCheckSpec]:
    """The table's checks, each recorded on every ingestion date of a run. Partitioned checks are
    a preview feature of Dagster 1.13, used on purpose: its warning is silenced here."""
    specs = [(expectation.name, expectation.description, expectation.action == "fail")
             for expectation in table.expectations]
    if table.read_files:
        specs.append((MANIFEST_CHECK, f"Blocking: for every landed file the run read, {table.name} holds "
                      "exactly the rows the extract counted in ecomm-db (its manifest): source rows in the "
                      "window = landed rows = rows in the table, nothing lost on the way.", True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [dg.AssetCheckSpec(name=name, asset=asset_key(table.name), description=description,
                                  blocking=blocking, partitions_def=ingestion_date_partitions)
                for name, description, blocking in specs]


def _failures_in_tables(tables: Sequence[PipelineTable], lakehouse: LakehouseEngine
                        ) -> dict[str, dict[str | None, tuple[int, ...]]]:
    """{table: {ingestion date: (rows, rows failing each expectation)}}, counted on each table as
    the refresh left it; one entry under None for a table whose rows do not carry
    ``_ingestion_date``. One statement counts every table: each table's row of counts is padded
    with NULLs to the widest (a warehouse runs one statement per run, not one per table)."""
    counted = [table for table in tables if table.expectations]
    width = max((len(table.expectations) for table in counted), default=0)
    statements = []
    for table in counted:
        failures = ", ".join(f"count_if(NOT coalesce({e.condition}, false))" for e in table.expectations)
        padding = ", CAST(NULL AS BIGINT)" * (width - len(table.expectations))
        day, group = ((f"CAST({INGESTION_DATE} AS STRING)", " GROUP BY 1") if INGESTION_DATE in dict(table.columns)
                      else ("CAST(NULL AS STRING)", ""))
        statements.append(f"SELECT {day}, count(*), {failures}{padding} FROM {table.name}{group}")
    in_table = {table.name: {} for table in tables}
    for table, rows in zip(counted, query_each(lakehouse.query, statements), strict=True):
        columns = 1 + len(table.expectations)  # the rows, then each expectation's failures: not the padding
        if INGESTION_DATE in dict(table.columns):
            in_table[table.name] = {str(day): tuple(int(n) for n in counts[:columns]) for day, *counts in rows}
        else:
            [(_, *counts)] = rows
            in_table[table.name] = {None: tuple(int(n or 0) for n in counts[:columns])}  # no rows: NULL sums
    return in_table


def _quality_scores(lakehouse: LakehouseEngine, day: str) -> dict[str, float]:
    """The overall quality score of each source table on ``day``, as numeric materialization
    metadata: the asset's Plots tab charts it run after run (a range backfill records its last day's)."""
    rows = lakehouse.query(f"SELECT source_table, score FROM {QUALITY_TABLE} "
                           f"WHERE dimension = 'overall' AND {INGESTION_DATE} = DATE'{day}'")
    return {f"quality_score_{source_table}": float(score) for source_table, score in sorted(rows)}


Evaluations = dict[str, tuple[bool, dict]]
"""A check's result on each ingestion date of a run: {date: (passed, metadata)}."""


def _expectation_evaluations(table: PipelineTable, result: ExpectationResult, dates: Sequence[str],
                             in_table: dict[str | None, tuple[int, ...]]) -> Evaluations:
    """A date passes when none of its rows in the table fails the expectation. The table is the
    judge, not the metrics the engine reports (an update's events can leave them out). A table
    whose rows do not carry _ingestion_date is judged whole, the same on every date. The rows a
    DROP ROW expectation removes are not in the table: that check is judged on the engine's count,
    and fails when the engine reported none."""
    [expectation] = [e for e in table.expectations if e.name == result.name]
    index = 1 + table.expectations.index(expectation)
    failed_by_day = {day: counts[index] for day, counts in sorted(in_table.items()) if day and counts[index]}
    metadata = ({"passed_records": result.passed_records, "failed_records": result.failed_records}
                if result.reported else
                {"pipeline_metrics": "none: the update reported no metrics for this expectation"})
    metadata["failed_sample"] = dg.MetadataValue.json(list(result.failed_sample))
    metadata["failed_by_ingestion_date"] = dg.MetadataValue.json(failed_by_day)
    if quarantine := _quarantine(table):
        metadata["quarantine"] = f"{lakehouse_catalog()}.{quarantine}"
        metadata["quarantined_rows"] = dg.MetadataValue.md(
            f"`SELECT * FROM {lakehouse_catalog()}.{quarantine} WHERE array_contains(_failed_rules, '{result.name}')`")
    if expectation.action == "drop":
        return {day: (result.reported and result.failed_records == 0, metadata) for day in dates}
    if None in in_table:
        return {day: (in_table[None][index] == 0, {"table_failed_records": in_table[None][index], **metadata})
                for day in dates}
    return {day: (failed_by_day.get(day, 0) == 0,
                  {"partition_records": in_table.get(day, (0,))[0],
                   "partition_failed_records": failed_by_day.get(day, 0), **metadata})
            for day in dates}


def _run_files(table: PipelineTable, dates: Sequence[str], landing_zone: LandingZone) -> dict[str, str | None]:
    """{key under the landing root: its ingestion date} of the landed files a refresh of ``table``
    for ``dates`` must hold: the current extract's files of each date for a streaming table, the
    file it reads (date None: judged on every date) for the others."""
    if table.kind != "streaming table":
        return {table.read_files.glob: None}
    files = {}
    for date in dates:
        folder = partition_folder(table.landing_table, date)
        current = (landing_zone.read_manifest(folder) or {"files": {}})["files"]
        files.update({f"{folder}/{name}": date for name in current
                      if fnmatch.fnmatch(name, PurePosixPath(table.read_files.glob).name)})
    return files


def _manifest_evaluations(table: PipelineTable, update: TableUpdate, dates: Sequence[str],
                          landing_zone: LandingZone) -> Evaluations:
    """Each date is judged on the files its manifest names (current, and superseded ones the table
    read) and on every file not of a date (the key snapshot). A file the table read while a
    manifest vouched for it, which no manifest names now (its manifest was lost and a new extract
    landed the partition again), was checked when it was read: it is listed, not judged."""
    run_files = _run_files(table, dates, landing_zone)
    files, unnamed = [], []
    for key in sorted(set(run_files) | set(update.rows_by_file)):
        folder, name = key.rsplit("/", 1)
        entry = named_files(landing_zone.read_manifest(folder) or {"files": {}}).get(name)
        if entry is None and key not in run_files:
            unnamed.append(key)
            continue
        files.append({"file": key, "source_rows": (entry or {}).get("rows"),
                      "table_rows": update.rows_by_file.get(key, 0)})
    evaluations = {}
    for day in dates:
        own = [f for f in files if run_files.get(f["file"], day) in (day, None)]
        mismatched = [f["file"] for f in own if f["source_rows"] != f["table_rows"]]
        evaluations[day] = (not mismatched, {
            "source_rows": sum(f["source_rows"] or 0 for f in own),
            "table_rows": sum(f["table_rows"] for f in own),
            "mismatched_files": dg.MetadataValue.json(mismatched),
            "files": dg.MetadataValue.json(own),
            **({"read_when_vouched_now_unnamed": dg.MetadataValue.json(unnamed)} if unnamed else {}),
        })
    return evaluations


def _retire_read_superseded_files(table: PipelineTable, update: TableUpdate, dates: Sequence[str],
                                  landing_zone: LandingZone, log: dg.DagsterLogManager) -> None:
    """Hand to retention the superseded files of ``dates`` that ``table`` holds in full: no refresh
    needs them again (Bronze is never reset)."""
    for date in dates:
        folder = partition_folder(table.landing_table, date)
        superseded = (landing_zone.read_manifest(folder) or {}).get("superseded", {})
        for name, entry in superseded.items():
            if update.rows_by_file.get(f"{folder}/{name}") == entry["rows"]:
                landing_zone.retire(f"{folder}/{name}")
                log.info(f"{folder}/{name}: superseded and read in full by {table.name}, retired")


def _materializations_of_run(context: dg.AssetExecutionContext, key: dg.AssetKey, dates: Sequence[str]
                             ) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The materialization this run recorded for each date of ``key``: what its checks looked at."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=list(dates)), limit=len(dates)
    ).records
    return {r.partition_key: AssetCheckEvaluationTargetMaterializationData(
        storage_id=r.storage_id, run_id=r.run_id, timestamp=r.timestamp)
            for r in records if r.run_id == context.run.run_id}


class LakehouseRunConfig(dg.Config):
    full_refresh: bool = False
    """Recompute the selected tables from scratch (DLT full refresh): Silver's streaming tables are
    emptied and re-read from Bronze, which is never reset (pipelines.reset.allowed = false)."""


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
    landing_zone: LandingZone, retries: StepRetries,
):
    """Refresh the selected tables of the DLT pipeline for the run's ingestion dates."""
    dates = run_ingestion_dates(context)
    tables = {t.name: t for t in pipeline_tables() if asset_key(t.name) in context.selected_asset_keys}
    if not tables:
        raise dg.Failure("Only checks of the lakehouse tables were selected. A check is judged on what a "
                         "refresh of its table reports: materialize the table to run its checks.")
    with (retries.on_transient_fault(context),
          lakehouse.writing(context.log, holder=f"run {context.run.run_id} (lakehouse refresh)")):
        updates = lakehouse.refresh(list(tables.values()), dates, context.log, config.full_refresh)
        in_table = _failures_in_tables([tables[update.name] for update in updates], lakehouse)
        quality_scores = _quality_scores(lakehouse, dates[-1]) if QUALITY_TABLE in tables else {}
    for update in updates:
        table = tables[update.name]
        dropping = {e.name for e in table.expectations if e.action == "drop"}
        yield dg.MaterializeResult(
            asset_key=asset_key(table.name),
            metadata={
                "dagster/row_count": update.row_count,
                **{f"dropped_by_{r.name}": r.failed_records for r in update.expectations
                   if r.reported and r.name in dropping},
                **(quality_scores if table.name == QUALITY_TABLE else {}),
            },
        )
    # Each check is recorded on each ingestion date of the run, a range backfill included, so the
    # partition view shows which day failed; then its output, which a blocking check waits on.
    check_outputs = {spec.key: name for name, spec in context.assets_def.check_specs_by_output_name.items()}
    for update in updates:
        table, key = tables[update.name], asset_key(update.name)
        evaluations = {result.name: _expectation_evaluations(table, result, dates, in_table[update.name])
                       for result in update.expectations}
        if table.read_files:
            evaluations[MANIFEST_CHECK] = _manifest_evaluations(table, update, dates, landing_zone)
        if table.read_files and table.kind == "streaming table":
            _retire_read_superseded_files(table, update, dates, landing_zone, context.log)
        selected = {name: by_date for name, by_date in evaluations.items()
                    if dg.AssetCheckKey(key, name) in context.selected_asset_check_keys}
        targets = _materializations_of_run(context, key, dates) if selected else {}
        for check_name, by_date in selected.items():
            check_key = dg.AssetCheckKey(key, check_name)
            blocking = context.assets_def.get_spec_for_check_key(check_key).blocking
            for day, (passed, metadata) in by_date.items():
                yield dg.AssetCheckEvaluation(
                    asset_key=key, check_name=check_name, passed=passed, metadata=metadata, partition=day,
                    severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
                    blocking=blocking, target_materialization_data=targets.get(day),
                )
            yield dg.Output(None, output_name=check_outputs[check_key])
