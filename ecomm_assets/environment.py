"""The one place that turns the environment into resources.

``ECOMM_ENV=local`` (the default) runs everything on this machine: the embedded PostgreSQL, a
landing folder and a DuckDB lakehouse under ``ECOMM_HOME`` (default ``<repo>/.ecomm_home``), and
dbt-duckdb on that same file. ``ECOMM_ENV=prod`` drives RDS, S3, the Databricks DLT pipeline and
dbt-databricks; the README lists its variables. Secrets are passed as ``dg.EnvVar`` so that
Dagster reads them at run time and never stores or shows their values.
"""

import os
import re
from pathlib import Path

import dagster as dg

from ecomm_assets import REPO_ROOT
from ecomm_assets.alerts.sensor import Alerting
from ecomm_assets.alerts.smtp import SECURITIES as SMTP_SECURITIES
from ecomm_assets.extract.landing_zone import LocalLandingZone
from ecomm_assets.lakehouse.duckdb_engine import DuckDBLakehouse
from ecomm_assets.metrics.dbt_cli import DBT_EXECUTABLE, DbtCli
from ecomm_assets.metrics.project import LOCAL_TARGET, dbt_project
from ecomm_assets.operations.metrics_store import OpsMetricsStore
from ecomm_assets.retries import StepRetries
from ecomm_assets.serving.assets import LocalDashboard
from ecomm_assets.source.postgres import SourceDatabase

LOCAL_PG_PORT = 54329


def ecomm_env() -> str:
    env = os.getenv("ECOMM_ENV", "local")
    if env not in ("local", "prod"):
        raise ValueError(f"ECOMM_ENV={env!r}: expected 'local' or 'prod'")
    return env


def ecomm_home() -> Path:
    """The project's files (alert log, monitoring page, Tableau state...): ECOMM_HOME, by default
    ``<repo>/.ecomm_home`` locally; production requires it, an absolute path (a volume, not the image)."""
    if ecomm_env() == "prod":
        home = _required("ECOMM_HOME")["ECOMM_HOME"]
        if not Path(home).is_absolute():
            raise RuntimeError(f"ECOMM_HOME={home!r}: in production it must be an absolute path")
        return Path(home)
    return Path(os.getenv("ECOMM_HOME", REPO_ROOT / ".ecomm_home")).resolve()


def local_pg_port() -> int:
    return int(os.getenv("ECOMM_PG_PORT", LOCAL_PG_PORT))


def lakehouse_catalog() -> str:
    """The Unity Catalog catalog of the lakehouse: ECOMM_CATALOG in prod (a dev deployment of the
    bundle publishes to ecomm_dw_dev), always ecomm_dw locally (the DuckDB file's name)."""
    return os.getenv("ECOMM_CATALOG", "ecomm_dw") if ecomm_env() == "prod" else "ecomm_dw"


def lakehouse_database(home: Path) -> Path:
    """The local lakehouse: one DuckDB file, whose name is the catalog's (dbt's local profile names
    it too)."""
    return home / "ecomm_dw.duckdb"


def local_dashboard(home: Path) -> LocalDashboard:
    return LocalDashboard(path=str(home / "dashboard" / "ecommerce_analytics.html"))


def local_resources(home: Path, pg_port: int) -> dict:
    landing_zone = LocalLandingZone(root=str(home / "landing"))
    return {
        "source_db": SourceDatabase(host="127.0.0.1", port=pg_port, dbname="ecomm", user="ecomm"),
        "landing_zone": landing_zone,
        "lakehouse": DuckDBLakehouse(
            database=str(lakehouse_database(home)), landing_root=landing_zone.extracts_root
        ),
        "dbt": DbtCli(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE, target=LOCAL_TARGET),
        "dashboard": local_dashboard(home),
        "retries": StepRetries(),
    }


def _required(*names: str) -> dict[str, str]:
    missing = [name for name in names if not os.getenv(name)]
    if missing:
        raise RuntimeError(f"These environment variables must be set: {', '.join(missing)}")
    return {name: os.environ[name] for name in names}


def _databricks_credentials() -> dict:
    """A personal access token (DATABRICKS_TOKEN), or a service principal's OAuth secret
    (DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET): the variables dbt-databricks reads too."""
    if os.getenv("DATABRICKS_TOKEN"):
        return {"token": dg.EnvVar("DATABRICKS_TOKEN")}
    if os.getenv("DATABRICKS_CLIENT_ID") or os.getenv("DATABRICKS_CLIENT_SECRET"):
        client = _required("DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET")
        return {"client_id": client["DATABRICKS_CLIENT_ID"], "client_secret": dg.EnvVar("DATABRICKS_CLIENT_SECRET")}
    raise RuntimeError("Databricks credentials missing: set DATABRICKS_TOKEN (a personal access token), or "
                       "DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET (a service principal, OAuth M2M)")


def _warehouse_id(http_path: str) -> str:
    """The SQL warehouse id in DATABRICKS_HTTP_PATH, which must be a warehouse's /sql/1.0/warehouses/<id>."""
    if not (match := re.fullmatch(r"/?sql/1\.0/warehouses/([^/]+)/?", http_path)):
        raise RuntimeError(f"DATABRICKS_HTTP_PATH={http_path!r}: expected a SQL warehouse's HTTP path, "
                           "/sql/1.0/warehouses/<id> (the Statement Execution API needs a warehouse, not a cluster)")
    return match.group(1)


SOURCE_FIELDS = ("ECOMM_PG_HOST", "ECOMM_PG_USER", "ECOMM_PG_PASSWORD")  # ecomm-db without ECOMM_PG_DSN


def configured_source_database(sslmode: str) -> SourceDatabase:
    """ecomm-db as ECOMM_PG_DSN names it, or the ECOMM_PG_* fields (host, user and password
    required; port 5432, database ecomm and ``sslmode`` unless set)."""
    if os.getenv("ECOMM_PG_DSN"):
        return SourceDatabase(dsn=dg.EnvVar("ECOMM_PG_DSN"))
    env = _required(*SOURCE_FIELDS)
    return SourceDatabase(host=env["ECOMM_PG_HOST"], port=int(os.getenv("ECOMM_PG_PORT", "5432")),
                          dbname=os.getenv("ECOMM_PG_DBNAME", "ecomm"), user=env["ECOMM_PG_USER"],
                          password=dg.EnvVar("ECOMM_PG_PASSWORD"), sslmode=os.getenv("ECOMM_PG_SSLMODE", sslmode))


def prod_resources() -> dict:
    # The cloud clients load only here: importing them costs seconds a local start-up need not pay.
    from dagster_aws.s3 import S3Resource

    from ecomm_assets.extract.s3_landing_zone import S3LandingZone
    from ecomm_assets.lakehouse.databricks_engine import DatabricksLakehouse

    # every variable is checked here, when the code location loads, not at the step that needs it
    env = _required("ECOMM_LANDING_BUCKET", "DATABRICKS_HOST", "DATABRICKS_HTTP_PATH", "ECOMM_DLT_PIPELINE_ID",
                    *([] if os.getenv("ECOMM_PG_DSN") else SOURCE_FIELDS))  # all the missing ones named at once
    source_db = configured_source_database(sslmode="require")
    databricks_credentials = _databricks_credentials()
    # AWS credentials come from boto3's usual chain (instance role, AWS_* variables).
    landing_zone = S3LandingZone(
        bucket=env["ECOMM_LANDING_BUCKET"],
        s3=S3Resource(region_name=os.getenv("AWS_REGION"), endpoint_url=os.getenv("ECOMM_S3_ENDPOINT_URL")),
    )
    return {
        "source_db": source_db,
        "landing_zone": landing_zone,
        "lakehouse": DatabricksLakehouse(
            host=env["DATABRICKS_HOST"],
            **databricks_credentials,
            pipeline_id=env["ECOMM_DLT_PIPELINE_ID"],
            catalog=lakehouse_catalog(),
            # /sql/1.0/warehouses/<id>, the warehouse dbt-databricks uses too
            warehouse_id=_warehouse_id(env["DATABRICKS_HTTP_PATH"]),
            landing_root=landing_zone.extracts_root,
        ),
        "dbt": DbtCli(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE, target="prod"),
        "dashboard": local_dashboard(ecomm_home()),
        "retries": StepRetries(),
    }


def alerting() -> Alerting:
    """The alert log under ECOMM_HOME always; Slack when ECOMM_SLACK_TOKEN is set, email when
    ECOMM_SMTP_HOST is (TLS as ECOMM_SMTP_SECURITY says, trusting ECOMM_SMTP_CA_FILE's CAs when set);
    links to ECOMM_DAGSTER_URL."""
    channels = {}
    if os.getenv("ECOMM_SLACK_TOKEN"):
        channels.update(slack_token=dg.EnvVar("ECOMM_SLACK_TOKEN"),
                        slack_channel=_required("ECOMM_SLACK_CHANNEL")["ECOMM_SLACK_CHANNEL"])
        if os.getenv("ECOMM_SLACK_BASE_URL"):
            channels["slack_base_url"] = os.environ["ECOMM_SLACK_BASE_URL"]
    if os.getenv("ECOMM_SMTP_HOST"):
        email = _required("ECOMM_ALERT_EMAIL_FROM", "ECOMM_ALERT_EMAIL_TO")
        channels.update(smtp_host=os.environ["ECOMM_SMTP_HOST"], smtp_port=int(os.getenv("ECOMM_SMTP_PORT", "587")),
                        email_from=email["ECOMM_ALERT_EMAIL_FROM"],
                        email_to=[a.strip() for a in email["ECOMM_ALERT_EMAIL_TO"].split(",")])
        if security := os.getenv("ECOMM_SMTP_SECURITY"):
            if security not in SMTP_SECURITIES:
                raise ValueError(f"ECOMM_SMTP_SECURITY={security!r}: expected one of {', '.join(SMTP_SECURITIES)}")
            channels["smtp_security"] = security
        if ca_file := os.getenv("ECOMM_SMTP_CA_FILE"):
            if not Path(ca_file).is_file():
                raise ValueError(f"ECOMM_SMTP_CA_FILE={ca_file!r}: no such file")
            channels["smtp_ca_file"] = ca_file
        if os.getenv("ECOMM_SMTP_USER"):
            channels.update(smtp_user=os.environ["ECOMM_SMTP_USER"], smtp_password=dg.EnvVar("ECOMM_SMTP_PASSWORD"))
    return Alerting(dagster_url=os.getenv("ECOMM_DAGSTER_URL", "http://127.0.0.1:3000"),
                    alert_log=str(ecomm_home() / "alerts.jsonl"), **channels)


def tableau_workspace():
    """Tableau Server when TABLEAU_SERVER_NAME is set, Tableau Cloud when TABLEAU_POD_NAME is
    (connected-app credentials in TABLEAU_*), else None: the local dashboard serves the KPIs."""
    if not (os.getenv("TABLEAU_SERVER_NAME") or os.getenv("TABLEAU_POD_NAME")):
        return None
    from ecomm_assets.serving.tableau import TableauCloud, TableauServer  # its clients load only when used

    env = _required("TABLEAU_SITE_NAME", "TABLEAU_CONNECTED_APP_CLIENT_ID", "TABLEAU_CONNECTED_APP_SECRET_ID",
                    "TABLEAU_CONNECTED_APP_SECRET_VALUE", "TABLEAU_USERNAME")
    site = dict(connected_app_client_id=env["TABLEAU_CONNECTED_APP_CLIENT_ID"],
                connected_app_secret_id=env["TABLEAU_CONNECTED_APP_SECRET_ID"],
                connected_app_secret_value=dg.EnvVar("TABLEAU_CONNECTED_APP_SECRET_VALUE"),
                username=env["TABLEAU_USERNAME"], site_name=env["TABLEAU_SITE_NAME"])
    if os.getenv("TABLEAU_SERVER_NAME"):
        return TableauServer(server_name=os.environ["TABLEAU_SERVER_NAME"], **site)
    return TableauCloud(pod_name=os.environ["TABLEAU_POD_NAME"], **site)


def tableau_state_path() -> Path:
    """Where the Tableau workspace content is cached: ECOMM_TABLEAU_STATE, else
    ``<ECOMM_HOME>/tableau_workspace.json``."""
    if os.getenv("ECOMM_TABLEAU_STATE"):
        return Path(os.environ["ECOMM_TABLEAU_STATE"])
    return ecomm_home() / "tableau_workspace.json"


def ops_metrics_store() -> OpsMetricsStore:
    """Where each run's metrics go (schema ecomm_ops): in production the database ECOMM_OPS_PG_DSN
    names, locally the embedded PostgreSQL's ecomm database; and the monitoring page drawn from them."""
    page = str(ecomm_home() / "monitoring" / "pipeline_monitoring.html")
    if ecomm_env() == "prod":
        _required("ECOMM_OPS_PG_DSN")
        return OpsMetricsStore(conninfo=dg.EnvVar("ECOMM_OPS_PG_DSN"), monitoring_page=page)
    return OpsMetricsStore(conninfo=f"host=127.0.0.1 port={local_pg_port()} dbname=ecomm user=ecomm",
                           monitoring_page=page)


def resources() -> dict:
    """The code location's resources. Locally ecomm-db is the embedded server, or one's own
    PostgreSQL when ECOMM_PG_DSN names it (the embedded server still holds the Dagster instance
    and ecomm_ops; ECOMM_PG_PORT stays its port, so the ECOMM_PG_* fields are for prod only)."""
    if ecomm_env() == "prod":
        pipeline = prod_resources()
    else:
        pipeline = local_resources(ecomm_home(), local_pg_port())
        if os.getenv("ECOMM_PG_DSN"):
            pipeline["source_db"] = configured_source_database(sslmode="prefer")
    tableau = tableau_workspace()
    return {**pipeline, **({"tableau": tableau} if tableau else {}), "alerting": alerting(),
            "ops_metrics": ops_metrics_store()}
