"""The dbt resource: how Dagster runs dbt."""

import os
import sys
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path

from dagster_dbt import DbtCliResource
from packaging import version

from ecomm_assets.metrics.dbt_child import PARENT_PID

# dbt as Dagster runs it: the ``ecomm-dbt`` entry point of this environment (dbt_child.py), which
# dies with the run that started it, whatever the PATH says.
DBT_EXECUTABLE = str(Path(sys.executable).with_name("ecomm-dbt"))


class DbtCli(DbtCliResource):
    """dagster-dbt's dbt resource, for the dbt installed beside this interpreter (DBT_EXECUTABLE).

    dbt runs as ``ecomm-dbt``, told the pid of this process so that it dies with it.

    dagster-dbt asks ``dbt --version`` once per run to tell dbt Core from dbt Fusion: about 5 s
    here, and that command also asks PyPI for the latest release. The executable is the
    dbt-core of this environment, so its version is read from the package metadata instead.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(installed_version("dbt-core"))

    def cli(self, args, **kwargs):
        os.environ[PARENT_PID] = str(os.getpid())  # dagster-dbt hands dbt a copy of this environment
        return super().cli(args, **kwargs)
