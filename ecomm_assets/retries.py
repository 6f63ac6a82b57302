"""Retrying a step after a transient fault: a database restarting, a connection reset, a lock
that another run holds for longer than its timeout. Every step is safe to repeat (an extract lands
new files, a refresh is one transaction, dbt rebuilds its tables), so the step is run again, a
bounded number of times, with exponential backoff. Any other error fails the step at once: a rule
that failed fails again."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
import requests


def transient_faults() -> tuple[type[BaseException], ...]:
    """The kinds of fault worth a retry. The cloud clients' own are named only once a client is
    loaded (in production): importing them would cost every local start-up about a second."""
    faults = [
        ConnectionError, TimeoutError,  # sockets; a lock wait that gave up (waiting.py)
        psycopg.OperationalError,  # ecomm-db unreachable or restarted
        requests.exceptions.ConnectionError,  # Databricks, Tableau
    ]
    if "botocore" in sys.modules:  # S3
        from botocore.exceptions import ConnectionError as S3ConnectionError
        faults.append(S3ConnectionError)
    if "databricks.sdk" in sys.modules:
        from databricks.sdk.errors import DeadlineExceeded, TemporarilyUnavailable, TooManyRequests
        faults += [TemporarilyUnavailable, TooManyRequests, DeadlineExceeded]
    return tuple(faults)


def is_transient(fault: BaseException | None) -> bool:
    """The fault, or one that caused it, is transient."""
    faults = transient_faults()
    while fault is not None:
        if isinstance(fault, faults):
            return True
        fault = fault.__cause__
    return False


class StepRetries(dg.ConfigurableResource):
    """How the extract, lakehouse and dbt steps are retried after a transient fault: up to
    ``max_retries`` times, the n-th after ``first_delay_seconds * 2 ** (n - 1)`` seconds."""

    max_retries: int = 3
    first_delay_seconds: float = 30

    @contextmanager
    def on_transient_fault(self, context: dg.AssetExecutionContext) -> Iterator[None]:
        try:
            yield
        except Exception as fault:
            if not is_transient(fault) or context.retry_number >= self.max_retries:
                raise
            delay = self.first_delay_seconds * 2 ** context.retry_number
            context.log.warning(f"Transient fault, retry {context.retry_number + 1} of {self.max_retries} "
                                f"in {delay:.0f} s: {type(fault).__name__}: {fault}")
            raise dg.RetryRequested(max_retries=self.max_retries, seconds_to_wait=delay) from fault
