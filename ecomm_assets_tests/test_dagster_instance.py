"""The production Dagster instance config, with dagster-postgres storage on a real PostgreSQL."""

import shutil
import warnings

import dagster as dg
import psycopg
import sqlalchemy
from support import DAYS, new_dagster_database

from ecomm_assets import REPO_ROOT
from ecomm_assets.extract.assets import landing_extracts
from ecomm_assets.extract.landing_zone import LocalLandingZone
from ecomm_assets.partitions import range_tags
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
        assert type(instance.event_log_storage).__name__ == "PooledPostgresEventLogStorage"
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


DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01")


class Attempt(dg.Config):
    fail: bool = False


@dg.asset(partitions_def=DAILY)
def sales(context: dg.AssetExecutionContext, config: Attempt) -> None:
    if config.fail:
        raise RuntimeError("the warehouse is down")


with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)  # partitioned checks, as the lakehouse's

    @dg.asset_check(asset=sales, partitions_def=DAILY)
    def sales_are_valid(context: dg.AssetCheckExecutionContext):
        """Judged on each day of the run, as the lakehouse's checks are; 2026-01-02 fails."""
        for day in context.partition_keys:
            yield dg.AssetCheckEvaluation(asset_key=sales.key, check_name="sales_are_valid",
                                          passed=day != "2026-01-02", partition=day)
        yield dg.Output(None)


@dg.asset_check(asset=sales)
def sales_add_up() -> dg.AssetCheckResult:
    """Judged once per run, without a day, as dagster-dbt's checks of the metric models are."""
    return dg.AssetCheckResult(passed=True)


def test_range_runs_record_their_plans_as_dagster_postgres_does_and_a_failed_one_marks_each_day_failed(
        postgres, tmp_path, monkeypatch):
    """Our event log (ecomm_assets/event_log_storage.py: planned events written at once, a check's
    result in one statement) leaves the rows dagster-postgres writes event by event: each day of a
    range run planned, a check's execution per day with its result (a failing day too) and one for a
    check judged once per run, the materializations' tags, the assets' last run, and each day of a
    failed run shown failed in the UI."""
    stored = {}
    for name, config in [("stock", "storage:\n  postgres:\n    postgres_url:\n      env: DAGSTER_PG_URL\n"),
                         ("ours", (REPO_ROOT / "ecomm_assets/instance/prod.yaml").read_text())]:
        url = new_dagster_database(postgres)
        monkeypatch.setenv("DAGSTER_PG_URL", url)
        monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_DIR", str(tmp_path / name / "compute_logs"))
        (tmp_path / name).mkdir()
        (tmp_path / name / "dagster.yaml").write_text(config)
        with dg.DagsterInstance.from_config(str(tmp_path / name)) as instance:
            assert dg.materialize([sales, sales_are_valid, sales_add_up], instance=instance,
                                  tags=range_tags("2026-01-01", "2026-01-03")).success
            failed = dg.materialize([sales, sales_are_valid, sales_add_up], instance=instance, raise_on_error=False,
                                    tags=range_tags("2026-01-03", "2026-01-05"),
                                    run_config={"ops": {"sales": {"config": {"fail": True}}}})
            assert not failed.success
            days = DAILY.get_partition_keys_in_range(dg.PartitionKeyRange("2026-01-01", "2026-01-06"))
            status = instance.get_status_by_partition(sales.key, days, DAILY)
        with psycopg.connect(url.replace("postgresql+psycopg2", "postgresql")) as db:
            runs = dict(db.execute("SELECT run_id, row_number() OVER (ORDER BY create_timestamp) FROM runs"))
            planned = db.execute("SELECT run_id, dagster_event_type, asset_key, coalesce(partition, '') FROM event_logs "
                                 "WHERE dagster_event_type LIKE '%PLANNED' ORDER BY 1, 2, 3, 4").fetchall()
            # each execution with the event it was last written from, that event as stored in the log
            checks = db.execute(
                "SELECT c.run_id, c.check_name, coalesce(c.partition, ''), c.execution_status, e.dagster_event_type, "
                "c.evaluation_event = e.event, e.timestamp = c.evaluation_event_timestamp FROM asset_check_executions c "
                "JOIN event_logs e ON e.id = c.evaluation_event_storage_id ORDER BY 1, 2, 3").fetchall()
            [last_run] = db.execute("SELECT last_run_id FROM asset_keys").fetchall()
            tags = db.execute("SELECT e.partition, t.key FROM asset_event_tags t JOIN event_logs e "
                              "ON e.id = t.event_id ORDER BY 1, 2").fetchall()
        stored[name] = (sorted((runs[run], *rest) for run, *rest in planned),
                        sorted((runs[run], *rest) for run, *rest in checks), runs[last_run[0]],
                        {day: state and state.value for day, state in status.items()}, tags)

    assert stored["ours"] == stored["stock"]
    planned, checks, last_run, status, tags = stored["ours"]
    assert [(run, partition) for run, kind, _, partition in planned if kind == "ASSET_MATERIALIZATION_PLANNED"] == [
        (1, "2026-01-01"), (1, "2026-01-02"), (1, "2026-01-03"), (2, "2026-01-03"), (2, "2026-01-04"), (2, "2026-01-05")]
    assert [(run, check, day, state, event, same) for run, check, day, state, event, *same in checks] == ([
        (1, "sales_add_up", "", "SUCCEEDED", "ASSET_CHECK_EVALUATION", [True, True]),
        (1, "sales_add_up", "2026-01-01", "PLANNED", "ASSET_CHECK_EVALUATION_PLANNED", [True, True]),
        (1, "sales_add_up", "2026-01-02", "PLANNED", "ASSET_CHECK_EVALUATION_PLANNED", [True, True]),
        (1, "sales_add_up", "2026-01-03", "PLANNED", "ASSET_CHECK_EVALUATION_PLANNED", [True, True]),
        (1, "sales_are_valid", "2026-01-01", "SUCCEEDED", "ASSET_CHECK_EVALUATION", [True, True]),
        (1, "sales_are_valid", "2026-01-02", "FAILED", "ASSET_CHECK_EVALUATION", [True, True]),
        (1, "sales_are_valid", "2026-01-03", "SUCCEEDED", "ASSET_CHECK_EVALUATION", [True, True])]
        + [(2, check, day, "PLANNED", "ASSET_CHECK_EVALUATION_PLANNED", [True, True])
           for check in ("sales_add_up", "sales_are_valid") for day in ("2026-01-03", "2026-01-04", "2026-01-05")])
    assert last_run == 2
    assert status == {"2026-01-01": "MATERIALIZED", "2026-01-02": "MATERIALIZED", "2026-01-03": "FAILED",
                      "2026-01-04": "FAILED", "2026-01-05": "FAILED", "2026-01-06": None}
    assert tags == [(day, "dagster/data_version") for day in ("2026-01-01", "2026-01-02", "2026-01-03")]


def test_the_event_log_keeps_its_connection_through_a_run_and_closing_the_instance_lets_it_go(
        postgres, tmp_path, monkeypatch):
    """dagster-postgres alone opens a connection for each event it stores; ours keeps one per process."""
    url = new_dagster_database(postgres)
    monkeypatch.setenv("DAGSTER_PG_URL", url)
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_DIR", str(tmp_path / "compute_logs"))
    shutil.copy(REPO_ROOT / "ecomm_assets/instance/prod.yaml", tmp_path / "dagster.yaml")

    def open_connections() -> int:
        with psycopg.connect(postgres.resource().conninfo(), dbname="postgres") as db:
            return db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                              (sqlalchemy.make_url(url).database,)).fetchone()[0]

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        connected = []
        sqlalchemy.event.listen(instance.event_log_storage._engine, "connect", lambda *_: connected.append(1))
        result = dg.materialize([sales, sales_are_valid], instance=instance, tags=range_tags("2026-01-01", "2026-01-30"))
        assert result.success
        assert len(instance.all_logs(result.run_id)) > 100 and len(connected) <= 5
        assert open_connections() == 1  # held between events; runs and schedules connect per use
    assert open_connections() == 0
