"""The production lakehouse: the Databricks DLT pipeline ``batch_ecomm_pipeline``, driven
through databricks-sdk.

A refresh first checks that the pipeline reads the landing zone we write (its ``landing_root``
setting) and that its deployed code validates (a validate-only update), then starts one pipeline
update for the selected tables, polls it to a final state, then reads the update's events for the
rows written and each expectation's passed and failed records.
The SDK's ``PipelineEvent`` model drops the ``details`` field that carries those metrics, so the
events endpoint is called through ``api_client.do``. The endpoint may leave events out; an
expectation it reports nothing for is returned as unreported, never as zero failures. For the
tables that read landed files it then counts, on a SQL warehouse, the rows each holds per landed
file: Bronze's own count, which the ``rows_match_manifest`` check holds against the extract's
manifests. Those counts take one statement for all the tables, and the samples of failing keys
another (``query_each``): a daily run's statements do not grow with the tables.
"""

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import cached_property

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service.pipelines import UpdateInfo, UpdateInfoCause
from databricks.sdk.service.sql import StatementResponse, StatementState

from ecomm_assets.lakehouse.engine import ExpectationResult, LakehouseEngine, TableUpdate, query_each
from ecomm_assets.lakehouse.pipeline_sql import LANDING_ROOT, SOURCE_FILE, PipelineTable

_FINAL_STATES = {"COMPLETED", "FAILED", "CANCELED"}
_EVENTS_PAGE_SIZE = 250  # the endpoint takes up to 1000 and may return fewer
_SAMPLE_SIZE = 5
# The pipeline's configuration key the SQL reads as ${landing_root}.
LANDING_ROOT_SETTING = LANDING_ROOT.removeprefix("${").removesuffix("}")
_VALIDATE = {"validate_only": True}  # a validate-only update of the whole pipeline


class DatabricksLakehouse(LakehouseEngine):
    """Refreshes tables of the DLT pipeline ``pipeline_id`` in the workspace ``host``."""

    host: str  # https://<workspace>.cloud.databricks.com
    # Either a personal access token, or a service principal's OAuth secret (machine-to-machine,
    # through the SDK's unified auth); secrets through dg.EnvVar, never logged.
    token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    pipeline_id: str
    warehouse_id: str  # the SQL warehouse that counts the landed rows in Bronze
    landing_root: str  # s3://<bucket>/ecomm_db_extracts/daily_extracts, the pipeline's landing_root
    catalog: str  # the Unity Catalog catalog the pipeline publishes to (ecomm_dw in prod)
    poll_interval_seconds: float = 10
    timeout_seconds: float = 3 * 3600  # for the whole refresh, waiting for a busy pipeline included

    def refresh(
        self,
        tables: Sequence[PipelineTable],
        ingestion_dates: Sequence[str],
        log: dg.DagsterLogManager,
        full_refresh: bool = False,
    ) -> list[TableUpdate]:
        """Run one pipeline update of ``tables`` and report what it wrote.

        ``ingestion_dates`` are not sent: Auto Loader in the Bronze streaming tables picks up every
        landed file it has not read yet. ``full_refresh`` resets and recomputes the selected tables
        only (``full_refresh_selection``); the API's ``full_refresh`` flag would reset the whole
        graph. If another update is running, this one starts when it has finished. Before it, the
        pipeline's ``landing_root`` must be ours and a validate-only update of the whole pipeline
        must complete: one short update more per refresh (it materializes nothing), so that an
        error in the deployed code is named before any table is touched.
        """
        if not tables:
            raise ValueError(f"No table of pipeline {self.pipeline_id} selected: an empty refresh_selection "
                             "would update the whole pipeline; nothing was started.")
        deadline = time.monotonic() + self.timeout_seconds
        workspace = self._workspace_client
        self._check_landing_root(workspace)
        # refresh_selection takes table names; the API reference says no more than "a list of
        # tables". Databricks' own tools select by the dataset names of the event log, and with
        # several schemas in one Unity Catalog pipeline a bare name can be ambiguous: users who hit
        # that qualify them fully. So: ecomm_dw.silver.fact_orders.
        selection = [f"{self.catalog}.{table.name}" for table in tables]
        if ingestion_dates and not full_refresh:
            log.info(f"Ingestion dates {list(ingestion_dates)} are not sent: Auto Loader reads every landed file it "
                     "has not read yet, theirs included once the extract wrote them.")
        validation = self._run(workspace, _VALIDATE, deadline, log)
        if validation.state.value != "COMPLETED":
            raise RuntimeError(
                f"Validation update {validation.update_id} of pipeline {self.pipeline_id} is "
                f"{validation.state.value}: the deployed code does not validate, no data update was started.\n"
                f"{_error_messages(self._events(workspace, validation))}")
        update = self._run(workspace, {"full_refresh_selection" if full_refresh else "refresh_selection": selection},
                           deadline, log)
        events = self._events(workspace, update)
        if update.state.value == "FAILED":
            raise RuntimeError(
                f"Update {update.update_id} of pipeline {self.pipeline_id} failed:\n{_error_messages(events)}"
            )
        if update.state.value == "CANCELED":
            raise RuntimeError(f"Update {update.update_id} of pipeline {self.pipeline_id} was canceled.")
        updates = _table_updates(tables, events, log)
        rows_by_file = self._rows_by_file(workspace, [t for t in tables if t.read_files],
                                          [] if full_refresh else ingestion_dates, deadline)
        samples = self._failed_samples(workspace, tables, updates, deadline)
        return [replace(update, rows_by_file=rows_by_file.get(update.name, {}), expectations=tuple(
                    replace(result, failed_sample=samples.get((update.name, result.name), ()))
                    for result in update.expectations))
                for update in updates]

    def _failed_samples(self, workspace: WorkspaceClient, tables: Sequence[PipelineTable],
                        updates: Sequence[TableUpdate], deadline: float) -> dict[tuple[str, str], tuple[str, ...]]:
        """{(table, expectation): a few keys of the rows that failed it} for each warn expectation the
        update reports failures for (the rows stay in the table), all read in one statement."""
        failing = [(table, expectation) for table, update in zip(tables, updates, strict=True)
                   for expectation, result in zip(table.expectations, update.expectations, strict=True)
                   if result.failed_records and expectation.action == "warn"]
        samples = query_each(lambda statement: self._query(workspace, statement, deadline), [
            f"SELECT CAST({table.key} AS STRING) FROM {self.catalog}.{table.name} WHERE NOT "
            f"coalesce({expectation.condition}, false) ORDER BY 1 LIMIT {_SAMPLE_SIZE}"
            for table, expectation in failing])
        # the keys in the statement's order (a NULL first), which a UNION ALL need not keep
        return {(table.name, expectation.name): tuple(str(key) for key, in sorted(rows, key=lambda row: (
                    row[0] is not None, row[0] or "")))
                for (table, expectation), rows in zip(failing, samples, strict=True)}

    def query(self, statement: str) -> list[tuple]:
        return [tuple(row) for row in self._query(self._workspace_client, statement,
                                                  time.monotonic() + self.timeout_seconds)]

    @cached_property
    def _workspace_client(self) -> WorkspaceClient:
        """One client per resource instance: with OAuth it holds the token until it expires."""
        if self.token:
            return WorkspaceClient(host=self.host, token=self.token, auth_type="pat")
        if self.client_id and self.client_secret:
            return WorkspaceClient(host=self.host, client_id=self.client_id, client_secret=self.client_secret,
                                   auth_type="oauth-m2m")
        raise ValueError("Databricks credentials missing: set a token, or a service principal's client_id "
                         "and client_secret.")

    def _rows_by_file(self, workspace: WorkspaceClient, tables: Sequence[PipelineTable],
                      ingestion_dates: Sequence[str], deadline: float) -> dict[str, dict[str, int]]:
        """{table: rows it holds from each landed file of ``ingestion_dates`` (every date if none)}
        for ``tables``, all counted in one statement."""
        dates = ", ".join(f"DATE'{date}'" for date in ingestion_dates)
        statements = []
        for table in tables:
            where = f" WHERE _ingestion_date IN ({dates})" if table.kind == "streaming table" and dates else ""
            statements.append(f"SELECT {SOURCE_FILE}, count(*) FROM {self.catalog}.{table.name}{where} "
                              f"GROUP BY {SOURCE_FILE}")
        counted = query_each(lambda statement: self._query(workspace, statement, deadline), statements)
        root = self.landing_root.rstrip("/") + "/"
        return {table.name: {uri.removeprefix(root): int(count) for uri, count in rows}
                for table, rows in zip(tables, counted, strict=True)}

    def _query(self, workspace: WorkspaceClient, statement: str, deadline: float) -> list[list[str]]:
        """Run ``statement`` on the SQL warehouse and return its rows (values as strings)."""
        response = workspace.statement_execution.execute_statement(
            statement, self.warehouse_id, catalog=self.catalog, wait_timeout="30s")
        while response.status.state in (StatementState.PENDING, StatementState.RUNNING):
            if time.monotonic() >= deadline:
                workspace.statement_execution.cancel_execution(response.statement_id)
                raise TimeoutError(f"Statement on warehouse {self.warehouse_id} still running after "
                                   f"{self.timeout_seconds}s: {statement}")
            self._sleep(deadline)
            response = workspace.statement_execution.get_statement(response.statement_id)
        if response.status.state != StatementState.SUCCEEDED:
            error = response.status.error.message if response.status.error else response.status.state.value
            raise RuntimeError(f"Statement on warehouse {self.warehouse_id} failed: {error}\n{statement}")
        return _all_rows(workspace, response)

    def _check_landing_root(self, workspace: WorkspaceClient) -> None:
        """Refuse to run when the pipeline reads another landing zone than the one we write: every
        row count would then differ from the manifests."""
        configuration = workspace.pipelines.get(self.pipeline_id).spec.configuration or {}
        deployed = configuration.get(LANDING_ROOT_SETTING)
        if (deployed or "").rstrip("/") != self.landing_root.rstrip("/"):
            raise ValueError(
                f"Pipeline {self.pipeline_id} reads {LANDING_ROOT_SETTING} = {deployed!r} (its configuration, the "
                f"bundle variable landing_root) but the extract lands in {self.landing_root!r} (ECOMM_LANDING_BUCKET): "
                "redeploy the bundle with landing_root set to the latter, or fix ECOMM_LANDING_BUCKET. "
                "No update was started.")

    def _run(self, workspace: WorkspaceClient, request: dict, deadline: float,
             log: dg.DagsterLogManager) -> UpdateInfo:
        """Start an update of ``request`` and poll it to a final state; stop it if the run is
        interrupted."""
        update_id = self._start(workspace, request, deadline, log)
        try:
            return self._wait_for(workspace, update_id, deadline, log)
        except (DagsterExecutionInterruptedError, KeyboardInterrupt):
            log.warning(f"Run interrupted: stopping update {update_id} of pipeline {self.pipeline_id}.")
            workspace.pipelines.stop(self.pipeline_id)
            raise

    def _start(self, workspace: WorkspaceClient, request: dict, deadline: float,
               log: dg.DagsterLogManager) -> str:
        """Start an update of ``request`` once the pipeline is idle, at most once.

        Whether the pipeline is busy is read from its state (its latest updates), not from the
        error a start returns: the API answers a start on a busy pipeline with 409
        RESOURCE_CONFLICT or 400 INVALID_STATE, with messages that have changed over time. A start
        that fails while the pipeline is idle raises that error.

        The SDK sends a POST again when its connection broke: when the answer to our start was
        lost, the update exists and the second POST is refused as busy. So after a refusal, before
        waiting, this looks for an update of ``request`` newer than every update the pipeline held
        before our first start, and follows it. Such an update, started by another run, would do
        the same work: it started after our files landed.
        """
        known = None  # the pipeline's latest updates before our first start
        while True:
            if known is not None and (ours := self._started_since(workspace, request, known)):
                log.info(f"Update {ours} of pipeline {self.pipeline_id} runs {request} (the answer to our start was "
                         "lost, or another run asked the same): following it rather than starting another.")
                return ours
            latest = self._wait_until_idle(workspace, deadline, log)
            if known is None:
                known = latest
            try:
                update_id = workspace.pipelines.start_update(self.pipeline_id, **request).update_id
                log.info(f"Started update {update_id} of pipeline {self.pipeline_id}: {request}")
                return update_id
            except DatabricksError as refused:
                if not self._active_updates(workspace):
                    raise
                log.info(f"Pipeline {self.pipeline_id} became busy before our update started: {refused}")

    def _started_since(self, workspace: WorkspaceClient, request: dict, known: set[str]) -> str | None:
        """The newest update of ``request`` started by an API call after the updates ``known``
        (ListUpdates lists the newest first)."""
        for update in workspace.pipelines.list_updates(self.pipeline_id).updates or []:
            if update.update_id in known:
                return None
            if _is_request(update, request):
                return update.update_id
        return None

    def updates_in_progress(self) -> list[str]:
        return self._active_updates(self._workspace_client)

    def dbu_usage(self, days: int) -> list[tuple[str, str, float]]:
        rows = self.query(
            "SELECT CAST(usage_date AS STRING), "
            f"CASE WHEN usage_metadata.dlt_pipeline_id = '{self.pipeline_id}' THEN 'pipeline' ELSE 'warehouse' END, "
            "CAST(sum(usage_quantity) AS DOUBLE) FROM system.billing.usage "
            f"WHERE usage_unit = 'DBU' AND usage_date >= date_sub(current_date(), {int(days)}) "
            f"AND (usage_metadata.dlt_pipeline_id = '{self.pipeline_id}' "
            f"OR usage_metadata.warehouse_id = '{self.warehouse_id}') GROUP BY 1, 2")
        return [(day, what, float(dbus)) for day, what, dbus in rows]

    def _active_updates(self, workspace: WorkspaceClient) -> list[str]:
        return [update_id for update_id, state in self._latest_updates(workspace) if state not in _FINAL_STATES]

    def _latest_updates(self, workspace: WorkspaceClient) -> list[tuple[str, str]]:
        """(update id, state) of the pipeline's latest updates, the newest first."""
        latest = workspace.pipelines.get(self.pipeline_id).latest_updates or []
        return [(u.update_id, u.state.value) for u in latest]

    def _wait_until_idle(self, workspace: WorkspaceClient, deadline: float,
                         log: dg.DagsterLogManager) -> set[str]:
        """Wait until none of the pipeline's latest updates is active, and return their ids. Another
        run's update is never stopped: on timeout this raises and leaves it running."""
        waiting_for = None
        while True:
            latest = self._latest_updates(workspace)
            if not (active := [update_id for update_id, state in latest if state not in _FINAL_STATES]):
                break
            if active != waiting_for:
                waiting_for = active
                log.info(f"Pipeline {self.pipeline_id} is busy: waiting for update(s) {active} to finish.")
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Pipeline {self.pipeline_id} still busy after {self.timeout_seconds}s "
                    f"(active updates: {active}); no update was started."
                )
            self._sleep(deadline)
        if waiting_for:
            log.info(f"Pipeline {self.pipeline_id} is idle.")
        return {update_id for update_id, _ in latest}

    def _wait_for(self, workspace: WorkspaceClient, update_id: str, deadline: float,
                  log: dg.DagsterLogManager) -> UpdateInfo:
        """Poll the update until it reaches a final state; on timeout stop the pipeline and raise."""
        state = None
        while True:
            update = workspace.pipelines.get_update(self.pipeline_id, update_id).update
            if update.state != state:
                state = update.state
                log.info(f"Update {update_id} of pipeline {self.pipeline_id}: {state.value}")
            if state.value in _FINAL_STATES:
                return update
            if time.monotonic() >= deadline:
                workspace.pipelines.stop(self.pipeline_id)
                raise TimeoutError(
                    f"Update {update_id} of pipeline {self.pipeline_id} still {state.value} after "
                    f"{self.timeout_seconds}s; the pipeline was stopped."
                )
            self._sleep(deadline)

    def _sleep(self, deadline: float) -> None:
        time.sleep(max(0.0, min(self.poll_interval_seconds, deadline - time.monotonic())))

    def _events(self, workspace: WorkspaceClient, update: UpdateInfo) -> list[dict]:
        """The update's events, oldest first, read page by page.

        The endpoint filters by level, id and timestamp only, so the pages start at the update's
        creation time and the update's own events are kept by ``origin.update_id``. A page token
        excludes every other parameter but ``max_results``.
        """
        created = datetime.fromtimestamp(update.creation_time / 1000, UTC)
        since = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        query = {"filter": f"timestamp >= '{since}'", "max_results": _EVENTS_PAGE_SIZE}
        path = f"/api/2.0/pipelines/{self.pipeline_id}/events"
        events = []
        while True:
            page = workspace.api_client.do("GET", path, query=query)
            events += [e for e in page.get("events", [])
                       if e.get("origin", {}).get("update_id") == update.update_id]
            if not page.get("next_page_token"):
                return sorted(events, key=lambda e: e.get("timestamp", ""))
            query = {"page_token": page["next_page_token"], "max_results": _EVENTS_PAGE_SIZE}


def _is_request(update: UpdateInfo, request: dict) -> bool:
    """Whether ``update`` was started by an API call asking what ``request`` asks."""
    return (update.cause == UpdateInfoCause.API_CALL
            and bool(update.validate_only) == request.get("validate_only", False)
            and sorted(update.refresh_selection or []) == sorted(request.get("refresh_selection", []))
            and sorted(update.full_refresh_selection or []) == sorted(request.get("full_refresh_selection", [])))


def _all_rows(workspace: WorkspaceClient, response: StatementResponse) -> list[list[str]]:
    """Every row of a finished statement, chunk after chunk."""
    rows, chunk = [], response.result
    while chunk is not None:
        rows += chunk.data_array or []
        chunk = (workspace.statement_execution.get_statement_result_chunk_n(response.statement_id,
                                                                            chunk.next_chunk_index)
                 if chunk.next_chunk_index is not None else None)
    return rows


def _error_messages(events: list[dict]) -> str:
    """The messages of the ERROR events and of the exceptions they carry, each once."""
    messages = []
    for event in events:
        if event.get("level") == "ERROR":
            exceptions = (event.get("error") or {}).get("exceptions", [])
            messages += [event.get("message", "")] + [e.get("message", "") for e in exceptions]
    unique = dict.fromkeys(m.strip() for m in messages if m and m.strip())
    return "\n".join(f"- {m}" for m in unique) or "- (the pipeline reported no ERROR event)"


def _details(event: dict) -> dict:
    """``details`` comes as an object from the API (as a JSON string in the event log table)."""
    details = event.get("details") or {}
    return json.loads(details) if isinstance(details, str) else details


def _table_name(dataset: str, names: Sequence[str]) -> str | None:
    """Our ``<schema>.<table>`` for a dataset named ``catalog.schema.table``, ``schema.table`` or
    ``table`` (backticks allowed), if exactly one of ``names`` matches."""
    parts = dataset.replace("`", "").lower().split(".")[-2:]
    matches = [name for name in names if name.split(".")[-len(parts):] == parts]
    return matches[0] if len(matches) == 1 else None


def _table_updates(tables: Sequence[PipelineTable], events: list[dict],
                   log: dg.DagsterLogManager) -> list[TableUpdate]:
    """One TableUpdate per table from the update's ``flow_progress`` events.

    Metrics are summed over every event that carries them: a materialized view reports them once,
    when its flow completes; a streaming table once per micro-batch while it runs.
    """
    names = [table.name for table in tables]
    rows, dropped, reported = defaultdict(int), defaultdict(int), set()
    passed, failed = defaultdict(int), defaultdict(int)  # by (table, expectation)
    for event in events:
        origin = event.get("origin", {})
        name = _table_name(origin.get("dataset_name") or origin.get("flow_name") or "", names)
        progress = _details(event).get("flow_progress")
        if event.get("event_type") != "flow_progress" or not progress or name is None:
            continue
        if "metrics" in progress:
            reported.add(name)
            rows[name] += progress["metrics"].get("num_output_rows", 0)
        quality = progress.get("data_quality") or {}
        dropped[name] += quality.get("dropped_records", 0)
        for expectation in quality.get("expectations", []):
            passed[name, expectation["name"]] += expectation.get("passed_records", 0)
            failed[name, expectation["name"]] += expectation.get("failed_records", 0)
    updates = []
    views = {table.name for table in tables if table.kind == "view"}  # a view writes no rows
    for name in names:
        if name not in reported and name not in views:
            log.warning(f"{name}: the update reported no output rows for this table.")
        log.info(f"{name}: {rows[name]} rows written, {dropped[name]} dropped by expectations")
        declared = [e.name for e in next(t for t in tables if t.name == name).expectations]
        if undeclared := sorted(e for t, e in passed if t == name and e not in declared):
            log.warning(f"{name}: the pipeline reported expectations {undeclared} that dlt_notebooks/ does not "
                        "declare: the deployed pipeline differs from this code; redeploy the bundle.")
        if unreported := [e for e in declared if (name, e) not in passed]:
            log.warning(f"{name}: the update's events carry no metrics for expectations {unreported}: their "
                        "checks are judged on the table (a DROP ROW expectation's check fails).")
        results = tuple(ExpectationResult(e, passed[name, e], failed[name, e]) if e not in unreported
                        else ExpectationResult(e, 0, 0, reported=False) for e in declared)
        updates.append(TableUpdate(name, rows[name], results))
    return updates
