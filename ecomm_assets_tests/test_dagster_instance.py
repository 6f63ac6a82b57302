"""The production Dagster instance config, with dagster-postgres storage on a real PostgreSQL."""

import shutil

import dagster as dg
import psycopg
from support import DAYS

from ecomm_assets import REPO_ROOT
from ecomm_assets.extract.assets import landing_extracts
from ecomm_assets.extract.landing_zone import LocalLandingZone
from ecomm_assets.retries import StepRetries


def test_a_materialization_is_stored_in_postgres_and_read_back(shop, tmp_path, monkeypatch):
    with psycopg.connect(shop.resource().conninfo(), autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS dagster_storage")
        connection.execute("CREATE DATABASE dagster_storage")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "ecomm_assets/instance/prod.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", f"postgresql+psycopg2://{shop.user}:unused-with-trust-auth@127.0.0.1:"
                                         f"{shop.port}/dagster_storage?sslmode=disable")
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_DIR", str(tmp_path / "compute_logs"))

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        # named in prod.yaml, not left to Dagster's defaults (compute logs would go under DAGSTER_HOME)
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
        assert type(instance.compute_log_manager).__name__ == "LocalComputeLogManager"
        assert instance.compute_log_manager.get_captured_local_path(["run", "step"], "out") == str(
            (tmp_path / "compute_logs" / "run" / "step.out").resolve())
        result = dg.materialize(
            [landing_extracts], partition_key=DAYS[0], instance=instance,
            selection=[dg.AssetKey(["landing", "products"])],
            resources={"source_db": shop.resource(), "landing_zone": LocalLandingZone(root=str(tmp_path)),
                       "retries": StepRetries()})
        assert result.success

    with dg.DagsterInstance.get() as reopened:
        event = reopened.get_latest_materialization_event(dg.AssetKey(["landing", "products"]))
        assert event.run_id == result.run_id
        assert event.asset_materialization.partition == DAYS[0]
        assert event.asset_materialization.metadata["dagster/row_count"].value > 0
    with psycopg.connect(shop.resource().conninfo(), dbname="dagster_storage") as db:
        [(runs,)] = db.execute("SELECT count(*) FROM runs WHERE run_id = %s", (result.run_id,)).fetchall()
    assert runs == 1
