"""The Databricks engine against a local HTTP server that speaks the Pipelines API.

databricks-sdk talks HTTP to the peer in ``databricks_peer.py`` exactly as it would to a
workspace; the peer records every request, so the tests assert on the wire: which endpoint,
which body, which token.
"""

import contextlib
import json
import logging
import os
import re
import signal
import socket
import threading
import time

import dagster as dg
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError, raise_execution_interrupts
from databricks_peer import (
    BUSY_ANSWERS,
    CLIENT_ID,
    CLIENT_SECRET,
    LANDING_ROOT,
    PIPELINE_ID,
    TOKEN,
    WAREHOUSE_ID,
    PipelinesServer,
    Update,
    data_quality,
    event,
    flow_progress,
    iso,
)

from ecomm_assets.extract.landing_zone import LocalLandingZone
from ecomm_assets.lakehouse.assets import lakehouse_tables
from ecomm_assets.lakehouse.engine import ExpectationResult, TableUpdate
from ecomm_assets.lakehouse.pipeline_sql import pipeline_tables
from ecomm_assets.metrics.assets import gold_tables, metric_models
from ecomm_assets.metrics.dbt_cli import DBT_EXECUTABLE, DbtCli
from ecomm_assets.metrics.project import dbt_project
from ecomm_assets.retries import StepRetries

PIPELINE = {table.name: table for table in pipeline_tables()}
log = logging.getLogger("test_databricks_engine")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """No DATABRICKS_* setting from the environment, and no connection but to 127.0.0.1."""
    for name in [n for n in os.environ if n.startswith("DATABRICKS_")]:
        monkeypatch.delenv(name)
    connect = socket.socket.connect

    def guarded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
            raise AssertionError(f"the test tried to reach {address}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def server():
    with PipelinesServer() as peer:
        yield peer


def selected(*names: str):
    return [PIPELINE[name] for name in names]


def data_starts(server: PipelinesServer) -> list[dict]:
    """The starts of updates that refresh tables (not validate-only)."""
    return [r for r in server.calls("POST", rf"/api/2.0/pipelines/{PIPELINE_ID}/updates")
            if not r["body"].get("validate_only")]


def data_updates(server: PipelinesServer) -> list[Update]:
    return [u for u in server.updates.values() if not u.request.get("validate_only")]


def successful_update(update_id: str) -> list[dict]:
    """What an update of bronze.orders, silver.orders and silver.order_items logs. Dataset
    names come fully qualified, backticked or bare, to show the engine maps each of them."""
    return [
        event(None, "user_action", message="User ops@shop.example started an update.",
              details={"user_action": {"action": "START", "user_name": "ops@shop.example"}}),
        event(update_id, "create_update", message="Update started by API call.",
              details={"create_update": {"cause": "API_CALL", "full_refresh": False}}),
        event(update_id, "update_progress", message=f"Update {update_id[:6]} is RUNNING.",
              details={"update_progress": {"state": "RUNNING"}}),
        event(update_id, "flow_definition", message="Dataset 'ecomm_dw.bronze.orders' defined.",
              origin={"flow_name": "ecomm_dw.bronze.orders", "dataset_name": "ecomm_dw.bronze.orders"},
              details={"flow_definition": {"output_dataset": "ecomm_dw.bronze.orders",
                                           "flow_type": "APPEND"}}),
        flow_progress(update_id, "ecomm_dw.bronze.orders", "STARTING"),
        flow_progress(update_id, "ecomm_dw.bronze.orders", "RUNNING", metrics={"num_output_rows": 300},
                      data_quality={"dropped_records": 0, "expectations": []}),
        flow_progress(update_id, "ecomm_dw.bronze.orders", "RUNNING", metrics={"num_output_rows": 125}),
        flow_progress(update_id, "ecomm_dw.bronze.orders", "COMPLETED"),
        flow_progress(update_id, "silver.orders", "RUNNING"),
        flow_progress(update_id, "silver.orders", "COMPLETED", metrics={"num_output_rows": 400},
                      data_quality=data_quality("orders", 0,
                                                ("valid_id", 398, 2), ("valid_status", 397, 3))),
        flow_progress(update_id, "`ecomm_dw`.`silver`.`order_items`", "COMPLETED",
                      metrics={"num_output_rows": 1186},
                      data_quality=data_quality("ecomm_dw.silver.order_items", 0,
                                                ("valid_id", 1181, 5), ("valid_reference", 1186, 0),
                                                ("valid_price", 1185, 1), ("valid_quantity", 1186, 0),
                                                ("not_declared_here", 1186, 0))),
        event(update_id, "update_progress", message=f"Update {update_id[:6]} is COMPLETED.",
              details={"update_progress": {"state": "COMPLETED"}}),
    ]


def test_refresh_runs_one_update_of_the_selection_and_reads_its_metrics(server, caplog):
    # Neither an earlier update's events nor those of one another run starts right after ours count.
    now = int(time.time() * 1000)
    for first, update_id in [(now - 3_600_000, "0d9c8b7a-0000-4000-8000-000000000000"),
                             (now + 600_000, "0d9c8b7a-0000-4000-8000-000000000002")]:
        server.log += [{"timestamp": iso(first + i), **e}
                       for i, e in enumerate(successful_update(update_id))]
    server.queued.append(Update(["QUEUED", "INITIALIZING", "RUNNING", "COMPLETED"], successful_update))

    with caplog.at_level(logging.INFO):
        updates = server.engine().refresh(
            selected("bronze.orders", "silver.orders", "silver.order_items"), ["2026-03-05"], log)

    assert updates == [
        TableUpdate("bronze.orders", 425),
        TableUpdate("silver.orders", 400, (ExpectationResult("valid_id", 398, 2),
                                           ExpectationResult("valid_status", 397, 3))),
        TableUpdate("silver.order_items", 1186, (ExpectationResult("valid_id", 1181, 5),
                                                 ExpectationResult("valid_reference", 1186, 0),
                                                 ExpectationResult("valid_price", 1185, 1),
                                                 ExpectationResult("valid_quantity", 1186, 0))),
    ]
    assert "expectations ['not_declared_here'] that dlt_notebooks/ does not declare" in caplog.text
    validate, start = server.calls("POST", rf"/api/2.0/pipelines/{PIPELINE_ID}/updates")
    assert validate["body"] == {"validate_only": True}
    assert start["body"] == {"refresh_selection": [
        "ecomm_dw.bronze.orders", "ecomm_dw.silver.orders", "ecomm_dw.silver.order_items"]}
    [update] = data_updates(server)
    assert len(server.calls("GET", rf"/api/2.0/pipelines/{PIPELINE_ID}/updates/{update.update_id}")) == 4
    first, *more = server.calls("GET", rf"/api/2.0/pipelines/{PIPELINE_ID}/events")
    assert first["query"]["filter"].startswith("timestamp >= '")
    assert more and all(set(r["query"]) == {"page_token", "max_results"} for r in more)
    api_calls = [r for r in server.requests if r["path"].startswith("/api/")]
    assert all(r["headers"]["Authorization"] == f"Bearer {TOKEN}" for r in api_calls)
    assert not server.calls("POST", r".*/stop")
    assert "silver.order_items: 1186 rows written, 0 dropped by expectations" in caplog.text
    assert TOKEN not in caplog.text


def test_the_rows_bronze_holds_per_landed_file_are_counted_on_the_warehouse(server):
    server.queued.append(Update(["RUNNING", "COMPLETED"], successful_update))
    files = [f"{LANDING_ROOT}/orders/ingestion_date=2026-03-0{day}/orders__2026030{day}_180000_000000.csv"
             for day in (4, 5)]
    statements = []

    def answer(statement):
        statements.append(statement)
        return [[files[0], "212"], [files[1], "213"], [f"{LANDING_ROOT}/orders/key_snapshot/orders.csv", "1"]]

    server.answer_sql = answer

    [update] = server.engine().refresh(selected("bronze.orders"), ["2026-03-04", "2026-03-05"], log)

    assert statements == ["SELECT _source_file, count(*) FROM ecomm_dw.bronze.orders "
                          "WHERE _ingestion_date IN (DATE'2026-03-04', DATE'2026-03-05') GROUP BY _source_file"]
    assert update.rows_by_file == {"orders/ingestion_date=2026-03-04/orders__20260304_180000_000000.csv": 212,
                                   "orders/ingestion_date=2026-03-05/orders__20260305_180000_000000.csv": 213,
                                   "orders/key_snapshot/orders.csv": 1}
    [execute] = server.calls("POST", "/api/2.0/sql/statements")
    assert execute["body"]["warehouse_id"] == WAREHOUSE_ID
    assert server.calls("GET", r"/api/2.0/sql/statements/[\w-]+")  # it was PENDING at first
    assert server.calls("GET", r"/api/2.0/sql/statements/[\w-]+/result/chunks/1")


def test_full_refresh_resets_the_selected_tables_only(server):
    server.queued.append(Update(["RUNNING", "COMPLETED"], successful_update))

    server.engine().refresh(selected("bronze.orders"), [], log, full_refresh=True)

    [start] = data_starts(server)
    assert start["body"] == {"full_refresh_selection": ["ecomm_dw.bronze.orders"]}


def test_no_update_is_started_for_an_empty_selection(server):
    """Databricks updates the whole pipeline when refresh_selection is empty (a checks-only run)."""
    server.queued.append(Update(["RUNNING", "COMPLETED"], successful_update))

    with pytest.raises(ValueError, match="empty refresh_selection would update the whole pipeline"):
        server.engine().refresh([], ["2026-03-04"], log)

    assert server.requests == []
    server.engine().refresh(selected("bronze.orders"), ["2026-03-04"], log)
    [update] = data_updates(server)
    assert not update.whole_pipeline


def test_a_failed_update_raises_with_the_pipeline_error(server):
    old_failure = event("0d9c8b7a-0000-4000-8000-000000000001", "update_progress", "ERROR",
                        "Update 0d9c8b is FAILED.",
                        error={"exceptions": [{"message": "an old, fixed error"}]})
    server.log.append({"timestamp": iso(int(time.time() * 1000) - 86_400_000), **old_failure})
    cause = ("[DELTA_FAILED_TO_MERGE_FIELDS] Failed to merge fields 'item_price' and 'item_price'. "
             "Failed to merge incompatible data types DECIMAL(12,2) and STRING")
    server.queued.append(Update(["RUNNING", "FAILED"], lambda update_id: [
        flow_progress(update_id, "ecomm_dw.silver.fact_orders", "RUNNING"),
        {**flow_progress(update_id, "ecomm_dw.silver.fact_orders", "FAILED"), "level": "ERROR",
         "message": "Flow 'ecomm_dw.silver.fact_orders' has FAILED fatally.",
         "error": {"fatal": True, "exceptions": [
             {"class_name": "org.apache.spark.sql.AnalysisException", "message": cause}]}},
        event(update_id, "update_progress", "ERROR", f"Update {update_id[:6]} is FAILED.",
              details={"update_progress": {"state": "FAILED"}},
              error={"fatal": True, "exceptions": [{"message": cause}]}),
    ]))

    with pytest.raises(RuntimeError) as failure:
        server.engine().refresh(selected("silver.fact_orders"), ["2026-03-05"], log)

    message = str(failure.value)
    assert "failed" in message and cause in message
    assert "Flow 'ecomm_dw.silver.fact_orders' has FAILED fatally." in message
    assert message.count(cause) == 1
    assert "an old, fixed error" not in message and TOKEN not in message


def test_a_busy_pipeline_is_waited_for_then_our_update_starts(server, caplog):
    other = server.add_running_update(["RUNNING", "RUNNING", "COMPLETED"])
    server.queued.append(Update(["RUNNING", "COMPLETED"], successful_update))

    with caplog.at_level(logging.INFO):
        [update] = server.engine().refresh(selected("bronze.orders"), ["2026-03-05"], log)

    assert update == TableUpdate("bronze.orders", 425)
    calls = [(r["method"], r["path"].removeprefix(f"/api/2.0/pipelines/{PIPELINE_ID}"))
             for r in server.requests if r["path"].startswith("/api/")]
    # busy is read from the pipeline's state: no start is tried while the other update runs
    assert calls[:4] == [("GET", ""), ("GET", ""), ("GET", ""), ("POST", "/updates")]
    assert not server.calls("POST", r".*/stop")  # the other run's update is left alone
    assert f"waiting for update(s) ['{other.update_id}'] to finish" in caplog.text


@pytest.mark.parametrize("busy_answer", BUSY_ANSWERS)
def test_an_update_started_by_someone_else_meanwhile_is_waited_for_whatever_the_answer(server, busy_answer, caplog):
    """The pipeline is idle when its state is read, busy when our start arrives: each form of the
    API's answer to that start sends the engine back to waiting."""
    server.busy_answer = busy_answer
    # read as COMPLETED by the landing check and the idle check, RUNNING when our start arrives
    other = server.add_running_update(["COMPLETED", "COMPLETED", "RUNNING", "RUNNING", "COMPLETED"])
    server.queued.append(Update(["RUNNING", "COMPLETED"], successful_update))

    with caplog.at_level(logging.INFO):
        [update] = server.engine().refresh(selected("bronze.orders"), ["2026-03-05"], log)

    assert update == TableUpdate("bronze.orders", 425)
    assert [r["body"] for r in server.calls("POST", r".*/updates")] == [
        {"validate_only": True}, {"validate_only": True}, {"refresh_selection": ["ecomm_dw.bronze.orders"]}]
    assert other.state == "COMPLETED" and not server.calls("POST", r".*/stop")
    assert "became busy before our update started" in caplog.text


def test_a_start_refused_while_the_pipeline_is_idle_raises_at_once(server):
    server.refuse_start = (403, {"error_code": "PERMISSION_DENIED",
                                 "message": "User does not have CAN_RUN permission on pipeline."})

    with pytest.raises(Exception, match="does not have CAN_RUN permission"):
        server.engine().refresh(selected("bronze.orders"), ["2026-03-05"], log)

    assert len(server.calls("POST", r".*/updates")) == 1


@pytest.mark.parametrize("deployed", [
    "s3://ecomm-landing-old/ecomm_db_extracts/daily_extracts",  # deployed with another bucket
    "s3://ecomm-landing/ecomm_db_extracts",  # without the daily_extracts folder
    None,  # deployed without the setting
])
def test_a_pipeline_reading_another_landing_root_is_refused_before_any_update(server, deployed):
    """The bundle's landing_root and ECOMM_LANDING_BUCKET are set apart: the run stops on the
    pipeline's own configuration, naming both values, and starts nothing."""
    server.configuration = {k: v for k, v in server.configuration.items() if k != "landing_root"}
    if deployed:
        server.configuration["landing_root"] = deployed
    server.queued.append(Update(["RUNNING", "COMPLETED"], successful_update))

    with pytest.raises(ValueError) as refused:
        server.engine().refresh(selected("bronze.orders"), ["2026-03-05"], log)

    assert repr(deployed) in str(refused.value) and repr(LANDING_ROOT) in str(refused.value)
    assert [(r["method"], r["path"]) for r in server.requests if r["path"].startswith("/api/")] == [
        ("GET", f"/api/2.0/pipelines/{PIPELINE_ID}")]


def test_the_landing_root_is_compared_without_a_trailing_slash(server):
    server.configuration["landing_root"] = LANDING_ROOT + "/"
    server.queued.append(Update(["RUNNING", "COMPLETED"], successful_update))

    [update] = server.engine().refresh(selected("bronze.orders"), ["2026-03-05"], log)

    assert update == TableUpdate("bronze.orders", 425)


def test_code_that_does_not_validate_fails_the_run_before_any_data_update(server):
    """The deployed SQL reads a table that does not exist: the validate-only update fails with the
    analysis errors the pipeline logs, and no update of the tables is started."""
    cause = ("[TABLE_OR_VIEW_NOT_FOUND] The table or view `ecomm_dw`.`silver`.`ordres` cannot be found. "
             "Verify the spelling and correctness of the schema and catalog.")
    server.analysis_errors = [("ecomm_dw.silver.fact_orders", cause)]
    server.queued.append(Update(["RUNNING", "COMPLETED"], successful_update))

    with pytest.raises(RuntimeError) as failure:
        server.engine().refresh(selected("silver.fact_orders"), ["2026-03-05"], log)

    message = str(failure.value)
    assert "does not validate, no data update was started" in message
    assert cause in message and "Failed to resolve flow: 'ecomm_dw.silver.fact_orders'." in message
    [validation] = server.updates.values()
    assert validation.request == {"validate_only": True} and validation.state == "FAILED"
    assert not data_starts(server) and server.queued  # the data update was never asked for
    assert server.calls("GET", rf"/api/2.0/pipelines/{PIPELINE_ID}/events")


@pytest.mark.parametrize("lost", [{"validate_only": True}, {"refresh_selection": ["ecomm_dw.bronze.orders"]}],
                         ids=["validation", "data update"])
def test_a_start_whose_answer_is_lost_is_followed_not_started_twice(server, lost, caplog):
    """Databricks creates the update, then the connection drops before its answer: databricks-sdk
    sends the POST again, which is refused (our own update is active). The engine finds its update
    among the pipeline's and follows it: one update of each kind, never two."""
    server.lose_answer_to = [lost]
    server.queued.append(Update(["RUNNING", "RUNNING", "COMPLETED"], successful_update))

    with caplog.at_level(logging.INFO):
        [update] = server.engine().refresh(selected("bronze.orders"), ["2026-03-05"], log)

    assert update == TableUpdate("bronze.orders", 425)
    posts = [r["body"] for r in server.calls("POST", rf"/api/2.0/pipelines/{PIPELINE_ID}/updates")]
    assert posts.count(lost) == 2 and len(posts) == 3  # the SDK sent the lost one again
    assert sorted(json.dumps(u.request) for u in server.updates.values()) == sorted(
        json.dumps(r) for r in [{"validate_only": True}, {"refresh_selection": ["ecomm_dw.bronze.orders"]}])
    [ours] = [u for u in server.updates.values() if u.request == lost]
    assert f"Update {ours.update_id} of pipeline {PIPELINE_ID} runs {lost}" in caplog.text
    assert not server.lose_answer_to and not server.calls("POST", r".*/stop")


def test_expectations_the_events_leave_out_are_reported_as_unknown_not_as_passed(server, caplog):
    server.events_carry_data_quality = False
    server.queued.append(Update(["RUNNING", "COMPLETED"], successful_update))

    with caplog.at_level(logging.WARNING):
        [orders] = server.engine().refresh(selected("silver.orders"), ["2026-03-05"], log)

    assert orders == TableUpdate("silver.orders", 400, (ExpectationResult("valid_id", 0, 0, reported=False),
                                                        ExpectationResult("valid_status", 0, 0, reported=False)))
    assert "carry no metrics for expectations ['valid_id', 'valid_status']" in caplog.text


def test_a_service_principal_signs_in_with_oauth_machine_to_machine(server, caplog):
    server.queued.append(Update(["RUNNING", "COMPLETED"], successful_update))

    with caplog.at_level(logging.DEBUG):
        server.engine(token=None, client_id=CLIENT_ID, client_secret=CLIENT_SECRET).refresh(
            selected("bronze.orders"), ["2026-03-05"], log)

    [grant] = server.calls("POST", "/oidc/v1/token")
    assert grant["body"]["grant_type"] == "client_credentials" and grant["body"]["scope"] == "all-apis"
    [issued] = server.oauth_tokens
    api_calls = [r for r in server.requests if r["path"].startswith("/api/")]
    assert api_calls and all(r["headers"]["Authorization"] == f"Bearer {issued}" for r in api_calls)
    assert CLIENT_SECRET not in caplog.text and issued not in caplog.text


def test_the_catalog_is_the_deployments(server):
    """A dev deployment of the bundle publishes to ecomm_dw_dev: selection and queries follow."""
    server.queued.append(Update(["RUNNING", "COMPLETED"], successful_update))
    statements = []
    server.answer_sql = lambda statement: statements.append(statement) or []

    server.engine(catalog="ecomm_dw_dev").refresh(selected("bronze.orders"), ["2026-03-05"], log)

    [start] = data_starts(server)
    assert start["body"] == {"refresh_selection": ["ecomm_dw_dev.bronze.orders"]}
    assert statements and all("FROM ecomm_dw_dev.bronze.orders" in s for s in statements)
    [execute, *_] = server.calls("POST", "/api/2.0/sql/statements")
    assert execute["body"]["catalog"] == "ecomm_dw_dev"


def test_waiting_for_a_busy_pipeline_is_bounded_and_never_stops_the_other_update(server):
    other = server.add_running_update(["RUNNING"])

    with pytest.raises(TimeoutError, match="no update was started"):
        server.engine(timeout_seconds=0.2).refresh(selected("bronze.orders"), ["2026-03-05"], log)

    assert other.state == "RUNNING" and not server.calls("POST", r".*/stop")
    assert not server.calls("POST", r".*/updates")


def test_an_update_that_outlives_the_timeout_is_stopped(server):
    server.queued.append(Update(["WAITING_FOR_RESOURCES", "RUNNING"]))

    started = time.monotonic()
    with pytest.raises(TimeoutError, match="the pipeline was stopped"):
        server.engine(timeout_seconds=0.3).refresh(selected("silver.dim_orders"), ["2026-03-05"], log)

    assert time.monotonic() - started < 5
    [stop] = server.calls("POST", rf"/api/2.0/pipelines/{PIPELINE_ID}/stop")
    assert stop["headers"]["Authorization"] == f"Bearer {TOKEN}"
    [update] = data_updates(server)
    assert update.state == "CANCELED"


@pytest.mark.parametrize("interrupts, raised", [
    (raise_execution_interrupts, DagsterExecutionInterruptedError),  # how Dagster runs an op
    (contextlib.nullcontext, KeyboardInterrupt),  # Python's own SIGINT handler
])
def test_a_terminated_run_stops_its_update(server, interrupts, raised, request):
    """The run is terminated while the update is polled: a real SIGINT reaches the main thread,
    as it does when Dagster terminates a run worker. It is sent after every poll of the data
    update from the second on (a signal that lands while the answer is read may be absorbed on
    the way); once it is taken, the engine polls no more."""
    server.queued.append(Update(["RUNNING"]))
    polls = []

    def interrupt_from_second_poll():
        polls.extend(data_updates(server)[:1])
        if len(polls) >= 2:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    server.on_poll_after_response = interrupt_from_second_poll
    # Python's own handler, as a run worker has: a shell starting the tests in the background
    # (no job control) hands them SIGINT ignored, and Python then leaves it ignored.
    signal_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, signal_handler))

    with pytest.raises(raised), interrupts():
        server.engine(poll_interval_seconds=0.05).refresh(selected("gold.sales_analytics"), [], log)

    [stop] = server.calls("POST", rf"/api/2.0/pipelines/{PIPELINE_ID}/stop")
    assert server.requests.index(stop) > server.requests.index(data_starts(server)[0])
    [update] = data_updates(server)
    assert update.state == "CANCELED"


def test_a_check_is_judged_on_the_table_when_the_events_leave_its_metrics_out(server, tmp_path):
    """silver.source_reconciliation holds a table out of sync with the source, and the update's
    events carry no data_quality: in_sync fails all the same, on the warehouse's count."""
    server.events_carry_data_quality = False
    server.queued.append(Update(["RUNNING", "COMPLETED"], lambda update_id: [
        flow_progress(update_id, "ecomm_dw.silver.source_reconciliation", "COMPLETED",
                      metrics={"num_output_rows": 4},
                      data_quality=data_quality("source_reconciliation", 0, ("in_sync", 4, 0))),
    ]))
    server.answer_sql = lambda statement: (
        [[None, "4", "1"]] if statement.startswith("SELECT CAST(NULL AS STRING), count(*), "
                                                   "count_if(NOT coalesce(silver_rows = source_rows")
        else pytest.fail(f"unexpected statement {statement}"))
    reconciliation = dg.AssetKey(["silver", "source_reconciliation"])

    result = dg.materialize([lakehouse_tables], selection=[reconciliation], partition_key="2026-03-05",
                            resources={"lakehouse": server.engine(), "retries": StepRetries(),
                                       "landing_zone": LocalLandingZone(root=str(tmp_path))})

    [in_sync] = result.get_asset_check_evaluations()
    assert (in_sync.check_name, in_sync.passed) == ("in_sync", False)
    assert in_sync.metadata["table_failed_records"].value == 1
    assert "no metrics" in in_sync.metadata["pipeline_metrics"].value


def test_a_daily_run_sends_the_warehouse_four_statements_whatever_the_tables(server, tmp_path):
    """A daily run of every table of the pipeline, every warn expectation reported failing. The
    warehouse gets one statement for the rows Bronze holds per landed file, one for the samples of
    failing keys, one for every table's expectation counts and one for the quality scores (before,
    one statement per table and kind, and one per failing warn expectation: 42 when the pipeline had
    42 tables). Each table's rows come back tagged with its statement in the UNION ALL, and are
    judged as its own statement's were."""
    tables = [table for table in PIPELINE.values()]
    server.queued.append(Update(["RUNNING", "COMPLETED"], lambda update_id: [
        flow_progress(update_id, f"ecomm_dw.{table.name}", "COMPLETED", metrics={"num_output_rows": 10},
                      data_quality=data_quality(table.name, 0, *[(e.name, 9, 1) for e in table.expectations]))
        for table in tables if table.kind != "view"]))
    landed = f"{LANDING_ROOT}/orders/ingestion_date=2026-03-05/orders__20260305_180000_000000.csv"
    statements = []

    def warehouse(statement: str) -> list[list]:
        """silver.orders holds a row of 2026-03-05 with a bad status (keys 4712 and 4711 are read,
        in that order), silver.star_key_violations a duplicate key; the other tables are empty."""
        statements.append(statement)
        rows = []
        for part in statement.split(" UNION ALL "):
            tagged = re.fullmatch(r"SELECT (\d+) AS _statement, \* FROM \((.*)\) AS _part", part)
            tag, query = ([tagged[1]], tagged[2]) if tagged else ([], part)
            [table] = re.findall(r"FROM (?:ecomm_dw\.)?(\w+\.\w+)", query)
            width = 2 + query.count("count_if(") + query.count("CAST(NULL AS BIGINT)")
            if table == "bronze.orders" and "_source_file" in query:
                rows.append(tag + [landed, "80"])
            elif table == "silver.orders" and "'valid_status'" in query and "WHERE NOT" in query:
                rows += [tag + ["4712"], tag + ["4711"]]
            elif table == "silver.orders" and "count_if(" in query:
                rows.append(tag + ["2026-03-05", "80", "0", "1"] + [None] * (width - 4))
            elif query.startswith("SELECT CAST(NULL AS STRING), count(*)"):  # no GROUP BY: one row
                failed = "1" if table == "silver.star_key_violations" else "0"
                rows.append(tag + [None, failed, failed] + [None] * (width - 3))
            elif query.startswith("SELECT source_table, score FROM silver.data_quality"):
                rows.append(tag + ["orders", "98.5"])
        return rows

    server.answer_sql = warehouse

    result = dg.materialize([lakehouse_tables], partition_key="2026-03-05", raise_on_error=False,
                            resources={"lakehouse": server.engine(), "retries": StepRetries(),
                                       "landing_zone": LocalLandingZone(root=str(tmp_path))})

    assert len(statements) == 4 and len(server.calls("POST", "/api/2.0/sql/statements")) == 4
    rows_by_file, samples, failures, scores = statements
    assert all(f"FROM ecomm_dw.{t.name}" in rows_by_file for t in tables if t.read_files)
    warn = [(t, e) for t in tables for e in t.expectations if e.action == "warn"]
    assert samples.count("WHERE NOT coalesce(") == len(warn)
    assert all(f"FROM {t.name}" in failures for t in tables if t.expectations)
    assert failures.count(" AS _statement, ") == len([t for t in tables if t.expectations])
    assert scores.startswith("SELECT source_table, score FROM silver.data_quality")
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    valid_status = checks["silver/orders", "valid_status"]
    assert not valid_status.passed and valid_status.metadata["partition_failed_records"].value == 1
    assert valid_status.metadata["failed_sample"].value == ["4711", "4712"]
    assert checks["silver/orders", "valid_id"].passed
    assert checks["silver/orders", "valid_id"].metadata["failed_sample"].value == []
    assert not checks["silver/star_key_violations", "unique_keys"].passed
    assert checks["silver/row_accounting", "every_row_accounted"].passed
    assert checks["bronze/orders", "rows_match_manifest"].metadata["read_when_vouched_now_unnamed"].value == [
        "orders/ingestion_date=2026-03-05/orders__20260305_180000_000000.csv"]
    [quality] = [m for m in result.get_asset_materialization_events()
                 if m.asset_key == dg.AssetKey(["silver", "data_quality"])]
    assert quality.materialization.metadata["quality_score_orders"].value == 98.5


def test_dbt_is_refused_while_an_update_writes_gold(server):
    """The metrics of 2026-03-05 while the lakehouse's update of that day is still running: dbt is
    not started, and the run says which update it waits for."""
    writing = server.add_running_update(["RUNNING"] * 1000)
    with dg.instance_for_test() as instance:
        for key in gold_tables():  # Gold's partition landed earlier; an update writes it again now
            instance.report_runless_asset_event(dg.AssetMaterialization(key, partition="2026-03-05"))
        result = dg.materialize(
            [metric_models], partition_key="2026-03-05", instance=instance, raise_on_error=False,
            resources={"lakehouse": server.engine(), "retries": StepRetries(),
                       "dbt": DbtCli(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)})
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert f"Gold is being updated by pipeline update(s) {writing.update_id}" in \
        failure.step_failure_data.error.to_string()


def test_the_dbus_of_the_pipeline_and_the_warehouse_come_from_the_billing_table(server):
    statements = []
    server.answer_sql = lambda statement: statements.append(statement) or (
        [["2026-03-05", "pipeline", "12.5"], ["2026-03-05", "warehouse", "3.25"]]
        if "system.billing.usage" in statement else [])

    assert server.engine().dbu_usage(days=7) == [("2026-03-05", "pipeline", 12.5), ("2026-03-05", "warehouse", 3.25)]
    [statement] = statements
    assert f"usage_metadata.dlt_pipeline_id = '{PIPELINE_ID}'" in statement
    assert f"usage_metadata.warehouse_id = '{WAREHOUSE_ID}'" in statement
    assert "date_sub(current_date(), 7)" in statement
