"""The Dagster instances' event log (local and production): dagster-postgres' storage, with one
pooled connection per process instead of a new connection per event, and a run's planned events
written in a few statements instead of one round trip each.

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
"""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqlEventLogStorageTable
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._serdes import ConfigurableClassData, serialize_value
from dagster_postgres import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

PLANNED = {dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED}


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True,
                 inst_data: ConfigurableClassData | None = None, token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        # as dagster-webserver's defaults: up to 20 more while threads write at once, recycled hourly; a
        # connection a restarted server dropped is replaced on its first error
        self._engine = create_pg_engine(self.postgres_url, self._token_provider, isolation_level="AUTOCOMMIT",
                                        pool_size=1, max_overflow=20, pool_recycle=3600)

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if not events or any(event.dagster_event_type not in PLANNED for event in events):
            super().store_event_batch(events)
            return
        # executemany (SQLAlchemy's insertmanyvalues): one compiled statement, not one per batch size
        insert = SqlEventLogStorageTable.insert().returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True)
        with self._connect() as conn:
            event_ids = conn.execute(insert, [self._event_to_row(event) for event in events]).scalars().all()
        stored = list(zip(events, event_ids, strict=True))
        latest_of_each_asset = {event.dagster_event.asset_key: (event, event_id) for event, event_id in stored
                                if event.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED}
        checks_planned = [row for event, event_id in stored
                          if event.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
                          for row in self._planned_check_executions(event, event_id)]
        with self.index_transaction() as conn:
            for event, event_id in latest_of_each_asset.values():
                self._store_asset_event(conn, event, event_id)
            if checks_planned:
                conn.execute(AssetCheckExecutionsTable.insert(), checks_planned)

    def _planned_check_executions(self, event: EventLogEntry, event_id: int) -> list[dict]:
        """The rows dagster's ``_store_asset_check_evaluation_planned`` writes, one per partition,
        with the event serialised once instead of once per partition."""
        planned = event.dagster_event.asset_check_planned_data
        partitions = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        common = dict(asset_key=planned.asset_key.to_string(), check_name=planned.check_name, run_id=event.run_id,
                      execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                      evaluation_event=serialize_value(event),
                      evaluation_event_timestamp=self._event_insert_timestamp(event),
                      evaluation_event_storage_id=event_id)
        return [{**common, "partition": partition} for partition in partitions]

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
                          ) -> "PooledPostgresEventLogStorage":
        # dagster-postgres' own from_config_value builds its class, not a subclass
        return cls(inst_data=inst_data, postgres_url=pg_url_from_config(config_value),
                   should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                   token_provider=get_token_provider_from_config(config_value))
