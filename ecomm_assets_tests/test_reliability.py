"""Faults, injected for real, and what the pipeline makes of them.

Each test breaks something the way it breaks in production (a transaction held open across the
extract, a real delete, a file damaged on disk, kill -9 of a real run, PostgreSQL really stopped)
and ends by comparing every Silver, Gold and KPI table with a fault-free run over the same
source: either the fault heals by the next scheduled run, or a check fails and says what to do,
and doing it repairs the tables. Nothing is lost silently, nothing stays stuck.
"""

import ctypes
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath

import dagster as dg
import psycopg
import pytest
from dagster._core.launcher import WorkerStatus
from support import (
    DAYS,
    LINEAGE_COLUMNS,
    NIGHTLY,
    SERVED_TABLES,
    Pipeline,
    free_port,
    local_instance,
    source_rows,
    wait_for,
)

from ecomm_assets import REPO_ROOT
from ecomm_assets.alerts.sensor import Alerting, failure_alerts
from ecomm_assets.lakehouse.repair_sensor import REPAIR_TAG, rerun_out_of_sync_days
from ecomm_assets.local_run_launcher import fail_dead_runs
from ecomm_assets.local_stack import StepReport
from ecomm_assets.source.embedded_server import EmbeddedPostgres

pytestmark = pytest.mark.slow

NEXT_DAY = "2026-03-06"  # the first day after the small shop's five
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def fault_free(new_pipeline, last: str = DAYS[-1]) -> dict:
    """Every served table after one run over the whole range, from the source as it now stands."""
    pipeline = new_pipeline("fault_free")
    if last == NEXT_DAY:
        run_next_day(pipeline, first=DAYS[0])
    else:
        pipeline.materialize(DAYS[0], last)
    return pipeline.served()


def run_next_day(pipeline: Pipeline, first: str = NEXT_DAY) -> None:
    """The nightly run up to NEXT_DAY, then dbt of the days the shop traded: NEXT_DAY has no order,
    which dbt's orders_on_every_day rightly calls an error."""
    pipeline.materialize(first, NEXT_DAY, selection=NIGHTLY)
    pipeline.materialize(DAYS[0], DAYS[-1], selection="group:metrics")


def check(result: dg.ExecuteInProcessResult, asset: str, name: str) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations()
                    if e.asset_key.to_user_string() == asset and e.check_name == name]
    return evaluation


def reconfigured(resource: dg.ConfigurableResource, **changes) -> dg.ConfigurableResource:
    """The same resource with other settings (Dagster reads a resource's config from its constructor)."""
    return type(resource)(**{**resource.model_dump(), **changes})


def step_failure(result: dg.ExecuteInProcessResult) -> str:
    """The error of the run's failed step, with its causes."""
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    return failure.step_failure_data.error.to_string()


def a_delivered_order(shop, changed_on: str) -> int:
    """An order delivered on ``changed_on``: its current version is in that day's partition."""
    [(order_id,)] = source_rows(shop, f"""SELECT min(order_id) FROM orders WHERE status = 'delivered'
        AND (updated_at AT TIME ZONE 'Asia/Bangkok')::date = '{changed_on}'""")
    assert order_id is not None, f"the small shop delivered no order on {changed_on}"
    return order_id


def status_in_silver(pipeline: Pipeline, order_id: int) -> str:
    [status] = [row[4] for row in pipeline.rows("silver.dim_orders") if row[0] == order_id]
    return status


# --- late commits ---------------------------------------------------------------------------------


def test_a_change_committed_after_its_days_extract_arrives_with_the_next_partition(shop, new_pipeline):
    pipeline = new_pipeline()
    pipeline.materialize(DAYS[0], DAYS[2], selection=NIGHTLY)
    order_id = a_delivered_order(shop, DAYS[2])

    # A transaction that stamps updated_at on 03-04 is still open when 03-04 is extracted.
    with psycopg.connect(shop.resource().conninfo()) as late:
        late.execute("UPDATE orders SET status = 'cancelled', updated_at = '2026-03-04 23:30+07' "
                     "WHERE order_id = %s", (order_id,))
        pipeline.materialize(DAYS[3], selection=NIGHTLY)
        assert status_in_silver(pipeline, order_id) == "delivered"  # the source has not committed it
    # committed now, after its day's extract: the next partition's lookback picks it up
    result = pipeline.materialize(DAYS[4])

    assert status_in_silver(pipeline, order_id) == "cancelled"
    assert check(result, "silver/source_reconciliation", "in_sync").passed
    assert pipeline.served() == fault_free(new_pipeline)


def test_a_change_committed_later_than_the_lookback_is_repaired_by_a_rerun_of_its_day_once(
        shop, new_pipeline, tmp_path):
    pipeline = new_pipeline()
    pipeline.materialize(DAYS[0], DAYS[2], selection=NIGHTLY)
    order_id = a_delivered_order(shop, DAYS[2])

    # Stamped 03-03, committed only after the 03-04 extract: 03-05's lookback no longer reaches it.
    with psycopg.connect(shop.resource().conninfo()) as late:
        late.execute("UPDATE orders SET status = 'cancelled', updated_at = '2026-03-03 23:30+07' "
                     "WHERE order_id = %s", (order_id,))
        pipeline.materialize(DAYS[3], selection=NIGHTLY)
    result = pipeline.materialize(DAYS[4])

    assert status_in_silver(pipeline, order_id) == "delivered"  # the source says cancelled: lost...
    reconciliation = check(result, "silver/source_reconciliation", "in_sync")
    assert not reconciliation.passed  # ...but not silently: the check names the partition to re-run
    assert reconciliation.metadata["failed_sample"].value == ["2026-03-03"]
    out_of_sync = [(str(day), table, source - silver)
                   for day, table, source, silver in pipeline.rows("silver.source_reconciliation") if source != silver]
    assert out_of_sync == [("2026-03-03", "orders", 1)]  # one version of one order is missing

    # The repair sensor asks for a re-run of that day (the daemon launches it), and only of that day.
    def repair_sensor() -> dg.SensorResult:
        return rerun_out_of_sync_days(dg.build_sensor_context(instance=pipeline.instance))

    [request] = repair_sensor().run_requests
    assert (request.partition_key, request.tags) == ("2026-03-03", {REPAIR_TAG: "2026-03-03"})
    repaired = pipeline.materialize("2026-03-03", selection=NIGHTLY, tags=request.tags)
    pipeline.materialize(DAYS[0], DAYS[-1], selection="group:metrics")  # dbt follows Gold

    assert check(repaired, "silver/source_reconciliation", "in_sync").passed
    assert status_in_silver(pipeline, order_id) == "cancelled"
    assert pipeline.served() == fault_free(new_pipeline)
    assert repair_sensor().skip_reason.skip_message == "in_sync passes: nothing to repair."
    alert_log = tmp_path / "alerts.jsonl"
    failure_alerts(dg.build_sensor_context(instance=pipeline.instance, resources={
        "alerting": Alerting(alert_log=str(alert_log))}))
    assert "Repaired automatically: ingestion date 2026-03-03 re-run, in sync with ecomm-db again" in [
        json.loads(line)["title"] for line in alert_log.read_text().splitlines()]

    # Late again on the same day: repaired once this week already, so it is left to a person.
    with psycopg.connect(shop.resource().conninfo()) as late:
        late.execute("UPDATE orders SET status = 'delivered', updated_at = '2026-03-03 23:40+07' "
                     "WHERE order_id = %s", (order_id,))
    pipeline.materialize(DAYS[4], selection=NIGHTLY)
    left = repair_sensor()
    assert not left.run_requests
    assert "repaired once already, left to a person: 2026-03-03" in left.skip_reason.skip_message


# --- deletes and consistent cuts --------------------------------------------------------------------


def test_a_hard_delete_leaves_silver_gold_and_the_kpis_by_the_next_run(shop, new_pipeline):
    pipeline = new_pipeline()
    pipeline.materialize(DAYS[0], DAYS[-1])
    order_id = a_delivered_order(shop, DAYS[2])
    [(revenue, ordered_on)] = source_rows(shop, f"""SELECT sum(item_price), (min(o.ordered_at) AT TIME ZONE
        'Asia/Bangkok')::date::text FROM order_items JOIN orders o USING (order_id) WHERE order_id = {order_id}""")
    before = dict((row[0].isoformat(), row[1]) for row in pipeline.rows("dbt_prod_metric.agg_sales_kpi"))

    with shop.resource().connect() as connection:
        connection.execute("DELETE FROM order_items WHERE order_id = %s", (order_id,))
        connection.execute("DELETE FROM orders WHERE order_id = %s", (order_id,))
    result = pipeline.materialize(NEXT_DAY, selection=NIGHTLY)
    pipeline.materialize(DAYS[0], DAYS[-1], selection="group:metrics")

    # the delete event carries no payment method, and is not warned of for that
    assert all(e.passed for e in result.get_asset_check_evaluations() if e.check_name == "valid_payment_method")
    assert order_id not in {row[0] for row in pipeline.rows("silver.orders")}
    assert order_id not in {row[1] for row in pipeline.rows("gold.sales_analytics")}
    after = dict((row[0].isoformat(), row[1]) for row in pipeline.rows("dbt_prod_metric.agg_sales_kpi"))
    assert after[ordered_on] == before[ordered_on] - revenue
    assert pipeline.served() == fault_free(new_pipeline, NEXT_DAY)


def test_a_commit_in_the_middle_of_an_extract_is_in_none_of_its_tables(shop, new_pipeline):
    pipeline = new_pipeline()
    pipeline.materialize(DAYS[0], DAYS[3], selection=NIGHTLY)
    order_id = a_delivered_order(shop, DAYS[2])
    [(item_id, price)] = source_rows(shop, f"SELECT order_item_id, item_price FROM order_items "
                                           f"WHERE order_id = {order_id} ORDER BY 1 LIMIT 1")

    # The extract reads customers, order_items, orders, products. It is held up at orders, with
    # order_items already read, while one transaction cancels the order and refunds its line.
    writer = psycopg.connect(shop.resource().conninfo())
    writer.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")

    def commit_once_the_extract_waits():
        while not source_rows(shop, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                    "AND application_name LIKE 'ecomm_data_pipeline run %'"):
            time.sleep(0.05)
        writer.execute("UPDATE orders SET status = 'cancelled', updated_at = '2026-03-05 22:00+07' "
                       "WHERE order_id = %s", (order_id,))
        writer.execute("UPDATE order_items SET item_price = 0, updated_at = '2026-03-05 22:00+07' "
                       "WHERE order_item_id = %s", (item_id,))
        writer.commit()

    committer = threading.Thread(target=commit_once_the_extract_waits)
    committer.start()
    pipeline.materialize(DAYS[4])
    committer.join()
    writer.close()

    # Neither half of the transaction is in the partition: the order is delivered, the line paid.
    assert status_in_silver(pipeline, order_id) == "delivered"
    assert pipeline.query(f"SELECT item_price FROM silver.fact_orders WHERE order_item_id = {item_id}") == [(price,)]
    run_next_day(pipeline)  # the next partition has both halves
    assert status_in_silver(pipeline, order_id) == "cancelled"
    assert pipeline.served() == fault_free(new_pipeline, NEXT_DAY)


# --- damaged landed files ---------------------------------------------------------------------------


def _cut_at_last_row(content: bytes) -> bytes:
    return content[:content.rstrip(b"\n").rindex(b"\n") + 1]  # a valid CSV, one row short


DAMAGES = {
    "cut short at a row boundary": _cut_at_last_row,
    "cut short inside a row": lambda content: content[:len(content) // 2],
    "cut short after one byte": lambda content: content[:1],
    "emptied": lambda content: b"",
    "an extra column": lambda content: b"\n".join(line + b",extra" if line else line for line in content.split(b"\n")),
    "bytes that are not UTF-8": lambda content: content.replace(b"delivered", b"deliv\xffred", 1),
    "a row appended": lambda content: content + content.split(b"\n")[1] + b"\n",
}


def test_a_damaged_landed_file_is_never_ingested_and_a_new_extract_repairs_it(shop, new_pipeline):
    pipeline = new_pipeline()
    pipeline.materialize(DAYS[0], DAYS[-1])
    expected = pipeline.served()
    landed = pipeline.landed("orders", DAYS[-1])
    original = landed.read_bytes()

    file = f"orders/ingestion_date=2026-03-05/{landed.name}"
    for damage, apply in DAMAGES.items():
        landed.write_bytes(apply(original))
        result = pipeline.materialize(DAYS[-1], selection="not group:landing", raise_on_error=False)
        assert f"{file} does not match its manifest" in step_failure(result), damage
        assert pipeline.served() == expected, damage
    landed.write_bytes(original)
    landed.with_name("_manifest.json").unlink()  # an extract killed between its file and its manifest
    result = pipeline.materialize(DAYS[-1], selection="not group:landing", raise_on_error=False)
    assert f"{file} has no manifest" in step_failure(result)
    assert pipeline.served() == expected

    pipeline.materialize(DAYS[-1])  # the extract lands the partition again

    assert pipeline.landed("orders", DAYS[-1]).read_bytes() == original
    assert pipeline.served() == expected == fault_free(new_pipeline)


def test_a_landed_folder_of_a_day_that_does_not_exist_is_kept_aside_and_named_on_every_run(shop, new_pipeline):
    """A partition copied by hand to ingestion_date=2026-02-30 (the read_files glob lets it
    through): the refresh does not fail on it (a cast would, under Databricks' ANSI mode and in
    DuckDB), Silver leaves its rows out, and every_file_in_a_partition names its files."""
    pipeline = new_pipeline()
    pipeline.materialize(DAYS[0], selection=NIGHTLY)
    folder = pipeline.landed("orders", DAYS[0]).parent
    copied = folder.with_name("ingestion_date=2026-02-30")
    shutil.copytree(folder, copied)

    result = pipeline.materialize(DAYS[1], selection=NIGHTLY)

    rows = {f"orders/ingestion_date=2026-02-30/{f.name}": f.read_bytes().count(b"\n") - 1
            for f in copied.glob("*.csv")}
    assert {PurePosixPath(file).relative_to(PurePosixPath(file).parents[2]).as_posix(): n for file, n in
            pipeline.query("SELECT source_file, rows FROM bronze.unplaced_files")} == {k: n for k, n in rows.items() if n}
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "every_file_in_a_partition"]
    assert not check.passed and check.metadata["table_failed_records"].value == len([n for n in rows.values() if n])
    clean = new_pipeline("clean")
    clean.materialize(DAYS[0], selection=NIGHTLY)
    clean.materialize(DAYS[1], selection=NIGHTLY)
    silver_and_gold = [table for table in SERVED_TABLES if table.split(".")[0] in ("silver", "gold")]
    assert ({table: pipeline.rows(table, exclude=LINEAGE_COLUMNS) for table in silver_and_gold}
            == {table: clean.rows(table, exclude=LINEAGE_COLUMNS) for table in silver_and_gold})


# --- crashed runs and a stopped source ----------------------------------------------------------------


def cli_home(pipeline: Pipeline, shop: EmbeddedPostgres) -> dict:
    """The environment of `dagster` commands over ``pipeline``'s home: a real instance on disk."""
    return {**os.environ, "ECOMM_HOME": str(pipeline.home), "ECOMM_PG_PORT": str(shop.port),
            **local_instance(pipeline.home / "dagster", shop)}


def start_run(env: dict, first: str, last: str) -> subprocess.Popen:
    """`dagster asset materialize` of the whole graph: a run in its own process, as the CLI starts it."""
    return subprocess.Popen([DAGSTER, "asset", "materialize", "-m", "ecomm_assets.definitions", "--select", "*",
                             "--partition-range", f"{first}...{last}"],
                            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def writer_lock(pipeline: Pipeline) -> Path:
    return pipeline.home / "ecomm_dw.writer.lock"


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError):
            pass
    return found


def test_a_run_killed_in_the_lakehouse_step_leaves_nothing_half_done_and_blocks_no_later_run(shop, new_pipeline,
                                                                                              monkeypatch):
    pipeline = new_pipeline()
    pipeline.materialize(DAYS[0], DAYS[3])
    before = pipeline.served()
    env = cli_home(pipeline, shop)

    killed = start_run(env, DAYS[4], DAYS[4])
    lock = writer_lock(pipeline)
    wait_for(lambda: lock.exists() and f"lakehouse refresh) (pid {killed.pid}," in lock.read_text(), 120,
             "the run to enter the lakehouse step")
    killed.kill()  # SIGKILL: no handler runs, no cleanup
    killed.wait()
    assert f"lakehouse refresh) (pid {killed.pid}," in lock.read_text()  # it died holding the lock
    assert pipeline.served() == before  # the refresh's transaction never committed

    # The run stayed STARTED; run monitoring (the daemon) and `make run` mark it failed, once.
    monkeypatch.setenv("ECOMM_DAGSTER_PG_URL", env["ECOMM_DAGSTER_PG_URL"])
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [dead] = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert instance.run_monitoring_enabled
        health = instance.run_launcher.check_run_worker_health(dead)
        assert health.status == WorkerStatus.FAILED and f"(pid {killed.pid}) is gone" in health.msg
        assert fail_dead_runs(instance) == [dead.run_id]
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
        assert fail_dead_runs(instance) == []

    started = time.monotonic()
    rerun = start_run(env, DAYS[4], DAYS[4])
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output[-3000:]
    assert time.monotonic() - started < 300
    assert pipeline.served() == fault_free(new_pipeline)


def test_killing_a_run_during_dbt_kills_dbt_too(shop, new_pipeline):
    pipeline = new_pipeline()
    env = cli_home(pipeline, shop)

    run = start_run(env, DAYS[0], DAYS[-1])
    [dbt] = wait_for(lambda: [pid for pid in children(run.pid)
                              if "ecomm-dbt" in Path(f"/proc/{pid}/cmdline").read_text()], 300, "dbt to start")
    run.kill()
    run.wait()
    wait_for(lambda: not Path(f"/proc/{dbt}").exists() or " Z " in Path(f"/proc/{dbt}/stat").read_text(), 10,
             "dbt to die with its run")

    rerun = start_run(env, DAYS[0], DAYS[-1])
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output[-3000:]
    assert pipeline.served() == fault_free(new_pipeline)


def test_a_run_waiting_for_the_lakehouse_says_who_holds_it_gives_up_in_time_and_stops_on_sigterm(
        shop, new_pipeline, capfd):
    pipeline = new_pipeline()
    pipeline.materialize(DAYS[0], DAYS[-1], selection="group:landing")
    lock = writer_lock(pipeline)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.truncate(0)
        held.write("run 0badc0de (lakehouse refresh) (pid 4242, since 2026-03-06 01:00:00 UTC)")
        held.flush()

        pipeline.resources["lakehouse"] = reconfigured(pipeline.resources["lakehouse"], writer_lock_timeout_seconds=2)
        pipeline.resources["retries"] = reconfigured(pipeline.resources["retries"], max_retries=0)
        result = pipeline.materialize(DAYS[-1], selection="not group:landing", raise_on_error=False)
        assert any(" - INFO - " in line and "Waiting for the lakehouse file" in line and "run 0badc0de" in line
                   for line in "".join(capfd.readouterr()).splitlines())
        assert "Gave up after 2 s waiting for the lakehouse file" in step_failure(result)
        assert "run 0badc0de" in step_failure(result)

        for stop in (signal.SIGTERM, signal.SIGINT):
            waiting = start_run(cli_home(pipeline, shop), DAYS[-1], DAYS[-1])
            output = []
            reader = threading.Thread(target=output.extend, args=(waiting.stdout,))
            reader.start()
            wait_for(lambda lines=output: any("Waiting for the lakehouse file" in line for line in lines), 120,
                     "the run to wait for the lakehouse")
            waiting.send_signal(stop)
            waiting.wait(timeout=30)
            reader.join()
            assert waiting.returncode != 0, stop


def test_an_extract_while_postgresql_is_down_fails_and_changes_nothing(shop, new_pipeline):
    pipeline = new_pipeline()
    pipeline.materialize(DAYS[0], DAYS[3])
    before = pipeline.served()
    landed = sorted((p, p.read_bytes()) for p in (pipeline.home / "landing").rglob("*") if p.is_file())

    shop.stop()
    try:
        pipeline.resources["source_db"] = reconfigured(pipeline.resources["source_db"], connect_attempts=1)
        pipeline.resources["retries"] = reconfigured(pipeline.resources["retries"], max_retries=0)
        result = pipeline.materialize(DAYS[4], raise_on_error=False)
        assert "Connection refused" in step_failure(result)
    finally:
        shop.start()
    assert pipeline.served() == before
    assert sorted((p, p.read_bytes()) for p in (pipeline.home / "landing").rglob("*") if p.is_file()) == landed

    pipeline.materialize(DAYS[4])
    assert pipeline.served() == fault_free(new_pipeline)


def retried_steps(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]


def test_an_extract_retries_until_postgresql_is_back(shop, new_pipeline):
    """ecomm-db restarts at 01:00 (a failover): the extract fails, waits and lands on its next try."""
    pipeline = new_pipeline()
    pipeline.resources["source_db"] = reconfigured(pipeline.resources["source_db"], connect_attempts=1)
    pipeline.resources["retries"] = reconfigured(pipeline.resources["retries"], first_delay_seconds=2)
    shop.stop()
    back = threading.Timer(3, shop.start)
    back.start()
    try:
        result = pipeline.materialize(DAYS[0], DAYS[-1])
    finally:
        back.join()
    assert retried_steps(result)[0] == "landing_extracts"
    assert set(retried_steps(result)) == {"landing_extracts"}
    assert pipeline.served() == fault_free(new_pipeline)


def test_the_lakehouse_and_dbt_steps_retry_while_another_run_holds_the_lakehouse(shop, new_pipeline):
    """Another run holds the lakehouse for longer than a step waits: the step gives up, waits and
    succeeds on a later try, and the tables are those of a run without the wait."""
    pipeline = new_pipeline()
    pipeline.materialize(DAYS[0], DAYS[-1], selection="group:landing")
    pipeline.resources["lakehouse"] = reconfigured(pipeline.resources["lakehouse"], writer_lock_timeout_seconds=1)
    pipeline.resources["retries"] = reconfigured(pipeline.resources["retries"], first_delay_seconds=2)
    lock = writer_lock(pipeline)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for selection, step in [("group:bronze or group:silver or group:gold", "batch_ecomm_pipeline_tables"),
                            ("group:metrics", "metric_models")]:
        with lock.open("a+") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            released = threading.Timer(2.5, fcntl.flock, (held, fcntl.LOCK_UN))
            released.start()
            result = pipeline.materialize(DAYS[0], DAYS[-1], selection=selection)
            released.join()
        assert step in retried_steps(result), selection
        report = StepReport(pipeline.instance, result.run_id)  # what `make run` prints while it waits
        report.read()
        notices = [notice for at, notice in report.notices if at == step]
        assert notices[0].startswith("Waiting for the lakehouse file "), notices
        assert any(n.startswith("Transient fault, retry 1 of 3 in 2 s: TimeoutError: Gave up after") for n in notices)
    assert pipeline.served() == fault_free(new_pipeline)


PR_SET_CHILD_SUBREAPER = 36  # prctl(2), Linux


def test_local_stack_comes_back_after_postgresql_was_killed():
    home = Path(tempfile.mkdtemp(prefix="ecomm-home-"))
    env = {**os.environ, "ECOMM_HOME": str(home), "ECOMM_PG_PORT": str(free_port())}

    def local_stack(command: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ecomm_assets.local_stack", command], env=env,
                              capture_output=True, text=True, timeout=120)

    # The test process adopts the daemonised server (a "child subreaper") and reaps it only after the
    # restart: the killed server stays a zombie meanwhile, as under an init that reaps late.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        assert local_stack("up").returncode == 0
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0)
    server = EmbeddedPostgres(home / "postgres", int(env["ECOMM_PG_PORT"]))
    killed = server.server_pid()
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: server.server_pid() is None, 10, "the server to die")
    assert (home / "postgres/postmaster.pid").exists()  # stale

    up = local_stack("up")
    os.waitpid(killed, 0)
    assert up.returncode == 0, up.stderr
    with psycopg.connect(server.resource().conninfo()) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
    assert local_stack("down").returncode == 0 and server.server_pid() is None
    assert local_stack("down").returncode == 0  # nothing to stop is not an error
    shutil.rmtree(home)
