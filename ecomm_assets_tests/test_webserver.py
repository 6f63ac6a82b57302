"""The Dagster UI as people use it: the webserver and the daemon on 127.0.0.1 over a real instance.

Given the small shop in ecomm-db, a backfill of three partitions launched through the
webserver's GraphQL API runs to its end with every check recorded on each day; the daemon's
sensors then alert on the failed checks and refresh the dashboard; the webserver shows the lineage
from landing/orders to the dashboard, in GraphQL and in a real browser (screenshots in tmp_path).
"""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from support import DAYS, free_port, local_instance, wait_for
from test_serving import chromium

from ecomm_assets import REPO_ROOT
from ecomm_assets.lakehouse.assets import lakehouse_tables
from ecomm_assets.source.embedded_server import EmbeddedPostgres

pytestmark = pytest.mark.slow

BACKFILL_DAYS = DAYS[:3]
FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


class DagsterUI:
    """dagster-webserver and dagster-daemon over one DAGSTER_HOME, stopped with their children."""

    def __init__(self, home: Path, postgres: EmbeddedPostgres):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "ECOMM_HOME": str(home), "ECOMM_PG_PORT": str(postgres.port),
                    "ECOMM_FIRST_INGESTION_DATE": DAYS[0], **local_instance(home / "dagster", postgres)}
        # the storage is created here, once: the webserver and the daemon would race to create it
        with pytest.MonkeyPatch.context() as env:
            env.setenv("ECOMM_DAGSTER_PG_URL", self.env["ECOMM_DAGSTER_PG_URL"])
            dg.DagsterInstance.from_config(self.env["DAGSTER_HOME"]).dispose()
        bin_dir = Path(sys.executable).parent
        code = ["-m", "ecomm_assets.definitions"]
        self.processes = [
            subprocess.Popen([bin_dir / "dagster-webserver", *code, "-h", "127.0.0.1", "-p", str(self.port)],
                             env=self.env, cwd=REPO_ROOT, start_new_session=True,
                             stdout=open(home / "webserver.log", "wb"), stderr=subprocess.STDOUT),
            subprocess.Popen([bin_dir / "dagster-daemon", "run", *code], env=self.env, cwd=REPO_ROOT,
                             start_new_session=True, stdout=open(home / "daemon.log", "wb"), stderr=subprocess.STDOUT),
        ]
        wait_for(lambda: self._answers(), 300, "the webserver to answer", interval=2)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def graphql(self, query: str, **variables) -> dict:
        request = urllib.request.Request(f"{self.url}/graphql", method="POST",
                                         data=json.dumps({"query": query, "variables": variables}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    def stop(self):
        for process in self.processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:  # dagster's code servers can outlive a SIGTERM
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def ui(shop, tmp_path):
    ui = DagsterUI(tmp_path / "home", shop)
    yield ui
    ui.stop()


ASSET_GRAPH = "{ assetNodes { assetKey { path } isMaterializable dependencyKeys { path } } }"
LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status runs(limit: 100) { runId status } } } }"""


SENSOR_RUNS = """{ runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: "refresh_dashboard_when_kpis_land"}]}) {
    ... on Runs { results { status tags { key value } } } } }"""


def screenshot(ui: DagsterUI, path: str, png: Path) -> str:
    """The page as chromium draws it (after 20 s of its JavaScript), saved to ``png``; its DOM."""
    browser = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--virtual-time-budget=20000", "--window-size=1600,1000", f"--user-data-dir={png.parent / 'profile'}"]
    subprocess.run([*browser, f"--screenshot={png}", ui.url + path], capture_output=True, timeout=300, check=True)
    return subprocess.run([*browser, "--dump-dom", ui.url + path], capture_output=True, text=True,
                          timeout=300, check=True).stdout


def test_a_backfill_launched_in_the_ui_runs_its_checks_alerts_and_refreshes_the_dashboard(ui, tmp_path):
    nodes = ui.graphql(ASSET_GRAPH)["assetNodes"]
    upstream = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}

    def lineage(key: str) -> set[str]:
        return upstream[key].union(*(lineage(parent) for parent in upstream[key]))

    assert {"landing/orders", "bronze/orders", "silver/fact_orders", "gold/sales_analytics",
            "dbt_prod_metric/agg_sales_kpi"} <= lineage("dashboard/ecommerce_analytics")

    launched = ui.graphql(LAUNCH_BACKFILL, params={
        "partitionNames": BACKFILL_DAYS, "fromFailure": False,
        "assetSelection": [n["assetKey"] for n in nodes if n["isMaterializable"]]})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill = wait_for(lambda: (b := ui.graphql(BACKFILL, id=launched["backfillId"])["partitionBackfillOrError"])
                        ["status"] in FINISHED and b, 900, "the backfill to finish", interval=2)
    assert backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, backfill
    assert backfill["runs"] and {run["status"] for run in backfill["runs"]} == {"SUCCESS"}

    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", ui.env["DAGSTER_HOME"])
        env.setenv("ECOMM_DAGSTER_PG_URL", ui.env["ECOMM_DAGSTER_PG_URL"])
        with dg.DagsterInstance.get() as instance:
            recorded = {}
            for info in instance.event_log_storage.get_asset_check_partition_info(list(lakehouse_tables.check_keys)):
                recorded.setdefault(info.check_key, {})[info.partition_key] = info.latest_execution_status.value
    # every check of the lakehouse has its result on each of the three days
    assert set(recorded) == set(lakehouse_tables.check_keys)
    assert all(set(days) == set(BACKFILL_DAYS) and set(days.values()) <= {"SUCCEEDED", "FAILED"}
               for days in recorded.values()), recorded
    failed = {key for key, days in recorded.items() if "FAILED" in days.values()}
    assert failed, "the small shop's bad rows fail some checks"

    # The daemon's sensors: an alert per failed check, and the dashboard refreshed after the KPIs.
    alert_log = Path(ui.env["ECOMM_HOME"]) / "alerts.jsonl"

    def alerted(key: dg.AssetCheckKey) -> bool:
        titles = [json.loads(line)["title"] for line in alert_log.read_text().splitlines()] if alert_log.exists() else []
        return any(title.startswith("Check failed") and f" {key.asset_key.to_user_string()} {key.name}, partition "
                   in title for title in titles)

    wait_for(lambda: all(alerted(key) for key in failed), 180, f"alerts on {failed}", interval=2)
    refresh = wait_for(lambda: [run for run in ui.graphql(SENSOR_RUNS)["runsOrError"]["results"]
                                if run["status"] == "SUCCESS"], 180, "the dashboard refresh", interval=2)
    assert {tag["key"]: tag["value"] for tag in refresh[0]["tags"]}.items() >= {
        "dagster/asset_partition_range_start": BACKFILL_DAYS[0],
        "dagster/asset_partition_range_end": BACKFILL_DAYS[-1]}.items()

    page = screenshot(ui, "/assets/dashboard/ecommerce_analytics?view=lineage&lineageScope=upstream&lineageDepth=6",
                      tmp_path / "lineage.png")
    assert "ecommerce_analytics" in page and "agg_sales_kpi" in page
    assert (tmp_path / "lineage.png").stat().st_size > 30_000
