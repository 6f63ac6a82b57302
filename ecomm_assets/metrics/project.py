"""The dbt project that holds the KPI models (``dbt_project/``)."""

import os
import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from ecomm_assets import REPO_ROOT

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"

# The dbt target the local runs pass (profiles.yml): the manifest is parsed for it, since dbt keys
# partial parsing on the target and would otherwise parse again on every run.
LOCAL_TARGET = "local"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def parse_manifest() -> None:
    """Write the manifest the dbt assets are built from, with the dbt of this environment."""
    subprocess.run([Path(sys.executable).with_name("dbt"), "parse", "--quiet", "--target", LOCAL_TARGET,
                    "--project-dir", DBT_PROJECT_DIR, "--profiles-dir", DBT_PROJECT_DIR], check=True)


# `dagster dev` started directly, not through make, parses a missing manifest itself
# (dagster-dbt's prepare_if_dev looks for dbt on PATH and parses on every load).
if os.getenv("DAGSTER_IS_DEV_CLI") and not dbt_project.manifest_path.exists():
    parse_manifest()

if __name__ == "__main__":  # make manifest
    parse_manifest()
