"""Production resources, with a fake secret in every credential variable, run against the
loopback peers: the secrets must appear in no log line, metadata value or stored event."""

import re

import dagster as dg
import pytest
from dagster._serdes import serialize_value
from databricks_peer import (
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN,
    WAREHOUSE_ID,
    PipelinesServer,
    Update,
    data_quality,
    flow_progress,
)
from support import DAYS

from ecomm_assets import environment
from ecomm_assets.definitions import defs

pytestmark = pytest.mark.slow

PG_PASSWORD = "pg-Secret-4711"
AWS_SECRET = "aws-Secret-0815"
SECRETS = [PG_PASSWORD, AWS_SECRET, TOKEN, CLIENT_SECRET]
SELECTION = [dg.AssetKey(["landing", "orders"]), dg.AssetKey(["bronze", "orders"]),
             dg.AssetKey(["silver", "orders"])]


@pytest.fixture
def prod_env(shop, s3_endpoint, monkeypatch, request, tmp_path):
    """The production variables, Databricks signed in with a token or, given "oauth", as a service
    principal (OAuth machine-to-machine)."""
    databricks_credentials = ({"DATABRICKS_CLIENT_ID": CLIENT_ID, "DATABRICKS_CLIENT_SECRET": CLIENT_SECRET}
                              if getattr(request, "param", "token") == "oauth" else {"DATABRICKS_TOKEN": TOKEN})
    with PipelinesServer() as databricks:
        for name, value in {
            "ECOMM_ENV": "prod", "ECOMM_HOME": str(tmp_path / "ecomm_home"),
            "ECOMM_PG_HOST": "127.0.0.1", "ECOMM_PG_PORT": str(shop.port),
            "ECOMM_PG_USER": shop.user, "ECOMM_PG_PASSWORD": PG_PASSWORD, "ECOMM_PG_SSLMODE": "disable",
            "ECOMM_LANDING_BUCKET": "landing-secrets-test", "ECOMM_S3_ENDPOINT_URL": s3_endpoint,
            "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIATESTKEY", "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
            "DATABRICKS_HOST": databricks.host, **databricks_credentials,
            "DATABRICKS_HTTP_PATH": f"/sql/1.0/warehouses/{WAREHOUSE_ID}",
            "ECOMM_DLT_PIPELINE_ID": "8a1f3c2e-5b7d-4e9a-b0c1-d2e3f4a5b6c7",
            "ECOMM_OPS_PG_DSN": f"postgresql://{shop.user}:{PG_PASSWORD}@127.0.0.1:{shop.port}/ecomm?sslmode=disable",
        }.items():
            monkeypatch.setenv(name, value)
        resources = environment.resources()
        resources["lakehouse"] = resources["lakehouse"].model_copy(update={"poll_interval_seconds": 0.05})
        resources["landing_zone"].s3.get_client().create_bucket(Bucket="landing-secrets-test")
        databricks.configuration["landing_root"] = resources["landing_zone"].extracts_root  # deployed for that bucket
        yield resources, databricks


def stored_events(instance: dg.DagsterInstance, run_id: str) -> str:
    return serialize_value(instance.all_logs(run_id)) + serialize_value(instance.get_run_by_id(run_id))


@pytest.mark.parametrize("prod_env", ["token", "oauth"], indirect=True)
def test_no_secret_leaks_from_a_production_run(prod_env, capfd):
    resources, databricks = prod_env
    landing = resources["landing_zone"]

    def warehouse(statement: str) -> list[list[str]]:
        """Bronze on the warehouse holds what the extract landed; Silver one order with a bad status."""
        if "FROM ecomm_dw.bronze.orders WHERE _ingestion_date IN (DATE'2026-03-02')" in statement:
            return [[f"{landing.extracts_root}/orders/ingestion_date=2026-03-02/{name}", str(landed["rows"])]
                    for name, landed in landing.read_manifest("orders/ingestion_date=2026-03-02")["files"].items()]
        if "FROM silver.orders GROUP BY 1" in statement:  # rows and failures per ingestion date
            return [["2026-03-02", "80", "0", "1"]]
        if "FROM ecomm_dw.silver.orders WHERE NOT" in statement:  # a sample of the failing keys
            return [["4711"]]
        raise AssertionError(f"unexpected statement {statement}")

    databricks.answer_sql = warehouse
    databricks.queued.append(Update(["RUNNING", "COMPLETED"], lambda update_id: [
        flow_progress(update_id, "ecomm_dw.bronze.orders", "RUNNING", metrics={"num_output_rows": 80}),
        flow_progress(update_id, "ecomm_dw.silver.orders", "COMPLETED", metrics={"num_output_rows": 80},
                      data_quality=data_quality("orders", 0, ("valid_id", 80, 0), ("valid_status", 79, 1))),
    ]))
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(defs.assets, selection=SELECTION, partition_key=DAYS[1],
                                resources=resources,
                                instance=instance)
        assert result.success
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert {name: e.passed for name, e in checks.items()} == {
            "rows_match_manifest": True, "valid_id": True, "valid_status": False}
        assert checks["valid_status"].partition == DAYS[1]  # recorded on the run's partition
        assert checks["valid_status"].metadata["failed_sample"].value == ["4711"]
        # the secrets did travel where they belong: the token, or the one OAuth issued, to the API
        [bearer] = databricks.oauth_tokens or {TOKEN}
        assert all(r["headers"]["Authorization"] == f"Bearer {bearer}"
                   for r in databricks.requests if r["path"].startswith("/api/"))
        stored = stored_events(instance, result.run_id)
    printed = "".join(capfd.readouterr())
    for secret in SECRETS:
        assert secret not in stored
        assert secret not in printed


def test_no_secret_leaks_from_a_failed_connection(prod_env, monkeypatch, capfd):
    monkeypatch.setenv("ECOMM_PG_DSN", f"postgresql://ecomm:{PG_PASSWORD}@127.0.0.1:1/ecomm?connect_timeout=1")
    resources = environment.resources()
    resources["source_db"] = resources["source_db"].model_copy(update={"connect_attempts": 1})
    resources["retries"] = resources["retries"].model_copy(update={"max_retries": 0})
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(defs.assets, selection=SELECTION[:1], partition_key=DAYS[1],
                                resources=resources,
                                instance=instance, raise_on_error=False)
        assert not result.success
        stored = stored_events(instance, result.run_id)
    assert "Connection refused" in stored
    printed = "".join(capfd.readouterr())
    for secret in SECRETS:
        assert secret not in stored
        assert secret not in printed


@pytest.mark.parametrize("unset, named", [
    (["DATABRICKS_TOKEN"], "DATABRICKS_TOKEN (a personal access token), or DATABRICKS_CLIENT_ID and "
                           "DATABRICKS_CLIENT_SECRET"),
    (["DATABRICKS_HTTP_PATH", "ECOMM_PG_PASSWORD"], "DATABRICKS_HTTP_PATH, ECOMM_PG_PASSWORD"),
])
def test_a_production_code_location_names_every_missing_variable_when_it_loads(prod_env, monkeypatch, unset, named):
    for name in unset:
        monkeypatch.delenv(name)

    with pytest.raises(RuntimeError, match=re.escape(named)):
        environment.resources()


@pytest.mark.parametrize("home, error", [
    (None, "These environment variables must be set: ECOMM_HOME"),
    (".ecomm_home", "ECOMM_HOME='.ecomm_home': in production it must be an absolute path"),
])
def test_a_production_code_location_keeps_its_files_only_where_ecomm_home_says(prod_env, monkeypatch, home, error):
    assert environment.resources()["alerting"].alert_log == f"{environment.ecomm_home()}/alerts.jsonl"
    assert environment.tableau_state_path() == environment.ecomm_home() / "tableau_workspace.json"
    if home is None:
        monkeypatch.delenv("ECOMM_HOME")
    else:
        monkeypatch.setenv("ECOMM_HOME", home)

    with pytest.raises(RuntimeError, match=re.escape(error)):
        environment.resources()


def test_a_databricks_http_path_that_is_no_sql_warehouse_stops_the_load(prod_env, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HTTP_PATH", "sql/protocolv1/o/1234567890123456/0123-456789-abcdefgh")

    with pytest.raises(RuntimeError, match=re.escape(
            "DATABRICKS_HTTP_PATH='sql/protocolv1/o/1234567890123456/0123-456789-abcdefgh': expected a SQL "
            "warehouse's HTTP path, /sql/1.0/warehouses/<id>")):
        environment.resources()


def test_the_catalog_of_a_production_deployment_is_ecomm_catalog(prod_env, monkeypatch):
    monkeypatch.setenv("ECOMM_CATALOG", "ecomm_dw_dev")

    assert environment.resources()["lakehouse"].catalog == "ecomm_dw_dev"
