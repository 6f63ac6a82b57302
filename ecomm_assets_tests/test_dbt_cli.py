"""How Dagster runs dbt: the `DbtCli` resource over dagster-dbt's `DbtCliResource`."""

import sys
from pathlib import Path

from ecomm_assets.metrics.dbt_cli import DbtCli
from ecomm_assets.metrics.project import dbt_project


def test_dbt_is_not_asked_its_version_on_every_run(tmp_path):
    """dagster-dbt asks `dbt --version` before each command (5 s, and a call to PyPI); `DbtCli`
    overrides its private `_cli_version` to read the installed package instead. If a dagster-dbt
    upgrade renames that member, the override silently stops working: this test fails then."""
    calls = tmp_path / "dbt_calls.txt"
    recording_dbt = tmp_path / "dbt"
    recording_dbt.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {Path(sys.executable).with_name("dbt")} "$@"\n')
    recording_dbt.chmod(0o755)

    DbtCli(project_dir=dbt_project, dbt_executable=str(recording_dbt), target="local").cli(
        ["parse", "--quiet"], target_path=tmp_path / "target").wait()

    invocations = calls.read_text().splitlines()
    assert len(invocations) == 1 and invocations[0].startswith("parse"), invocations
