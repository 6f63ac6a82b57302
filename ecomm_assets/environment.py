"""The one place that turns the environment into resources.

``ECOMM_ENV=local`` (the default) runs everything on this machine: the embedded PostgreSQL, a
landing folder and a DuckDB lakehouse under ``ECOMM_HOME`` (default ``<repo>/.ecomm_home``), and
dbt-duckdb on that same file. The production set arrives with its own issue and slots in here.
"""

import os
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource

from ecomm_assets.extract.landing_zone import LocalLandingZone
from ecomm_assets.lakehouse.duckdb_engine import DuckDBLakehouse
from ecomm_assets.metrics.project import dbt_project
from ecomm_assets.source.postgres import SourceDatabase

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_PG_PORT = 54329


def ecomm_env() -> str:
    env = os.getenv("ECOMM_ENV", "local")
    if env != "local":
        raise ValueError(f"ECOMM_ENV={env!r}: only 'local' is implemented so far")
    return env


def ecomm_home() -> Path:
    return Path(os.getenv("ECOMM_HOME", REPO_ROOT / ".ecomm_home")).resolve()


def local_pg_port() -> int:
    return int(os.getenv("ECOMM_PG_PORT", LOCAL_PG_PORT))


def local_resources(home: Path, pg_port: int) -> dict:
    landing_zone = LocalLandingZone(root=str(home / "landing"))
    return {
        "source_db": SourceDatabase(host="127.0.0.1", port=pg_port, dbname="ecomm", user="ecomm"),
        "landing_zone": landing_zone,
        "lakehouse": DuckDBLakehouse(
            database=str(home / "ecomm_dw.duckdb"), landing_root=landing_zone.extracts_root
        ),
        # the dbt installed beside this interpreter, whatever the PATH says
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=str(Path(sys.executable).with_name("dbt"))),
    }


def resources() -> dict:
    ecomm_env()
    return local_resources(ecomm_home(), local_pg_port())
