"""What the lakehouse assets need from an engine: refresh a selection of pipeline tables and
report, per table, the rows written, the rows it holds from each landed file, and each
expectation's passed and failed records."""

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg

from ecomm_assets.lakehouse.pipeline_sql import PipelineTable


class LandedFileError(RuntimeError):
    """A landed file is not what its extract wrote; nothing of the refresh is kept."""


@dataclass(frozen=True)
class ExpectationResult:
    name: str
    passed_records: int
    failed_records: int
    failed_sample: tuple[str, ...] = ()  # a few keys of failing rows, where the engine knows them
    reported: bool = True  # False: the engine got no metrics for it (the counts are then 0, not known)


@dataclass(frozen=True)
class TableUpdate:
    name: str
    row_count: int
    expectations: tuple[ExpectationResult, ...] = field(default=())
    # For tables that read landed files: rows the table holds from each file the refresh read,
    # by its key under the landing root ("orders/ingestion_date=2026-03-01/orders.csv").
    rows_by_file: Mapping[str, int] = field(default_factory=dict)


def query_each(query: Callable[[str], list], statements: Sequence[str]) -> list[list[tuple]]:
    """The rows of each of ``statements`` (queries of the same column types), read with one call of
    ``query``: their UNION ALL, each row led by its statement's index. A warehouse then runs one
    statement where there would be one per table. A lone statement is sent as it is."""
    if len(statements) <= 1:
        return [[tuple(row) for row in query(statement)] for statement in statements]
    rows = query(" UNION ALL ".join(f"SELECT {index} AS _statement, * FROM ({statement}) AS _part"
                                    for index, statement in enumerate(statements)))
    each = [[] for _ in statements]
    for index, *row in rows:
        each[int(index)].append(tuple(row))  # the warehouse's JSON answer gives "0", DuckDB 0
    return each


class LakehouseEngine(dg.ConfigurableResource, ABC):
    """Runs the DLT pipeline's tables: DuckDB locally, the Databricks pipeline in production."""

    @contextmanager
    def writing(self, log: dg.DagsterLogManager, holder: str) -> Iterator[None]:
        """Exclusive write access to the lakehouse for the block, for engines that need it;
        ``holder`` says who holds it to whoever waits."""
        yield

    def dbu_usage(self, days: int) -> list[tuple[str, str, float]]:
        """(usage date, what: pipeline or warehouse, DBUs) of the pipeline and the SQL warehouse over
        the last ``days`` days, from the billing system table; none for a local engine."""
        return []

    def updates_in_progress(self) -> list[str]:
        """The pipeline updates writing its tables now, for engines that let readers in meanwhile
        (Databricks); an engine whose writers exclude readers (``writing()``) has none to report."""
        return []

    @abstractmethod
    def query(self, statement: str) -> list[tuple]:
        """The rows of a query over the pipeline's tables (Databricks SQL, tables as layer.table)."""

    @abstractmethod
    def refresh(
        self,
        tables: Sequence[PipelineTable],
        ingestion_dates: Sequence[str],
        log: dg.DagsterLogManager,
        full_refresh: bool = False,
    ) -> list[TableUpdate]:
        """Refresh ``tables`` (a subset of the pipeline, in pipeline order).

        What a partition means differs by layer. The extract and Bronze do real work per
        ingestion date: Bronze reads those dates' landed files. Silver, Gold (and dbt after them)
        recompute from everything Bronze holds; for them the dates only label the
        materializations. An engine that cannot read by date says so: Databricks' Auto Loader
        reads every landed file it has not read yet, which includes the dates' files the extract
        just wrote or rewrote.

        Streaming tables (Bronze) ingest the landing partitions of ``ingestion_dates`` as their
        files are now: a rewritten file (a re-extract) adds its new version beside the earlier one,
        as Auto Loader does with ``allowOverwrites``; materialized views are recomputed from their inputs.
        ``full_refresh`` empties the streaming tables first and re-ingests every landed file, as
        a DLT full refresh does.
        """
