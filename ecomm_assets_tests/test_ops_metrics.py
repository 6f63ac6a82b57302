"""Operations metrics in PostgreSQL: every ended run's metrics in schema ecomm_ops of the real
embedded server, written once however often they are delivered, and kept waiting while the
database is down."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
from support import DAYS, NIGHTLY, source_rows

from ecomm_assets.alerts.sensor import run_alerts, run_end_events
from ecomm_assets.jobs import batch_ecomm_pipeline
from ecomm_assets.lakehouse.engine import LakehouseEngine
from ecomm_assets.operations.assets import check_run_durations, ecomm_ops_runs, runs_within_trailing_p95
from ecomm_assets.operations.metrics_store import OpsMetricsStore, RunMetrics
from ecomm_assets.operations.sensor import export_run_metrics

pytestmark = pytest.mark.slow


def tick(instance: dg.DagsterInstance, store: OpsMetricsStore, cursor: str | None,
         lakehouse: LakehouseEngine) -> dg.SensorResult:
    return export_run_metrics(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                      resources={"ops_metrics": store, "lakehouse": lakehouse}))


def ops(shop, query: str) -> list[tuple]:
    return source_rows(shop, query)


def judge(instance: dg.DagsterInstance, store: OpsMetricsStore, run_config: dict) -> dg.AssetCheckEvaluation:
    """Runs check_run_durations as the sensor's run request asks, and returns its one evaluation."""
    job = dg.Definitions(assets=[ecomm_ops_runs], asset_checks=[runs_within_trailing_p95], jobs=[check_run_durations],
                         resources={"ops_metrics": store}).resolve_job_def(check_run_durations.name)
    [evaluation] = job.execute_in_process(instance=instance, run_config=run_config).get_asset_check_evaluations()
    return evaluation


def test_each_run_is_exported_once_with_its_steps_rows_checks_and_quality(shop, new_pipeline, tmp_path):
    with psycopg.connect(shop.resource().conninfo()) as connection:
        connection.execute("DROP SCHEMA IF EXISTS ecomm_ops CASCADE")
    page = tmp_path / "pipeline_monitoring.html"
    store = OpsMetricsStore(conninfo=shop.resource().conninfo(), monitoring_page=str(page))
    with dg.instance_for_test() as instance:
        pipeline = new_pipeline(instance=instance)
        nightly = pipeline.materialize(DAYS[0], DAYS[1], selection=NIGHTLY)
        failed = pipeline.materialize(DAYS[1], DAYS[0], raise_on_error=False)  # a reversed range fails

        result = tick(instance, store, None, pipeline.resources["lakehouse"])
        assert "Exported 2 run(s)" in result.skip_reason.skip_message
        assert ops(shop, "SELECT run_id, status, partition_start, partition_end, duration_seconds > 0 "
                         "FROM ecomm_ops.runs") == sorted(
            [(nightly.run_id, "SUCCESS", DAYS[0], DAYS[1], True), (failed.run_id, "FAILURE", DAYS[1], DAYS[0], True)])
        assert ops(shop, f"SELECT step_key, status, attempts FROM ecomm_ops.steps WHERE run_id = '{nightly.run_id}'") == [
            ("batch_ecomm_pipeline_tables", "SUCCESS", 1), ("landing_extracts", "SUCCESS", 1),
            ("metric_models", "SUCCESS", 1)]  # dbt's tests of its Gold sources are checks of Gold
        # the rows landed per table and day are the extract's, as its manifest counted them
        landed = {(m.asset_key.to_user_string(), m.partition): m.metadata["dagster/row_count"].value
                  for m in (e.materialization for e in nightly.get_asset_materialization_events())
                  if m.asset_key.path[0] == "landing"}
        assert dict(((asset, day), int(value)) for asset, day, value in ops(
            shop, f"SELECT asset_key, partition, value FROM ecomm_ops.asset_metrics WHERE run_id = '{nightly.run_id}' "
                  "AND asset_key LIKE 'landing/%' AND metric = 'dagster/row_count'")) == landed
        # every check result of the run, with its day, and the quality scores
        evaluations = nightly.get_asset_check_evaluations()
        assert ops(shop, f"SELECT count(*), count(*) FILTER (WHERE NOT passed) FROM ecomm_ops.check_results "
                         f"WHERE run_id = '{nightly.run_id}'") == [
            (len(evaluations), len([e for e in evaluations if not e.passed]))]
        assert {metric for (metric,) in ops(shop, "SELECT DISTINCT metric FROM ecomm_ops.asset_metrics "
                                                  "WHERE asset_key = 'silver/data_quality'")} >= {
            "quality_score_customers", "quality_score_products", "quality_score_orders", "quality_score_order_items"}

        # The monitoring page draws them: a bar per step of the run's last day, a line per table landed.
        html = page.read_text()
        for chart in ["durations", "rows-landed", "failed-checks", "quarantine", "quality-trend"]:
            assert f'<section class="panel" id="{chart}">' in html
        assert '"name":"landing_extracts"' in html and '"name":"orders"' in html

        # Nothing new: nothing written. Delivered again from the start: nothing written twice.
        counts = "SELECT (SELECT count(*) FROM ecomm_ops.runs), (SELECT count(*) FROM ecomm_ops.steps), " \
                 "(SELECT count(*) FROM ecomm_ops.asset_metrics), (SELECT count(*) FROM ecomm_ops.check_results)"
        before = ops(shop, counts)
        assert tick(instance, store, result.cursor, pipeline.resources["lakehouse"]).cursor == result.cursor
        tick(instance, store, None, pipeline.resources["lakehouse"])
        assert ops(shop, counts) == before

        # The database down: the run (now of the scheduled job) waits, and is written when it is back.
        nightly_job = dg.Definitions(assets=pipeline.assets, jobs=[batch_ecomm_pipeline],
                                     resources=pipeline.resources).resolve_job_def(batch_ecomm_pipeline.name)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("ECOMM_HOME", str(pipeline.home))  # dbt's profile reads it (Gold's dbt source tests)
            later = nightly_job.execute_in_process(instance=instance, partition_key=DAYS[2])
        shop.stop()
        try:
            waiting = tick(instance, store, result.cursor, pipeline.resources["lakehouse"])
        finally:
            shop.start()
        assert "ecomm_ops is unreachable; 1 run(s) wait" in waiting.skip_reason.skip_message
        assert waiting.cursor == result.cursor
        exported = tick(instance, store, waiting.cursor, pipeline.resources["lakehouse"])
        assert ops(shop, f"SELECT status FROM ecomm_ops.runs WHERE run_id = '{later.run_id}'") == [("SUCCESS",)]
        # A pipeline job's run was exported: its duration is judged, and with no earlier runs not yet.
        [request] = exported.run_requests
        assert request.run_config["ops"][runs_within_trailing_p95.op.name]["config"]["run_ids"] == [later.run_id]
        evaluation = judge(instance, store, request.run_config)
        assert evaluation.passed and evaluation.description == (
            "0 run(s) judged, none slow (1 with fewer than 7 earlier runs)")


def test_a_nightly_run_slower_than_1_5x_its_trailing_p95_is_warned_of(shop, tmp_path):
    with psycopg.connect(shop.resource().conninfo()) as connection:
        connection.execute("DROP SCHEMA IF EXISTS ecomm_ops CASCADE")
    store = OpsMetricsStore(conninfo=shop.resource().conninfo(), monitoring_page=str(tmp_path / "page.html"))
    midnight = datetime(2026, 3, 1, 18, tzinfo=UTC)

    def night(n: int, seconds: float, status: str = "SUCCESS", last_day: int | None = None) -> RunMetrics:
        """The run of night n (ingestion date 2026-03-n) that took ``seconds``."""
        started = midnight + timedelta(days=n)
        first, last = f"2026-03-{n:02}", f"2026-03-{last_day or n:02}"
        return RunMetrics(run=(f"night-{n}", "batch_ecomm_pipeline", status, first, last, started,
                               started + timedelta(seconds=seconds), seconds))

    # ten ordinary nights of 20 to 29 s; a 30-day backfill and a failed night do not count
    store.write([night(n, 19 + n) for n in range(1, 11)] + [night(11, 300, last_day=30), night(12, 500, "FAILURE")])
    store.write([night(13, 40), night(14, 60)])
    with dg.instance_for_test() as instance:
        # night 13: p95 of 20..29 s is 28.55 s, and 40 s is under 1.5x; night 14: p95 of 20..29 and 40 s is 34.5 s
        slow = judge(instance, store, {"ops": {runs_within_trailing_p95.op.name: {"config": {
            "run_ids": ["night-13", "night-14"]}}}})
        assert not slow.passed and slow.severity == dg.AssetCheckSeverity.WARN
        assert slow.description == ("run night-14 (batch_ecomm_pipeline, 2026-03-14) took 60.0 s, "
                                    "over 1.5x its trailing p95 of 34.5 s")
        assert slow.metadata["judged_runs"].value == 2 and slow.metadata["slow_runs"].value == 1
        # it alerts like every failed check
        [alert] = run_alerts(instance, run_end_events(instance, None, since=0.0)[-1], "http://127.0.0.1:3000")
        assert alert.title == "Check failed (WARN): ecomm_ops/runs runs_within_trailing_p95, partition none"
        assert alert.fields["reason"] == slow.description

        # Started from the UI (no runs named) it judges the latest night: a night too early is not judged.
        store.write([night(15, 25)])
        assert judge(instance, store, {}).description == "1 run(s) judged, none slow (0 with fewer than 7 earlier runs)"
        with psycopg.connect(shop.resource().conninfo()) as connection:
            connection.execute("DELETE FROM ecomm_ops.runs WHERE run_id NOT IN ('night-1', 'night-2', 'night-15')")
        assert judge(instance, store, {}).description == "0 run(s) judged, none slow (1 with fewer than 7 earlier runs)"


def test_dbu_usage_keeps_one_row_per_day_and_resource_with_the_latest_count(shop, tmp_path):
    store = OpsMetricsStore(conninfo=shop.resource().conninfo(), monitoring_page=str(tmp_path / "page.html"))
    store.write([], [("2026-03-05", "pipeline", 10.0), ("2026-03-05", "warehouse", 2.0)])
    store.write([], [("2026-03-05", "pipeline", 12.5), ("2026-03-06", "pipeline", 1.0)])  # the day grew
    assert ops(shop, "SELECT usage_date::text, resource, dbus FROM ecomm_ops.dbu_usage") == [
        ("2026-03-05", "pipeline", 12.5), ("2026-03-05", "warehouse", 2.0), ("2026-03-06", "pipeline", 1.0)]
