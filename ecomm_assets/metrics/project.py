"""The dbt project that holds the KPI models (``dbt_project/``)."""

import os
import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from ecomm_assets import REPO_ROOT

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
if os.getenv("DAGSTER_IS_DEV_CLI") and not dbt_project.manifest_path.exists():
    # `dagster dev` started directly, not through make: parse as `make manifest` does, with the dbt
    # of this environment (dagster-dbt's prepare_if_dev looks for dbt on PATH and parses on every load)
    subprocess.run([Path(sys.executable).with_name("dbt"), "parse", "--quiet", "--target", "local",
                    "--project-dir", DBT_PROJECT_DIR, "--profiles-dir", DBT_PROJECT_DIR], check=True)
