"""The nightly extract: one consistent snapshot of ecomm-db, streamed to the landing zone with a
manifest."""

import csv
import io
import json
import logging
import threading
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest

from ecomm_assets import environment
from ecomm_assets.extract.assets import landing_extracts
from ecomm_assets.extract.landing_zone import LocalLandingZone, partition_folder
from ecomm_assets.partitions import ingestion_date_partitions
from ecomm_assets.retries import StepRetries
from ecomm_assets.source.postgres import SourceDatabase

log = logging.getLogger("test_extract")
MIDNIGHT = datetime.fromisoformat("2026-03-03 00:00+07:00")


@pytest.fixture
def customers_at_midnight(postgres):
    """Four customer changes around midnight of 2026-03-02 in Bangkok (17:00 UTC on 03-01)."""
    postgres.create_source_schema()
    with postgres.resource().connect() as connection:
        for customer_id, updated_at in [(1, "2026-03-01 23:59:59.999999+07"),
                                        (2, "2026-03-02 00:00:00+07"),
                                        (3, "2026-03-02 23:59:59.999999+07"),
                                        (4, "2026-03-03 00:00:00+07")]:
            connection.execute(
                "INSERT INTO customers VALUES (%s, 'A', 'B', 'a@b.c', 'Bangkok', 'Thailand', %s, %s)",
                (customer_id, updated_at, updated_at))
    return postgres


def extract(server, query):
    """Run ``query(snapshot, out)`` in a snapshot of ``server``; the CSV it wrote, as dicts."""
    out = io.BytesIO()
    with server.resource().snapshot(log, holder="test") as snapshot:
        rows = query(snapshot, out)
    extracted = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert rows == len(extracted)
    return extracted


def test_a_partition_holds_exactly_the_rows_changed_on_that_bangkok_day(customers_at_midnight):
    window = ingestion_date_partitions.time_window_for_partition_key("2026-03-02")
    extracted = extract(customers_at_midnight,
                        lambda snapshot, out: snapshot.copy_changed_rows("customers", window.start, window.end, out))
    assert [r["customer_id"] for r in extracted] == ["2", "3"]
    assert extracted[0]["updated_at"] == "2026-03-01 17:00:00+00"  # written in UTC


def test_the_key_snapshot_holds_every_key_and_only_the_versions_due(customers_at_midnight):
    extracted = extract(customers_at_midnight,
                        lambda snapshot, out: snapshot.copy_key_versions("customers", MIDNIGHT, out))
    assert [(r["customer_id"], r["updated_at"]) for r in extracted] == [
        ("1", "2026-03-01 16:59:59.999999+00"), ("2", "2026-03-01 17:00:00+00"),
        ("3", "2026-03-02 16:59:59.999999+00"), ("4", "")]  # changed at the window's end: not due yet


def test_the_window_query_is_an_index_range_on_updated_at(customers_at_midnight):
    with customers_at_midnight.resource().connect() as connection:
        connection.execute("SET enable_seqscan = off")
        plan = "\n".join(row[0] for row in connection.execute(
            "EXPLAIN SELECT * FROM customers WHERE updated_at >= %s AND updated_at < %s",
            ("2026-03-02 00:00+07", "2026-03-03 00:00+07")).fetchall())
    assert "customers_updated_at" in plan


def test_a_commit_during_the_extract_is_in_none_of_its_reads(customers_at_midnight):
    window = ingestion_date_partitions.time_window_for_partition_key("2026-03-02")
    with customers_at_midnight.resource().snapshot(log, holder="test") as snapshot:
        before = io.BytesIO()
        snapshot.copy_changed_rows("customers", window.start, window.end, before)
        with customers_at_midnight.resource().connect() as writer:
            writer.execute("INSERT INTO customers VALUES (5, 'C', 'D', 'c@d.e', 'Hanoi', 'Vietnam', "
                           "'2026-03-02 12:00+07', '2026-03-02 12:00+07')")
        after, keys = io.BytesIO(), io.BytesIO()
        snapshot.copy_changed_rows("customers", window.start, window.end, after)
        snapshot.copy_key_versions("customers", MIDNIGHT, keys)
    assert before.getvalue() == after.getvalue()
    assert b"\n5," not in keys.getvalue()


def test_an_extract_waits_for_the_one_before_it_and_says_which_run_holds_the_lock(postgres, caplog):
    source = postgres.resource().model_copy(update={"lock_timeout_seconds": 2})
    with source.snapshot(log, holder="run-A"):
        with caplog.at_level(logging.INFO), pytest.raises(TimeoutError) as waited:
            with source.snapshot(log, holder="run-B"):
                pass
    assert "ecomm_data_pipeline run run-A" in str(waited.value)
    assert "ecomm_data_pipeline run run-A" in caplog.text and "another extract is running" in caplog.text
    with source.snapshot(log, holder="run-B"):  # the lock went with the first snapshot
        pass


def test_an_unknown_table_is_refused(postgres):
    with pytest.raises(ValueError, match="unknown source table 'payments'"):
        extract(postgres, lambda snapshot, out: snapshot.copy_changed_rows("payments", None, None, out))


def writing(*lines: bytes):
    def write(out):
        out.write(b"".join(lines))
        return len(lines) - 1
    return write


def broken(out):
    out.write(b"order_id\n3\n")
    raise RuntimeError("connection lost mid-extract")


def test_an_extract_lands_new_files_beside_the_earlier_ones_and_a_failed_one_changes_nothing(tmp_path):
    zone = LocalLandingZone(root=str(tmp_path))
    folder = tmp_path / "ecomm_db_extracts/daily_extracts/orders/ingestion_date=2026-03-02"

    first = zone.land("orders/ingestion_date=2026-03-02", {"orders__A.csv": writing(b"order_id\n", b"1\n", b"2\n")},
                      {"extract_id": "A"})
    assert first["files"] == {"orders__A.csv": {"rows": 2, "bytes": 13, "sha256": first["files"]["orders__A.csv"]["sha256"]}}
    assert json.loads((folder / "_manifest.json").read_text()) == first
    (folder / "stray.csv").write_text("left by hand")
    (folder / ".orders__B.csv.tmp").write_text("left by a killed extract")

    with pytest.raises(RuntimeError):
        zone.land("orders/ingestion_date=2026-03-02", {"orders__B.csv": broken}, {"extract_id": "B"})
    assert json.loads((folder / "_manifest.json").read_text()) == first  # still vouches for the first extract
    assert not (folder / "orders__B.csv").exists()

    second = zone.land("orders/ingestion_date=2026-03-02", {"orders__C.csv": writing(b"order_id\n", b"3\n")},
                       {"extract_id": "C"})
    assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json", "orders__A.csv", "orders__C.csv"]
    assert (folder / "orders__A.csv").read_bytes() == b"order_id\n1\n2\n"  # never rewritten
    assert list(second["files"]) == ["orders__C.csv"]
    assert second["superseded"] == {"orders__A.csv": {**first["files"]["orders__A.csv"], "superseded_by": "C"}}


def test_a_snapshot_landed_under_the_same_name_replaces_it_and_a_failed_one_is_not_vouched_for(tmp_path):
    zone = LocalLandingZone(root=str(tmp_path))
    folder = tmp_path / "ecomm_db_extracts/daily_extracts/orders/key_snapshot"
    zone.land("orders/key_snapshot", {"orders.csv": writing(b"order_id\n", b"1\n")}, {})

    with pytest.raises(RuntimeError):
        zone.land("orders/key_snapshot", {"orders.csv": broken}, {})
    assert (folder / "orders.csv").read_bytes() == b"order_id\n1\n"
    assert not (folder / "_manifest.json").exists()  # the old file stays, but is no longer vouched for

    manifest = zone.land("orders/key_snapshot", {"orders.csv": writing(b"order_id\n", b"3\n")}, {})
    assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json", "orders.csv"]
    assert manifest["files"]["orders.csv"]["rows"] == 1 and manifest["superseded"] == {}


def test_connecting_retries_while_the_server_comes_back(postgres):
    postgres.stop()
    restart = threading.Timer(0.3, postgres.start)
    restart.start()
    try:
        with postgres.resource().connect() as connection:  # attempt 1 is refused, then 1 s backoff
            assert connection.execute("SELECT 1").fetchone() == (1,)
    finally:
        restart.join()


def test_sslmode_is_honoured(postgres):
    # The embedded server speaks no TLS, so a client that insists on it must be refused.
    insisting = postgres.resource().model_copy(update={"sslmode": "require", "connect_attempts": 1})
    with pytest.raises(dg.Failure, match="(?i)ssl"), insisting.connect():
        pass


def test_a_server_that_is_down_is_one_line_saying_what_to_do(postgres):
    postgres.stop()
    try:
        with pytest.raises(dg.Failure) as failure, postgres.resource().model_copy(
                update={"connect_attempts": 1}).connect():
            pass
    finally:
        postgres.start()
    assert failure.value.description.count("\n") == 0
    assert "Connection refused" in failure.value.description
    assert "start it with `python -m ecomm_assets.local_stack up`" in failure.value.description


def test_a_dsn_wins_over_the_fields(postgres):
    via_dsn = SourceDatabase(dsn=f"postgresql://{postgres.user}@127.0.0.1:{postgres.port}/{postgres.dbname}?sslmode=disable",
                             host="no-such-host.invalid")
    with via_dsn.connect() as connection:
        assert connection.execute("SELECT current_database()").fetchone() == (postgres.dbname,)


def test_the_extract_lands_deleted_keys_future_dated_rows_and_an_initial_load(customers_at_midnight, tmp_path):
    """What only an extract can see lands with its last partition: the keys gone since the key
    snapshot of the extract before, and the rows dated after its own snapshot (a clock ahead). The
    first partition is the initial load: it also holds every row changed before its window."""
    zone = LocalLandingZone(root=str(tmp_path))
    resources = {"source_db": customers_at_midnight.resource(), "landing_zone": zone, "retries": StepRetries()}
    customers = dg.AssetKey(["landing", "customers"])

    def extract(day: str) -> dict[str, list[dict]]:
        dg.materialize([landing_extracts], partition_key=day, resources=resources, selection=[customers])
        folder = partition_folder("customers", day)
        manifest = zone.read_manifest(folder)
        return {name.split("__")[0]: list(csv.DictReader(io.StringIO(
                    (Path(zone.extracts_root) / folder / name).read_text()))) for name in manifest["files"]}

    first = ingestion_date_partitions.get_first_partition_key()
    with customers_at_midnight.resource().connect() as connection:
        connection.execute("INSERT INTO customers VALUES (5, 'E', 'F', 'e@f.g', 'Hanoi', 'Vietnam', "
                           "'2024-06-01 12:00+07', '2024-06-01 12:00+07')")
    initial = extract(first)
    assert [row["customer_id"] for row in initial["customers"]] == ["5"]  # everything before the first day
    assert initial["customers_deleted"] == []  # no extract before it

    with customers_at_midnight.resource().connect() as connection:
        connection.execute("DELETE FROM customers WHERE customer_id IN (1, 5)")
        connection.execute("INSERT INTO customers VALUES (6, 'G', 'H', 'g@h.i', 'Hanoi', 'Vietnam', "
                           "now() + interval '3 days', now() + interval '3 days')")
    landed = extract("2026-03-02")

    assert [row["customer_id"] for row in landed["customers"]] == ["2", "3", "6"]  # 6: dated after the snapshot
    assert [row["customer_id"] for row in landed["customers_deleted"]] == ["1", "5"]  # in the first key snapshot
    snapshot_at = datetime.fromisoformat(zone.read_manifest(partition_folder("customers", "2026-03-02"))["snapshot_at"])
    assert {(row["_deleted"], datetime.fromisoformat(row["updated_at"])) for row in landed["customers_deleted"]} == {
        ("t", snapshot_at)}  # when the extract saw them gone


def test_locally_ecomm_db_can_be_ones_own_postgresql(postgres, monkeypatch, tmp_path):
    """ECOMM_PG_DSN points the local code location's source at another PostgreSQL; the embedded
    server (ECOMM_PG_PORT) keeps the Dagster instance and ecomm_ops."""
    monkeypatch.delenv("ECOMM_ENV", raising=False)
    monkeypatch.setenv("ECOMM_HOME", str(tmp_path))
    monkeypatch.setenv("ECOMM_PG_PORT", "1")  # the embedded server's port: not the source's
    monkeypatch.setenv("ECOMM_PG_DSN", f"postgresql://{postgres.user}@127.0.0.1:{postgres.port}/{postgres.dbname}")
    resources = environment.resources()
    with dg.build_resources({"source_db": resources["source_db"]}) as built, built.source_db.connect() as connection:
        assert connection.execute("SELECT current_database(), inet_server_port()").fetchone() == (
            postgres.dbname, postgres.port)
    assert "port=1 " in resources["ops_metrics"].conninfo
