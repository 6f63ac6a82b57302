"""Tableau: the Ecommerce Analytics workbook as assets downstream of the KPI tables, and the
refresh of its extracts when the KPIs land.

dagster-tableau signs in with a connected app (JWT) and reads the workbook through the REST and
Metadata APIs; its translator gives the specs. Two things are ours: the workspace content is read
once and kept in a file (the code location then loads while Tableau is unreachable), and the
refresh waits for Tableau's jobs itself, to log each job's finish code and notes and to bound the
wait (dagster-tableau's own loop reports neither).
"""

import time
import warnings
from pathlib import Path

import dagster as dg
import requests
import tableauserverclient as TSC
from dagster_tableau import (
    DagsterTableauTranslator,
    TableauCloudWorkspace,
    TableauContentType,
    TableauServerWorkspace,
    TableauTranslatorData,
)
from dagster_tableau.resources import BaseTableauWorkspace
from dagster_tableau.translator import TableauDataSourceMetadataSet, TableauTagSet, TableauWorkspaceData
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ecomm_assets.metrics.assets import DASHBOARD_MODELS
from ecomm_assets.partitions import ingestion_date_partitions, run_ingestion_dates

# dagster-tableau's classes are beta in this release; it warns at each instance.
warnings.filterwarnings("ignore", message=r"Class `\w*Tableau\w*` is currently in beta", category=dg.BetaWarning)

WORKBOOK = "Ecommerce Analytics"
FINISH_CODES = {TSC.JobItem.FinishCode.Success: "success", TSC.JobItem.FinishCode.Failed: "failed",
                TSC.JobItem.FinishCode.Cancelled: "cancelled"}
IN_PROGRESS = -1  # TSC's finish_code while a job has none yet


def _rate_limited_session() -> requests.Session:
    """A session that waits as Tableau asks (Retry-After) and retries when it answers 429."""
    session = requests.Session()
    retry = Retry(total=None, connect=0, read=0, other=0, redirect=0, status=5, status_forcelist=[429],
                  allowed_methods=None, backoff_factor=2, respect_retry_after_header=True, raise_on_status=False)
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


class _RetriesRateLimits:
    def build_client(self) -> None:
        super().build_client()
        # dagster-tableau builds tableauserverclient's Server with the default session factory
        # (no retry); build it again with one that honours Tableau's rate limits.
        client = self._client
        client._server = TSC.Server(client.base_url, session_factory=_rate_limited_session)
        client._server.use_server_version()


class TableauServer(_RetriesRateLimits, TableauServerWorkspace):
    """A Tableau Server site (dagster-tableau's workspace) whose requests retry on 429."""


class TableauCloud(_RetriesRateLimits, TableauCloudWorkspace):
    """A Tableau Cloud site (dagster-tableau's workspace) whose requests retry on 429."""


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
                f"Tableau site {workspace.site_name!r} could not be read and no copy is cached at "
                f"{path}: {error}. Run `python -m ecomm_assets.serving.tableau` once Tableau answers."
            ) from error
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(dg.serialize_value(data))
    partial.replace(path)
    return data


def cached_workspace_data(workspace: BaseTableauWorkspace, path: Path) -> TableauWorkspaceData:
    """The site's content from ``path``, read from Tableau the first time. Run
    ``python -m ecomm_assets.serving.tableau`` to read it again after the workbook changed."""
    if path.exists():
        return dg.deserialize_value(path.read_text(), TableauWorkspaceData)
    return read_workspace_data(workspace, path)


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


def wait_for_jobs(client, jobs: dict[str, str], log, config: TableauRefreshConfig) -> None:
    """Poll Tableau's jobs (id -> what it refreshes) until each has a finish code and log it with
    Tableau's notes. Fail when one did not succeed or when ``timeout_seconds`` pass; the jobs still
    running when this returns or raises are cancelled, so none outlives the run."""
    pending = dict(jobs)
    failed = []
    deadline = time.monotonic() + config.timeout_seconds
    try:
        while pending:
            if time.monotonic() > deadline:
                raise dg.Failure(f"Tableau did not finish refreshing {', '.join(pending.values())} within "
                                 f"{config.timeout_seconds:g} s; the jobs are cancelled.")
            time.sleep(config.poll_interval_seconds)
            for job_id, what in list(pending.items()):
                job = client.get_job(job_id)
                if job.finish_code == IN_PROGRESS:
                    continue
                del pending[job_id]
                outcome = FINISH_CODES.get(job.finish_code, "unknown")
                notes = " ".join(" ".join(note.split()) for note in job.notes)  # one line, for the alert
                line = (f"Tableau job {job_id} refreshing {what} finished: code {job.finish_code} ({outcome})"
                        + (f"; Tableau says: {notes}" if notes else ""))
                if job.finish_code == TSC.JobItem.FinishCode.Success:
                    log.info(line)
                else:
                    log.error(line)
                    failed.append(line)
    finally:
        for job_id in pending:
            client.cancel_job(job_id)
    if failed:
        raise dg.Failure("\n".join(failed))


def tableau_workbook_assets(workspace: BaseTableauWorkspace, state_path: Path) -> list:
    """The refresh of the workbook's extracts as one partitioned multi-asset, plus its live data
    sources as external assets."""
    specs = workbook_specs(cached_workspace_data(workspace, state_path))
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
        with tableau.get_client() as client:
            jobs = {client.refresh_data_source(source.id).id: f"data source {spec.key.path[-1]}"
                    for spec, source in sources if source.is_published}
            for workbook_id in sorted({source.workbook_id for _, source in sources if not source.is_published}):
                jobs[client.refresh_workbook(workbook_id).id] = f"the embedded extracts of workbook {WORKBOOK}"
            wait_for_jobs(client, jobs, context.log, config)
        for spec in refreshed:
            yield dg.MaterializeResult(asset_key=spec.key, metadata={"tableau_jobs": len(jobs)})

    return [ecommerce_analytics_workbook, *(spec for spec in specs if not _is_refreshed(spec))]


if __name__ == "__main__":
    from ecomm_assets import environment

    workspace, state = environment.tableau_workspace(), environment.tableau_state_path()
    if workspace is None:
        raise SystemExit("No Tableau configured: set TABLEAU_SERVER_NAME or TABLEAU_POD_NAME (see the README).")
    print(f"{len(workbook_specs(read_workspace_data(workspace, state)))} Tableau assets cached in {state}")
