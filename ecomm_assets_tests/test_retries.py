"""Which faults a step is retried after (the steps' retries themselves run in test_reliability.py)."""

import botocore.exceptions
import psycopg
from databricks.sdk.errors import TemporarilyUnavailable, TooManyRequests

from ecomm_assets.retries import is_transient


def test_a_lost_connection_to_any_service_is_transient_and_a_broken_rule_is_not():
    for fault in [psycopg.OperationalError("the database system is starting up"), TimeoutError("lock wait"),
                  botocore.exceptions.EndpointConnectionError(endpoint_url="https://s3.example"),
                  TemporarilyUnavailable("warehouse starting"), TooManyRequests("slow down")]:
        assert is_transient(fault), fault
        wrapped = RuntimeError("the step failed")
        wrapped.__cause__ = fault
        assert is_transient(wrapped), fault  # as Dagster and our engines raise it
    assert not is_transient(ValueError("no partition 2026-02-30"))
    assert not is_transient(psycopg.errors.UndefinedTable("relation orders does not exist"))
