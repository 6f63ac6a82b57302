"""The Dagster instances' event log (local and production): dagster-postgres' storage, with one
pooled connection per process instead of a new connection per event, a run's planned events
written in a few statements instead of one round trip each, and a check's result in one.

**The pooled connection.** dagster-postgres opens a connection for every event it stores
(``NullPool``: no instance holds a connection open) except in the webserver, which calls
``optimize_for_webserver`` to keep one. A run stores thousands of events (a 30-day run of the
graph about 4,000): a connection each took that run from 17 s to 29 s on loopback, more over TLS to
RDS. Here every process keeps one connection (more only while threads write at once), released
when its instance is disposed.

**The planned events.** Creating a run records one event per asset and partition (a 30-day run
plans about 1,000, a 365-day backfill about 12,000) and one per check. Dagster hands them to the
storage in batches (``DAGSTER_EVENT_BATCH_SIZE``, set in ``ecomm_assets/__init__.py``), but
dagster-postgres 0.29 writes only batches of materializations or observations at once and the rest
one event at a time (dagster-io/dagster#33832, open, would change that). The rows written are those
``store_event`` writes for each event: the event itself, the asset's row (last run, last event time:
from the latest planned event of each asset, as dagster-postgres does for a batch of
materializations) and a check's planned executions.

**The checks' results.** The lakehouse records each check on each day of a run (a 30-day run about
900 results, a 365-day backfill about 11,000), and Dagster stores each as it is yielded: the event,
a NOTIFY nobody listens to any more, and the update of the check's planned execution, with the
event serialised twice. Here it is one statement (``STORE_CHECK_EVALUATION``): 2.3 ms -> 0.9 ms a
result on loopback.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqlEventLogStorageTable
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config


def _store_check_evaluation_statement() -> sa.Select:
    """One statement for what dagster's ``store_event`` does for a check's result in three round
    trips: insert the event, update the check's planned execution of the run and partition to its
    result, and notify listeners (nobody listens since dagster polls). It returns the event's id and
    the number of executions updated. Parameters: the event's row (``_event_to_row``) prefixed
    ``event_``, and the result's ``evaluated_``: asset_key, check, partition, status, materialization_id
    (no parameter may be named as a column of asset_check_executions: SQLAlchemy would add it to the
    UPDATE's SET clause)."""
    events, executions = SqlEventLogStorageTable, AssetCheckExecutionsTable.c
    event = events.insert().values({column: sa.bindparam(f"event_{column}") for column in (
        "run_id", "event", "dagster_event_type", "timestamp", "step_key", "asset_key", "partition")}
    ).returning(events.c.id).cte("stored_event")
    event_id = sa.select(event.c.id).scalar_subquery()
    updated = AssetCheckExecutionsTable.update().where(
        executions.asset_key == sa.bindparam("evaluated_asset_key"),
        executions.check_name == sa.bindparam("evaluated_check"),
        executions.run_id == sa.bindparam("event_run_id"),
        executions.partition.is_not_distinct_from(sa.bindparam("evaluated_partition")),
    ).values(execution_status=sa.bindparam("evaluated_status"), evaluation_event=sa.bindparam("event_event"),
             evaluation_event_timestamp=sa.bindparam("event_timestamp"), evaluation_event_storage_id=event_id,
             materialization_event_storage_id=sa.bindparam("evaluated_materialization_id"),
             ).returning(executions.id).cte("updated_execution")
    return sa.select(event_id, sa.select(sa.func.count()).select_from(updated).scalar_subquery())


STORE_CHECK_EVALUATION = _store_check_evaluation_statement()
PLANNED = {dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED}


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True,
                 inst_data: ConfigurableClassData | None = None, token_provider=None):
        self._tables_found: set[str] = set()
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        # as dagster-webserver's defaults: up to 20 more while threads write at once, recycled hourly; a
        # connection a restarted server dropped is replaced on its first error
        self._engine = create_pg_engine(self.postgres_url, self._token_provider, isolation_level="AUTOCOMMIT",
                                        pool_size=1, max_overflow=20, pool_recycle=3600)

    def has_table(self, table_name: str) -> bool:
        # asked before every batch of materializations (a catalog query each time); a table of the
        # storage, once created, is never dropped
        if table_name not in self._tables_found and super().has_table(table_name):
            self._tables_found.add(table_name)
        return table_name in self._tables_found

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()

    def store_event(self, event: EventLogEntry) -> None:
        if event.dagster_event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION or not event.run_id:
            super().store_event(event)
            return
        row = self._event_to_row(event)  # the event serialised once, for both tables
        evaluation = event.dagster_event.asset_check_evaluation_data
        target = evaluation.target_materialization_data
        with self.index_connection() as conn:
            event_id, updated = conn.execute(STORE_CHECK_EVALUATION, {
                **{f"event_{column}": value for column, value in row.items()},
                "evaluated_asset_key": evaluation.asset_key.to_string(), "evaluated_check": evaluation.check_name,
                "evaluated_partition": evaluation.partition,
                "evaluated_status": (AssetCheckExecutionRecordStatus.SUCCEEDED if evaluation.passed
                                     else AssetCheckExecutionRecordStatus.FAILED).value,
                "evaluated_materialization_id": target.storage_id if target else None}).one()
        if updated != 1:  # no planned execution of this partition (dbt's checks), or several: as dagster does
            self._update_asset_check_evaluation(event, event_id)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if not events or any(event.dagster_event_type not in PLANNED for event in events):
            super().store_event_batch(events)
            return
        # executemany (SQLAlchemy's insertmanyvalues): one compiled statement, not one per batch size
        insert = SqlEventLogStorageTable.insert().returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True)
        rows = [self._event_to_row(event) for event in events]  # each event serialised once, for both tables
        with self._connect() as conn:
            event_ids = conn.execute(insert, rows).scalars().all()
        stored = list(zip(events, rows, event_ids, strict=True))
        latest_of_each_asset = {event.dagster_event.asset_key: (event, event_id) for event, _, event_id in stored
                                if event.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED}
        checks_planned = [execution for event, row, event_id in stored
                          if event.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
                          for execution in self._planned_check_executions(event, row, event_id)]
        with self.index_transaction() as conn:
            for event, event_id in latest_of_each_asset.values():
                self._store_asset_event(conn, event, event_id)
            if checks_planned:
                conn.execute(AssetCheckExecutionsTable.insert(), checks_planned)

    def _planned_check_executions(self, event: EventLogEntry, row: dict[str, Any], event_id: int) -> list[dict]:
        """The rows dagster's ``_store_asset_check_evaluation_planned`` writes, one per partition,
        with the event as its row in the log holds it (``_event_to_row``) instead of serialised again
        for each partition."""
        planned = event.dagster_event.asset_check_planned_data
        partitions = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        common = dict(asset_key=planned.asset_key.to_string(), check_name=planned.check_name, run_id=event.run_id,
                      execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                      evaluation_event=row["event"], evaluation_event_timestamp=row["timestamp"],
                      evaluation_event_storage_id=event_id)
        return [{**common, "partition": partition} for partition in partitions]

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
                          ) -> "PooledPostgresEventLogStorage":
        # dagster-postgres' own from_config_value builds its class, not a subclass
        return cls(inst_data=inst_data, postgres_url=pg_url_from_config(config_value),
                   should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                   token_provider=get_token_provider_from_config(config_value))
