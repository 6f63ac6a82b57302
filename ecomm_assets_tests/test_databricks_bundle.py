"""The Databricks side, checked offline: the Asset Bundle in dlt_notebooks/ deploys the SQL the local
engine runs, the grants and the landing bucket policy keep Bronze and the landing files to data
engineers, and dbt's prod target parses without a workspace, granting Tableau its metric tables."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ecomm_assets import REPO_ROOT
from ecomm_assets.definitions import defs
from ecomm_assets.extract.landing_zone import EXTRACTS_PREFIX
from ecomm_assets.lakehouse.databricks_engine import LANDING_ROOT_SETTING
from ecomm_assets.lakehouse.pipeline_sql import pipeline_files, pipeline_settings, pipeline_tables

BUNDLE_DIR = REPO_ROOT / "dlt_notebooks"
DBT_PROJECT = REPO_ROOT / "dbt_project"
METRIC_MODELS = ("agg_sales_kpi", "agg_product_kpi", "agg_customer_kpi", "agg_customer_lifetime", "agg_customer_cohort",
                 "agg_product_performance", "agg_sales_anomalies")

BUNDLE = yaml.safe_load((BUNDLE_DIR / "databricks.yml").read_text())
RESOURCE_FILES = sorted({path for pattern in BUNDLE["include"] for path in BUNDLE_DIR.glob(pattern)})
RESOURCES = {path: yaml.safe_load(path.read_text())["resources"] for path in RESOURCE_FILES}
PIPELINE = pipeline_settings()


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# (a) the bundle


def test_the_bundle_deploys_every_sql_file_the_local_engine_runs():
    """The engines read the pipeline's files from the bundle: here, that it names each SQL file."""
    deployed = pipeline_files()
    assert all(path.is_file() for path in deployed), deployed
    assert set(deployed) == set((BUNDLE_DIR / "transformations").resolve().glob("*.sql"))


def test_every_bundle_variable_used_is_declared_and_prod_publishes_to_ecomm_dw():
    used = {name for path in RESOURCE_FILES for name in re.findall(r"\$\{var\.(\w+)\}", path.read_text())}
    assert used <= set(BUNDLE["variables"])
    assert PIPELINE["catalog"] == "${var.catalog}"
    prod_catalog = BUNDLE["targets"]["prod"].get("variables", {}).get("catalog", BUNDLE["variables"]["catalog"]["default"])
    assert prod_catalog == "ecomm_dw"


# (b) the bundle against the Dagster graph


def test_the_tables_of_the_sql_are_the_lakehouse_assets_of_the_dagster_graph():
    tables = {dg.AssetKey([table.layer, table.table]) for table in pipeline_tables()}
    lakehouse_keys = {key for key in defs.resolve_asset_graph().get_all_asset_keys()
                      if key.path[0] in ("bronze", "silver", "gold")}
    assert tables and tables == lakehouse_keys


def test_the_pipeline_is_given_every_setting_its_sql_reads():
    read = {name for file in pipeline_files() for name in re.findall(r"\$\{(\w+)\}", file.read_text())}
    assert "landing_root" in read
    assert read <= set(PIPELINE["configuration"])
    assert PIPELINE["continuous"] is False


def test_the_deploy_gives_the_pipeline_the_landing_root_dagster_checks_and_validates_it():
    """The bundle variable reaches the configuration key the engine compares with the landing zone
    it writes; the documented value has the S3 landing zone's layout; the deploy validates the
    bundle first and the deployed pipeline after."""
    assert PIPELINE["configuration"][LANDING_ROOT_SETTING] == "${var.landing_root}"
    deploy = (BUNDLE_DIR / "README.md").read_text()
    assert re.findall(r"^export BUNDLE_VAR_landing_root=(\S+)", deploy, re.M) == [f"s3://<bucket>/{EXTRACTS_PREFIX}"]
    commands = [" ".join(line.split("#")[0].split()) for line in deploy.splitlines()
                if line.startswith("databricks bundle ")]
    assert commands[:3] == ["databricks bundle validate -t prod", "databricks bundle deploy -t prod",
                            "databricks bundle run -t prod --validate-only batch_ecomm_pipeline"]
    assert any("batch_ecomm_pipeline" in resources.get("pipelines", {}) for resources in RESOURCES.values())


def test_the_pipeline_publishes_its_event_log_to_the_catalog():
    [pipeline] = [r["pipelines"]["batch_ecomm_pipeline"] for r in RESOURCES.values() if "pipelines" in r]
    assert pipeline["event_log"] == {"catalog": "${var.catalog}", "schema": "ops",
                                     "name": "batch_ecomm_pipeline_event_log"}


def test_the_databricks_job_keeps_the_dagster_schedule_paused():
    pipeline_ref = "${resources.pipelines.batch_ecomm_pipeline.id}"
    (job,) = [job for resources in RESOURCES.values() for job in resources.get("jobs", {}).values()
              if any(task.get("pipeline_task", {}).get("pipeline_id") == pipeline_ref for task in job["tasks"])]
    dagster_schedule = defs.resolve_schedule_def("batch_ecomm_pipeline_schedule")
    # Quartz: seconds minutes hours day-of-month month day-of-week
    _, minute, hour, *_ = job["schedule"]["quartz_cron_expression"].split()
    assert f"{minute} {hour} * * *" == dagster_schedule.cron_schedule
    assert job["schedule"]["timezone_id"] == dagster_schedule.execution_timezone == "Asia/Bangkok"
    assert job["schedule"]["pause_status"] == "PAUSED"


# (c) Unity Catalog grants

GRANT = re.compile(
    r"GRANT\s+(?P<privileges>.+?)\s+ON\s+(?P<kind>CATALOG|SCHEMA|EXTERNAL\s+LOCATION)\s+(?P<object>[\w.]+)"
    r"\s+TO\s+`(?P<principal>[^`]+)`",
    re.IGNORECASE,
)


def _grants() -> dict[str, set[tuple[str, str]]]:
    """{principal: {(privilege, object)}} of security/grants.sql, as run for catalog ecomm_dw."""
    sql = (BUNDLE_DIR / "security" / "grants.sql").read_text().replace("${CATALOG}", "ecomm_dw")
    text = re.sub(r"--.*", "", sql)
    grants: dict[str, set[tuple[str, str]]] = {}
    for statement in (s.strip() for s in text.split(";")):
        if statement.upper().startswith("GRANT"):
            match = GRANT.fullmatch(statement)
            assert match, f"unparsed grant: {statement}"
            for privilege in match["privileges"].split(","):
                grants.setdefault(match["principal"], set()).add((privilege.strip().upper(), match["object"].lower()))
    return grants


def test_tableau_reads_the_metric_tables_and_nothing_else():
    assert _grants()["tableau_consumers"] == {
        ("USE CATALOG", "ecomm_dw"),
        ("USE SCHEMA", "ecomm_dw.dbt_prod_metric"),
        ("SELECT", "ecomm_dw.dbt_prod_metric"),
    }


def test_only_data_engineers_reach_the_landing_files_and_bronze():
    grants = _grants()
    assert ("READ FILES", "ecomm_landing") in grants["data_engineers"]
    for principal, granted in grants.items():
        if principal != "data_engineers":
            assert not {obj for _, obj in granted} & {"ecomm_landing", "ecomm_dw.bronze"}, principal
            # anything more on the catalog would reach every schema in it
            assert {p for p, obj in granted if obj == "ecomm_dw"} == {"USE CATALOG"}, principal


# (d) the landing bucket policy


def test_the_landing_bucket_policy_keeps_the_extracts_to_two_roles():
    policy = json.loads((BUNDLE_DIR / "security" / "landing_bucket_policy.json").read_text())
    bucket, extracts = "arn:aws:s3:::${LANDING_BUCKET}", "arn:aws:s3:::${LANDING_BUCKET}/ecomm_db_extracts/*"
    roles = {"${DATA_ENGINEERING_ROLE_ARN}", "${UC_STORAGE_ROLE_ARN}"}
    for statement in policy["Statement"]:
        listed = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix", [])
        for resource in _as_list(statement["Resource"]):
            assert resource == extracts or (
                resource == bucket and listed and all(p.startswith("ecomm_db_extracts") for p in listed)
            ) or (  # listing unfinished uploads has no s3:prefix condition key
                resource == bucket and statement["Action"] == "s3:ListBucketMultipartUploads"
            ), statement["Sid"]
        if statement["Effect"] == "Allow":
            assert set(_as_list(statement["Principal"]["AWS"])) <= roles, statement["Sid"]
    denied_to_others = {
        resource for statement in policy["Statement"]
        if statement["Effect"] == "Deny"
        and set(statement.get("Condition", {}).get("ArnNotLike", {}).get("aws:PrincipalArn", [])) == roles
        for resource in _as_list(statement["Resource"])
    }
    assert denied_to_others == {bucket, extracts}
    # that it grants every call S3LandingZone makes: test_s3_landing_zone.py records them


def test_prod_deploys_into_the_deploying_principals_own_folder():
    """The pipeline runs the deployed SQL with the principal's rights on the landing zone: no other
    workspace user may be able to change it (/Workspace/Shared is writable by every user)."""
    root = BUNDLE["targets"]["prod"]["workspace"]["root_path"]
    assert root.startswith("/Workspace/Users/${workspace.current_user.userName}/")


# (e) dbt on Databricks


@pytest.mark.parametrize(("target", "adapter", "grants"), [
    ("prod", "databricks", {"select": ["tableau_consumers"]}),
    ("local", "duckdb", {}),
])
def test_dbt_parses_offline_and_grants_tableau_on_databricks_only(tmp_path, target, adapter, grants):
    env = {name: value for name, value in os.environ.items() if not name.startswith(("DATABRICKS_", "DBT_", "ECOMM_"))}
    env |= {"DATABRICKS_HOST": "offline.invalid", "DATABRICKS_HTTP_PATH": "/sql/1.0/warehouses/offline",
            "DATABRICKS_TOKEN": "not-a-token", "ECOMM_HOME": str(tmp_path)}
    result = subprocess.run(
        [Path(sys.executable).with_name("dbt"), "parse", "--target", target,
         "--project-dir", DBT_PROJECT, "--profiles-dir", DBT_PROJECT,
         "--target-path", tmp_path / "target", "--log-path", tmp_path / "logs"],
        env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    assert manifest["metadata"]["adapter_type"] == adapter
    assert manifest["metadata"]["send_anonymous_usage_stats"] is False  # dbt's one network call at parse
    models = {node["name"]: node["config"]["grants"]
              for node in manifest["nodes"].values() if node["resource_type"] == "model"}
    assert models == dict.fromkeys(METRIC_MODELS, grants)
