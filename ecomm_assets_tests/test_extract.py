"""The nightly extract: the partition's window on updated_at, streamed to the landing zone."""

import csv
import io
import threading

import psycopg
import pytest

from ecomm_assets.extract.landing_zone import LocalLandingZone
from ecomm_assets.partitions import ingestion_date_partitions
from ecomm_assets.source.postgres import SourceDatabase


@pytest.fixture
def customers_at_midnight(postgres):
    """Three customer changes around midnight of 2026-03-02 in Bangkok (17:00 UTC on 03-01)."""
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


def test_a_partition_holds_exactly_the_rows_changed_on_that_bangkok_day(customers_at_midnight):
    window = ingestion_date_partitions.time_window_for_partition_key("2026-03-02")
    out = io.BytesIO()
    rows, size = customers_at_midnight.resource().copy_changed_rows("customers", window.start, window.end, out)

    extracted = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert (rows, size) == (2, len(out.getvalue()))
    assert [r["customer_id"] for r in extracted] == ["2", "3"]
    assert extracted[0]["updated_at"] == "2026-03-01 17:00:00+00"  # written in UTC


def test_the_window_query_is_an_index_range_on_updated_at(customers_at_midnight):
    with customers_at_midnight.resource().connect() as connection:
        connection.execute("SET enable_seqscan = off")
        plan = "\n".join(row[0] for row in connection.execute(
            "EXPLAIN SELECT * FROM customers WHERE updated_at >= %s AND updated_at < %s",
            ("2026-03-02 00:00+07", "2026-03-03 00:00+07")).fetchall())
    assert "customers_updated_at" in plan


def test_an_unknown_table_is_refused(postgres):
    with pytest.raises(ValueError, match="unknown source table 'payments'"):
        postgres.resource().copy_changed_rows("payments", None, None, io.BytesIO())


def test_rewriting_a_partition_replaces_it_whole_and_a_failed_write_keeps_the_old_one(tmp_path):
    zone = LocalLandingZone(root=str(tmp_path))
    with zone.replace_partition("orders", "2026-03-02") as (out, uri):
        out.write(b"order_id\n1\n2\n")
    folder = tmp_path / "ecomm_db_extracts/daily_extracts/orders/ingestion_date=2026-03-02"
    assert uri == str(folder / "orders.csv")
    (folder / "stray.csv").write_text("left by hand")

    with pytest.raises(RuntimeError), zone.replace_partition("orders", "2026-03-02") as (out, _):
        out.write(b"order_id\n3\n")
        raise RuntimeError("connection lost mid-extract")
    assert (folder / "orders.csv").read_bytes() == b"order_id\n1\n2\n"

    with zone.replace_partition("orders", "2026-03-02") as (out, _):
        out.write(b"order_id\n3\n")
    assert [p.name for p in folder.iterdir()] == ["orders.csv"]
    assert (folder / "orders.csv").read_bytes() == b"order_id\n3\n"


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
    with pytest.raises(psycopg.OperationalError, match="(?i)ssl"):
        with insisting.connect():
            pass


def test_a_dsn_wins_over_the_fields(postgres):
    via_dsn = SourceDatabase(dsn=f"postgresql://{postgres.user}@127.0.0.1:{postgres.port}/{postgres.dbname}?sslmode=disable",
                             host="no-such-host.invalid")
    with via_dsn.connect() as connection:
        assert connection.execute("SELECT current_database()").fetchone() == (postgres.dbname,)
