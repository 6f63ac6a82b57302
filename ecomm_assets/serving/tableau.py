"""Tableau: the Ecommerce Analytics workbook as assets downstream of the KPI tables, and the
refresh of its extracts when the KPIs land.

dagster-tableau signs in with a connected app (JWT) and reads the workbook through the REST and
Metadata APIs; its translator gives the specs. The rest is ours: the workspace content is read
once and kept in a file (the code location then loads while Tableau is unreachable; in
production only ``fetch-state`` reads it, and each run carries the copy it was launched with); the refresh
waits for Tableau's jobs itself, to log each job's finish code and notes and to bound the wait
(dagster-tableau's own loop reports neither), and waits for a refresh Tableau had already queued
instead of failing; every request has an HTTP timeout.
"""

import time
import warnings
from pathlib import Path

import dagster as dg
import requests
import tableauserverclient as TSC
from dagster._core.definitions.definitions_load_context import StateBackedDefinitionsLoader
from dagster._record import record
from dagster_tableau import (
    DagsterTableauTranslator,
    TableauCloudWorkspace,
    TableauContentType,
    TableauServerWorkspace,
    TableauTranslatorData,
)
from dagster_tableau.resources import TABLEAU_RECONSTRUCTION_METADATA_KEY_PREFIX, BaseTableauWorkspace
from dagster_tableau.translator import TableauDataSourceMetadataSet, TableauTagSet, TableauWorkspaceData
from pydantic import Field
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ecomm_assets.metrics.assets import DASHBOARD_MODELS
from ecomm_assets.partitions import ingestion_date_partitions, run_ingestion_dates

# dagster-tableau's classes are beta in this release; it warns at each instance.
warnings.filterwarnings("ignore", message=r"Class `\w*Tableau\w*` is currently in beta", category=dg.BetaWarning)
# StateBackedDefinitionsLoader.build_defs (dagster-tableau's loading too) warns at each load.
warnings.filterwarnings("ignore", message=r"Function `Definitions.with_reconstruction_metadata` is currently in preview",
                        category=dg.PreviewWarning)

WORKBOOK = "Ecommerce Analytics"
# reads the site's content into ECOMM_TABLEAU_STATE (where the code is deployed, and after the workbook changed)
FETCH_STATE = "python -m ecomm_assets.serving.tableau fetch-state"
FINISH_CODES = {TSC.JobItem.FinishCode.Success: "success", TSC.JobItem.FinishCode.Failed: "failed",
                TSC.JobItem.FinishCode.Cancelled: "cancelled", TSC.JobItem.FinishCode.Completed: "completed"}
# As tableauserverclient's Jobs.wait_for_job: 3 is how a Bridge job reports success.
SUCCEEDED = {TSC.JobItem.FinishCode.Success, TSC.JobItem.FinishCode.Completed}


def _rate_limited_session() -> requests.Session:
    """A session that waits as Tableau asks (Retry-After) and retries when it answers 429 (and
    nothing else: a read timeout is raised as requests' ReadTimeout)."""
    session = requests.Session()
    retry = Retry(total=None, connect=0, read=False, other=0, redirect=0, status=5, status_forcelist=[429],
                  allowed_methods=None, backoff_factor=2, respect_retry_after_header=True, raise_on_status=False)
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


class _BoundedRequests(BaseTableauWorkspace):
    request_timeout_seconds: float = Field(
        default=60, description="HTTP timeout of each Tableau request (connect, then each read).")

    def build_client(self) -> None:
        super().build_client()
        # dagster-tableau builds tableauserverclient's Server with the default session factory
        # (no retry) and no timeout; build it again with a session that honours Tableau's rate
        # limits and a timeout that tableauserverclient passes to every request (http_options).
        client = self._client
        client._server = TSC.Server(client.base_url, session_factory=_rate_limited_session,
                                    http_options={"timeout": self.request_timeout_seconds})
        client._server.use_server_version()


class TableauServer(_BoundedRequests, TableauServerWorkspace):
    """A Tableau Server site (dagster-tableau's workspace) whose requests retry on 429 and time out."""


class TableauCloud(_BoundedRequests, TableauCloudWorkspace):
    """A Tableau Cloud site (dagster-tableau's workspace) whose requests retry on 429 and time out."""


class EcommTableauTranslator(DagsterTableauTranslator):
    """Tableau content under ``tableau/`` in the serving group; a data source depends on the KPI
    tables (``dbt_prod_metric.agg_*``) it reads."""

    def get_asset_spec(self, data: TableauTranslatorData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        name = data.properties["name"]
        if data.content_type == TableauContentType.DATA_SOURCE:
            read = [dg.AssetKey([table.get("schema") or "", table["name"]])
                    for table in data.properties.get("upstreamTables") or []]
            kpis = [key for key in read if key in DASHBOARD_MODELS]
            kind = "extract" if data.properties["hasExtracts"] else "live connection"
            spec = spec.replace_attributes(
                deps=kpis,
                description=f"Tableau data source '{name}' ({kind}) of the {WORKBOOK} dashboard, "
                f"over {', '.join(key.to_user_string() for key in kpis) or 'no KPI table'}.",
            )
        else:
            spec = spec.replace_attributes(
                description=f"Tableau {data.content_type.value} '{name}' of the {WORKBOOK} workbook.")
        return spec.replace_attributes(key=spec.key.with_prefix("tableau"), group_name="serving")


def read_workspace_data(workspace: BaseTableauWorkspace, path: Path) -> TableauWorkspaceData:
    """Read the site's content from Tableau and keep it in ``path``."""
    with workspace.process_config_and_initialize_cm() as site:
        try:
            data = site.fetch_tableau_workspace_data()
        except (requests.RequestException, TSC.ServerResponseError) as error:
            raise RuntimeError(
                f"Tableau site {workspace.site_name!r} could not be read into {path}: {error}. "
                f"Run `{FETCH_STATE}` once Tableau answers."
            ) from error
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(dg.serialize_value(data))
    partial.replace(path)
    return data


@record
class TableauStateLoader(StateBackedDefinitionsLoader[TableauWorkspaceData]):
    """The workbook's assets from the site's content. A run worker takes the content Dagster stored
    with its run (what the webserver or daemon that launched it loaded); any other process reads
    the copy in ``path``, and reads Tableau into it when missing only if ``fetch_if_missing``
    (locally; never in production)."""

    workspace: BaseTableauWorkspace
    path: Path
    fetch_if_missing: bool

    @property
    def defs_key(self) -> str:
        return f"{TABLEAU_RECONSTRUCTION_METADATA_KEY_PREFIX}/{self.workspace.site_name}"

    def fetch_state(self) -> TableauWorkspaceData:
        if self.path.exists():
            return dg.deserialize_value(self.path.read_text(), TableauWorkspaceData)
        if not self.fetch_if_missing:
            raise RuntimeError(
                f"No Tableau workspace state at {self.path} (ECOMM_TABLEAU_STATE): in production the code "
                f"location never reads Tableau when it loads. Fetch it where the code is deployed: `{FETCH_STATE}`.")
        return read_workspace_data(self.workspace, self.path)

    def defs_from_state(self, state: TableauWorkspaceData) -> dg.Definitions:
        return dg.Definitions(assets=workbook_assets(state))


def workbook_specs(data: TableauWorkspaceData) -> list[dg.AssetSpec]:
    """The data sources, visible sheets and dashboards of the Ecommerce Analytics workbook."""
    ids = {id_ for id_, workbook in data.workbooks_by_id.items() if workbook.properties["name"] == WORKBOOK}
    if not ids:
        raise ValueError(f"Tableau site {data.site_name!r} has no workbook named {WORKBOOK!r}.")
    workbook = data.to_workspace_data_selection(lambda metadata: metadata.id in ids)
    content = [*workbook.data_sources_by_id.values(),
               *(sheet for sheet in workbook.sheets_by_id.values() if sheet.properties.get("path")),  # hidden sheets have none
               *workbook.dashboards_by_id.values()]
    translator = EcommTableauTranslator()
    return [translator.get_asset_spec(TableauTranslatorData(content_data=item, workspace_data=workbook))
            for item in content]


def _data_source(spec: dg.AssetSpec) -> TableauDataSourceMetadataSet | None:
    if TableauTagSet.extract(spec.tags).asset_type == "data_source":
        return TableauDataSourceMetadataSet.extract(spec.metadata)
    return None


def _is_refreshed(spec: dg.AssetSpec) -> bool:
    """Sheets, dashboards and extracts change when the extracts refresh; live data sources do not."""
    source = _data_source(spec)
    return source is None or bool(source.has_extracts)


class TableauRefreshConfig(dg.Config):
    poll_interval_seconds: float = 10
    timeout_seconds: float = 3600


def queued_job(client, content_id: str) -> str | None:
    """The id of the extract refresh job Tableau has pending or in progress for a data source or
    workbook: Query Jobs filtered on status, each job matched on the content its Query Job names."""
    jobs = client._server.jobs
    for status in (TSC.BackgroundJobItem.Status.Pending, TSC.BackgroundJobItem.Status.InProgress):
        for listed in jobs.filter(status=status):
            job = jobs.get_by_id(listed.id)
            if content_id in (job.datasource_id, job.workbook_id):
                return job.id
    return None


def wait_for_jobs(client, jobs: dict[str, str], log, config: TableauRefreshConfig,
                  queued_before: frozenset[str] = frozenset()) -> None:
    """Poll Tableau's jobs (id -> what it refreshes) until each has completed and log its finish
    code with Tableau's notes. Fail when one did not succeed or when ``timeout_seconds`` pass; the
    jobs of this run still running then are cancelled, so none outlives the run (those Tableau had
    queued before the run, ``queued_before``, are waited for, never cancelled)."""
    pending = dict(jobs)
    failed = []
    deadline = time.monotonic() + config.timeout_seconds
    try:
        while pending:
            if time.monotonic() > deadline:
                raise dg.Failure(f"Tableau did not finish refreshing {', '.join(pending.values())} within "
                                 f"{config.timeout_seconds:g} s.")
            time.sleep(config.poll_interval_seconds)
            for job_id, what in list(pending.items()):
                job = client.get_job(job_id)
                if job.completed_at is None:  # a Bridge job reports finish code 0 once assigned
                    continue
                del pending[job_id]
                outcome = FINISH_CODES.get(job.finish_code, "unknown")
                notes = " ".join(" ".join(note.split()) for note in job.notes)  # one line, for the alert
                line = (f"Tableau job {job_id} refreshing {what} finished: code {job.finish_code} ({outcome})"
                        + (f"; Tableau says: {notes}" if notes else ""))
                if job.finish_code in SUCCEEDED:
                    log.info(line)
                else:
                    log.error(line)
                    failed.append(line)
    finally:
        for job_id, what in pending.items():
            if job_id in queued_before:
                continue
            try:
                client.cancel_job(job_id)
                log.warning(f"Cancelled Tableau job {job_id} refreshing {what}.")
            except (TSC.ServerResponseError, TSC.FailedSignInError, requests.RequestException) as error:
                # e.g. 403 without the tableau:jobs:update scope: the other jobs are still cancelled
                # and the error that stopped the wait is the one raised
                log.error(f"Could not cancel Tableau job {job_id} refreshing {what}, which goes on: "
                          + " ".join(str(error).split()))
    if failed:
        raise dg.Failure("\n".join(failed))


def tableau_workbook_assets(workspace: BaseTableauWorkspace, state_path: Path, fetch_if_missing: bool = True) -> list:
    """The workbook's assets, from the site's content as ``TableauStateLoader`` finds it."""
    loader = TableauStateLoader(workspace=workspace, path=state_path, fetch_if_missing=fetch_if_missing)
    return list(loader.build_defs().assets)


def workbook_assets(data: TableauWorkspaceData) -> list:
    """The refresh of the workbook's extracts as one partitioned multi-asset, plus its live data
    sources as external assets."""
    specs = workbook_specs(data)
    refreshed = [spec for spec in specs if _is_refreshed(spec)]

    @dg.multi_asset(
        name="ecommerce_analytics_workbook",
        specs=refreshed,
        partitions_def=ingestion_date_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def ecommerce_analytics_workbook(context: dg.AssetExecutionContext, tableau: BaseTableauWorkspace,
                                     config: TableauRefreshConfig):
        """Refresh the workbook's extracts: each published extract data source on its own, the
        embedded extracts through the workbook; then its sheets and dashboards show the new KPIs."""
        dates = run_ingestion_dates(context)
        context.log.info(f"Refreshing {WORKBOOK} after the KPIs of {dates[0]}...{dates[-1]}.")
        sources = [(spec, _data_source(spec)) for spec in refreshed if _data_source(spec)]
        jobs, queued_before, skipped = {}, set(), []
        try:
            with tableau.get_client() as client:
                refreshes = [(client.refresh_data_source, source.id, f"data source {spec.key.path[-1]}")
                             for spec, source in sources if source.is_published]
                refreshes += [(client.refresh_workbook, workbook_id, f"the embedded extracts of workbook {WORKBOOK}")
                              for workbook_id in sorted({source.workbook_id for _, source in sources
                                                         if not source.is_published})]
                for refresh, content_id, what in refreshes:
                    # tableauserverclient returns None when Tableau answers 409093: a refresh is already queued.
                    if job := refresh(content_id):
                        jobs[job.id] = what
                    elif job_id := queued_job(client, content_id):
                        context.log.info(f"Tableau already had a refresh of {what} queued (409093): "
                                         f"waiting for its job {job_id}.")
                        jobs[job_id] = what
                        queued_before.add(job_id)
                    else:
                        context.log.warning(f"Refresh of {what} skipped: Tableau already had one queued (409093) "
                                            "and no pending or running job of it was found to wait for.")
                        skipped.append(what)
                wait_for_jobs(client, jobs, context.log, config, frozenset(queued_before))
        except requests.Timeout as error:
            raise dg.Failure(f"Tableau did not answer {error.request.method} {error.request.url} "
                             f"in time: {error}") from error
        metadata = {"tableau_jobs": len(jobs)}
        if skipped:
            metadata["tableau_refresh_skipped"] = f"already queued in Tableau, not found: {', '.join(skipped)}"
        for spec in refreshed:
            yield dg.MaterializeResult(asset_key=spec.key, metadata=metadata)

    return [ecommerce_analytics_workbook, *(spec for spec in specs if not _is_refreshed(spec))]


if __name__ == "__main__":
    import sys

    from ecomm_assets import environment

    if sys.argv[1:] != ["fetch-state"]:
        raise SystemExit(f"Usage: {FETCH_STATE}")
    workspace, state = environment.tableau_workspace(), environment.tableau_state_path()
    if workspace is None:
        raise SystemExit("No Tableau configured: set TABLEAU_SERVER_NAME or TABLEAU_POD_NAME (see the README).")
    print(f"{len(workbook_specs(read_workspace_data(workspace, state)))} Tableau assets cached in {state}")
