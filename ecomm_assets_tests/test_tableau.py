"""Tableau through dagster-tableau, against a Tableau Server on loopback HTTPS (tableau_peer.py).

Given the Ecommerce Analytics workbook on the site: the code location shows it downstream of the
KPI tables and loads from its cached copy while Tableau is down; a refresh refreshes each extract
once, waits for Tableau's jobs (or for the refresh Tableau had already queued) until they complete,
within a bound, turns a failed or endless job into a failed run whose alert carries Tableau's own
message, and a request Tableau never answers into a failed run within the HTTP timeout.
"""

import json
import os
import re
import subprocess
import sys
import time

import dagster as dg
import pytest
from tableau_peer import (
    CLIENT_ID,
    ECOMM_WORKBOOK,
    PRODUCT_KPI,
    SALES_KPI,
    SECRET_ID,
    SECRET_VALUE,
    SITE,
    SITE_ID,
    USERNAME,
    TableauPeer,
)

from ecomm_assets.alerts.sensor import Alerting, failure_alerts
from ecomm_assets.serving.tableau import WORKBOOK, TableauServer, tableau_workbook_assets

DAY = "2026-11-20"
WORKBOOK_ASSETS = {
    "tableau/sales_kpi", "tableau/product_kpi", "tableau/ecommerce_analytics/embedded_datasource/customer_kpi",
    "tableau/ecommerce_analytics/sheet/revenue", "tableau/ecommerce_analytics/sheet/aov",
    "tableau/ecommerce_analytics/sheet/top_selling_categories",
    "tableau/ecommerce_analytics/sheet/customer_acquisition",
    "tableau/ecommerce_analytics/dashboard/ecommerce_analytics",
}


@pytest.fixture
def tableau(tmp_path, monkeypatch):
    peer = TableauPeer(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(peer.ca_bundle))  # requests trusts the test's CA
    yield peer
    peer.stop()


def site(peer: TableauPeer, request_timeout_seconds: float = 60) -> TableauServer:
    return TableauServer(server_name=peer.server_name, site_name=SITE, username=USERNAME,
                         connected_app_client_id=CLIENT_ID, connected_app_secret_id=SECRET_ID,
                         connected_app_secret_value=SECRET_VALUE, request_timeout_seconds=request_timeout_seconds)


LOAD_CODE_LOCATION = """
import json
from ecomm_assets.definitions import defs
graph = defs.resolve_asset_graph()
print(json.dumps({
    key.to_user_string(): {"upstream": sorted(k.to_user_string() for k in graph.get(key).parent_keys),
                           "materializable": graph.get(key).is_materializable,
                           "group": graph.get(key).group_name}
    for key in graph.get_all_asset_keys()}))
refresh = defs.resolve_sensor_def("refresh_dashboard_when_kpis_land").asset_selection.resolve(graph)
print(json.dumps(sorted(key.to_user_string() for key in refresh)))
"""


def tableau_env(peer: TableauPeer, tmp_path) -> dict:
    return {**os.environ, "TABLEAU_SERVER_NAME": peer.server_name, "TABLEAU_SITE_NAME": SITE,
            "TABLEAU_CONNECTED_APP_CLIENT_ID": CLIENT_ID, "TABLEAU_CONNECTED_APP_SECRET_ID": SECRET_ID,
            "TABLEAU_CONNECTED_APP_SECRET_VALUE": SECRET_VALUE, "TABLEAU_USERNAME": USERNAME,
            "ECOMM_TABLEAU_STATE": str(tmp_path / "tableau_workspace.json"), "ECOMM_HOME": str(tmp_path)}


def load_code_location(peer: TableauPeer, tmp_path) -> dict:
    loaded = subprocess.run([sys.executable, "-c", LOAD_CODE_LOCATION], env=tableau_env(peer, tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    graph, refreshed = loaded.stdout.splitlines()
    return {**json.loads(graph), "refreshed by the sensor": json.loads(refreshed)}


def lineage_to(graph: dict, key: str) -> set[str]:
    upstream = set(graph[key]["upstream"])
    return upstream.union(*(lineage_to(graph, parent) for parent in upstream))


def test_the_workbook_is_downstream_of_the_kpis_and_loads_from_its_cache_with_tableau_down(tableau, tmp_path):
    online = load_code_location(tableau, tmp_path)
    tableau.stop()
    offline = load_code_location(tableau, tmp_path)

    assert offline == online
    assert online.pop("refreshed by the sensor") == sorted(WORKBOOK_ASSETS)
    tableau_assets = {key for key in online if key.startswith("tableau/")}
    assert tableau_assets == WORKBOOK_ASSETS | {"tableau/sales_targets"}  # the Finance workbook is not ours
    assert "dashboard/ecommerce_analytics" not in online  # Tableau serves instead of the local page
    assert online["tableau/sales_kpi"]["upstream"] == ["dbt_prod_metric/agg_sales_kpi"]
    assert online["tableau/ecommerce_analytics/embedded_datasource/customer_kpi"]["upstream"] == [
        "dbt_prod_metric/agg_customer_kpi"]
    assert online["tableau/sales_targets"] == {"upstream": [], "materializable": False, "group": "serving"}
    dashboard = lineage_to(online, "tableau/ecommerce_analytics/dashboard/ecommerce_analytics")
    assert {"landing/orders", "landing/order_items", "landing/products", "landing/customers",
            "dbt_prod_metric/agg_sales_kpi", "dbt_prod_metric/agg_product_kpi",
            "dbt_prod_metric/agg_customer_kpi"} <= dashboard
    assert all(online[key]["materializable"] and online[key]["group"] == "serving" for key in WORKBOOK_ASSETS)


def refresh(peer: TableauPeer, tmp_path, instance: dg.DagsterInstance, timeout_seconds: float = 60,
            request_timeout_seconds: float = 60):
    assets = tableau_workbook_assets(site(peer), tmp_path / "tableau_workspace.json")
    return dg.materialize(assets, partition_key=DAY, instance=instance,
                          resources={"tableau": site(peer, request_timeout_seconds)},
                          raise_on_error=False, run_config={"ops": {"ecommerce_analytics_workbook": {"config": {
                              "poll_interval_seconds": 0.05, "timeout_seconds": timeout_seconds}}}})


def messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def test_a_refresh_refreshes_each_extract_once_and_logs_tableau_s_finish_codes(tableau, tmp_path):
    tableau.rate_limit(r"POST .*/datasources/.*/refresh")  # one 429, as Tableau Cloud answers at its limit
    tableau.rate_limit(r"GET .*/jobs/.*")
    with dg.instance_for_test() as instance:
        result = refresh(tableau, tmp_path, instance)

        assert result.success
        # the published extracts one by one, the embedded one through its workbook
        assert tableau.refreshes == [SALES_KPI, PRODUCT_KPI, ECOMM_WORKBOOK]
        assert {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()} == WORKBOOK_ASSETS
        assert {event.partition for event in result.get_asset_materialization_events()} == {DAY}
        finished = [m for m in messages(instance, result.run_id) if m.startswith("Tableau job")]
        assert sorted(m.split(" refreshing ")[1] for m in finished) == [
            "data source product_kpi finished: code 0 (success)", "data source sales_kpi finished: code 0 (success)",
            "the embedded extracts of workbook Ecommerce Analytics finished: code 0 (success)"]
    assert [line for line in tableau.log if "-> 429" in line] == [
        f"POST /api/3.24/sites/{SITE_ID}/datasources/{SALES_KPI}/refresh -> 429",
        next(line for line in tableau.log if "/jobs/" in line and "-> 429" in line)]
    assert tableau.log.count(f"POST /api/3.24/sites/{SITE_ID}/datasources/{SALES_KPI}/refresh -> 202") == 1
    assert tableau.cancelled == []


def test_a_failed_refresh_fails_the_run_and_its_alert_carries_tableau_s_message(tableau, tmp_path):
    tableau.outcomes[SALES_KPI] = "failed"
    with dg.instance_for_test() as instance:
        result = refresh(tableau, tmp_path, instance)

        assert not result.success
        assert result.get_asset_materialization_events() == []
        assert sorted(tableau.refreshes) == sorted([SALES_KPI, PRODUCT_KPI, ECOMM_WORKBOOK])
        assert tableau.cancelled == []  # the other jobs ran to their end

        alert_log = tmp_path / "alerts.jsonl"
        context = dg.build_sensor_context(instance=instance, resources={"alerting": Alerting(
            dagster_url="http://127.0.0.1:3000", alert_log=str(alert_log))})
        failure_alerts(context)
        alert, = [json.loads(line) for line in alert_log.read_text().splitlines()]
        assert alert["title"] == f"Run failed: __ephemeral_asset_job__, partition {DAY}"
        assert re.fullmatch(
            r"dagster\._core\.definitions\.events\.Failure: Tableau job \S+ refreshing data source sales_kpi "
            r"finished: code 1 \(failed\); Tableau says: "
            r"com\.tableausoftware\.nativeapi\.dll\.DataSourceException: \[Databricks\] table "
            r"ecomm_dw\.dbt_prod_metric\.agg_sales_kpi not found",
            alert["fields"]["step ecommerce_analytics_workbook"]), alert


def test_refreshes_that_never_end_fail_at_the_timeout_though_tableau_refuses_to_cancel_them(tableau, tmp_path):
    # dagster-tableau's JWT asks for no tableau:jobs:update: Tableau refuses each Cancel Job (403)
    tableau.outcomes[SALES_KPI] = tableau.outcomes[PRODUCT_KPI] = "never"
    with dg.instance_for_test() as instance:
        result = refresh(tableau, tmp_path, instance, timeout_seconds=1)

        assert not result.success
        failure = result.get_step_failure_events()[0].step_failure_data.error.message
        assert "did not finish refreshing data source sales_kpi, data source product_kpi within 1 s" in failure
        refused = [m for m in messages(instance, result.run_id) if m.startswith("Could not cancel")]
    assert [line.split(" -> ")[1] for line in tableau.log if line.startswith("PUT ")] == ["403", "403"]
    assert [m.split(" refreshing ")[1] for m in refused] == [
        f"data source {name}, which goes on: 403032: Update forbidden The session's JWT has no scope "
        "tableau:jobs:update: it cannot cancel jobs." for name in ("sales_kpi", "product_kpi")]
    assert tableau.cancelled == []


def test_a_refresh_tableau_already_queued_is_waited_for(tableau, tmp_path):
    # the site's schedule queued these refreshes: Tableau answers ours with 409093
    queued = {"data source sales_kpi": tableau.queue("datasource", SALES_KPI),
              f"the embedded extracts of workbook {WORKBOOK}": tableau.queue("workbook", ECOMM_WORKBOOK)}
    with dg.instance_for_test() as instance:
        result = refresh(tableau, tmp_path, instance)

        assert result.success
        logged = messages(instance, result.run_id)
    assert [line for line in tableau.log if "-> 409" in line] == [
        f"POST /api/3.24/sites/{SITE_ID}/datasources/{SALES_KPI}/refresh -> 409",
        f"POST /api/3.24/sites/{SITE_ID}/workbooks/{ECOMM_WORKBOOK}/refresh -> 409"]
    for what, job_id in queued.items():
        assert f"Tableau already had a refresh of {what} queued (409093): waiting for its job {job_id}." in logged
        assert f"Tableau job {job_id} refreshing {what} finished: code 0 (success)" in logged
    assert len(tableau.jobs) == 3  # the two queued and the refresh of product_kpi


def test_a_refresh_already_queued_that_cannot_be_found_is_skipped_and_says_so(tableau, tmp_path):
    tableau.queue("datasource", SALES_KPI, ends_at_conflict=True)  # it ends before we look for it
    with dg.instance_for_test() as instance:
        result = refresh(tableau, tmp_path, instance)

        assert result.success
        assert ("Refresh of data source sales_kpi skipped: Tableau already had one queued (409093) and no "
                "pending or running job of it was found to wait for.") in messages(instance, result.run_id)
    metadata = {event.asset_key.to_user_string(): event.materialization.metadata
                for event in result.get_asset_materialization_events()}
    assert metadata["tableau/sales_kpi"]["tableau_refresh_skipped"].value == (
        "already queued in Tableau, not found: data source sales_kpi")
    assert metadata["tableau/sales_kpi"]["tableau_jobs"].value == 2


def test_a_bridge_job_is_waited_for_until_it_completes(tableau, tmp_path):
    tableau.outcomes[SALES_KPI] = "bridge"  # finish code 0 ("assigned") until it completes with 3
    with dg.instance_for_test() as instance:
        result = refresh(tableau, tmp_path, instance)

        assert result.success
        finished = [m for m in messages(instance, result.run_id) if "refreshing data source sales_kpi" in m]
    bridge_job, = [job for job in tableau.jobs.values() if job["target"] == SALES_KPI]
    assert finished == [f"Tableau job {bridge_job['id']} refreshing data source sales_kpi finished: code 3 (completed)"]
    assert bridge_job["polls"] == 4  # three answers of code 0 without completedAt were not taken for the end


def test_a_request_tableau_never_answers_fails_the_run_within_the_http_timeout(tableau, tmp_path):
    tableau.hang(r"GET .*/jobs/.*")
    with dg.instance_for_test() as instance:
        started = time.monotonic()
        result = refresh(tableau, tmp_path, instance, request_timeout_seconds=1)
        elapsed = time.monotonic() - started

    assert not result.success
    assert elapsed < 30  # the poll timeout (60 s) never came into play
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    assert re.search(rf"Tableau did not answer GET https://{re.escape(tableau.server_name)}/api/3\.24/sites/{SITE_ID}"
                     r"/jobs/\S+ in time: .*Read timed out\. \(read timeout=1\.0\)", failure), failure


# Production: nothing here answers, and the code location must not need it to (no request is sent).
PROD_ENV = {"ECOMM_ENV": "prod", "ECOMM_PG_DSN": "postgresql://ecomm@127.0.0.1:9/ecomm",
            "ECOMM_OPS_PG_DSN": "postgresql://ecomm@127.0.0.1:9/ecomm", "ECOMM_LANDING_BUCKET": "landing",
            "AWS_REGION": "us-east-1", "DATABRICKS_HOST": "https://127.0.0.1:9", "DATABRICKS_TOKEN": "unused",
            "DATABRICKS_HTTP_PATH": "/sql/1.0/warehouses/0123456789abcdef", "ECOMM_DLT_PIPELINE_ID": "pipeline"}

# A code server's load (what the webserver and the daemon do), then a run worker's, which Dagster
# gives the repository load data stored with the run (dagster/_grpc/impl.py, core_execute_run).
INITIALIZE = """
import json, sys
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository, initialize_repository_def_from_pointer
repository = ReconstructableRepository.for_module("ecomm_assets.definitions", "defs")
if sys.argv[1] == "code server":
    loaded = initialize_repository_def_from_pointer(repository.pointer)
    open(sys.argv[2], "w").write(dg.serialize_value(loaded.repository_load_data))
else:
    loaded = repository.with_repository_load_data(dg.deserialize_value(open(sys.argv[2]).read())).get_definition()
print(json.dumps(sorted(key.to_user_string() for key in loaded.asset_graph.get_all_asset_keys()
                        if key.path[0] == "tableau")))
"""


def python(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)


def test_in_production_a_missing_tableau_state_stops_the_load_without_asking_tableau(tableau, tmp_path):
    state = tmp_path / "tableau_workspace.json"

    loaded = python({**tableau_env(tableau, tmp_path), **PROD_ENV}, "-c", "import ecomm_assets.definitions")

    assert loaded.returncode != 0
    assert (f"No Tableau workspace state at {state} (ECOMM_TABLEAU_STATE): in production the code location never "
            "reads Tableau when it loads. Fetch it where the code is deployed: "
            "`python -m ecomm_assets.serving.tableau fetch-state`.") in loaded.stderr
    assert tableau.log == []
    assert not state.exists()


def test_fetch_state_writes_the_state_production_loads_and_each_run_carries_without_asking_tableau(tableau, tmp_path):
    env, state, load_data = {**tableau_env(tableau, tmp_path), **PROD_ENV}, tmp_path / "tableau_workspace.json", \
        tmp_path / "repository_load_data.json"
    fetched = python(env, "-m", "ecomm_assets.serving.tableau", "fetch-state")
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout == f"{len(WORKBOOK_ASSETS) + 1} Tableau assets cached in {state}\n"  # with sales_targets
    assert any("/api/metadata/graphql" in line for line in tableau.log)
    tableau.log.clear()

    code_server = python(env, "-c", INITIALIZE, "code server", str(load_data))
    assert code_server.returncode == 0, code_server.stderr
    state.unlink()  # a run worker neither reads it nor asks Tableau: its run carries the content
    run_worker = python(env, "-c", INITIALIZE, "run worker", str(load_data))
    assert run_worker.returncode == 0, run_worker.stderr

    assert json.loads(code_server.stdout) == json.loads(run_worker.stdout) == sorted(
        WORKBOOK_ASSETS | {"tableau/sales_targets"})
    assert tableau.log == []
