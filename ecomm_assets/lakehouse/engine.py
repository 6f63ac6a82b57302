"""What the lakehouse assets need from an engine: refresh a selection of pipeline tables and
report, per table, the rows written and each expectation's passed and failed records."""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg

from ecomm_assets.lakehouse.pipeline_sql import PipelineTable


@dataclass(frozen=True)
class ExpectationResult:
    name: str
    passed_records: int
    failed_records: int
    failed_sample: tuple[str, ...] = ()  # a few keys of failing rows, where the engine knows them


@dataclass(frozen=True)
class TableUpdate:
    name: str
    row_count: int
    expectations: tuple[ExpectationResult, ...] = field(default=())


class LakehouseEngine(dg.ConfigurableResource, ABC):
    """Runs the DLT pipeline's tables: DuckDB locally, the Databricks pipeline in production."""

    @abstractmethod
    def refresh(
        self,
        tables: Sequence[PipelineTable],
        ingestion_dates: Sequence[str],
        log: dg.DagsterLogManager,
        full_refresh: bool = False,
    ) -> list[TableUpdate]:
        """Refresh ``tables`` (a subset of the pipeline, in pipeline order).

        Streaming tables (Bronze) ingest the landing partitions of ``ingestion_dates``, replacing
        what they held for those dates; materialized views are recomputed from their inputs.
        ``full_refresh`` empties the streaming tables first and re-ingests every landed file, as
        a DLT full refresh does.
        """
