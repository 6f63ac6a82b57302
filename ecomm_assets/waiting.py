"""Waiting for a lock that another run holds: patiently, audibly, and not forever."""

import time
from collections.abc import Callable

import dagster as dg


def wait_for_lock(take: Callable[[], bool], holder: Callable[[], str], what: str, timeout_seconds: float,
                  log: dg.DagsterLogManager) -> None:
    """Call ``take`` until it gets the lock ``what``. Meanwhile say at INFO, every minute, who holds
    it; after ``timeout_seconds`` give up with an error that names the holder. Every lock waited for
    here goes with its holder's process, so a holder is never a dead run."""
    started, told = time.monotonic(), None
    while not take():
        waited = time.monotonic() - started
        if waited >= timeout_seconds:
            raise TimeoutError(
                f"Gave up after {waited:.0f} s waiting for {what}, held by {holder()}. The lock goes with "
                "its holder's process, so that holder is alive: let it finish or terminate its run.")
        if told is None or time.monotonic() - told >= 60:
            log.info(f"Waiting for {what}, held by {holder()} (waited {waited:.0f} s of at most "
                     f"{timeout_seconds:.0f} s).")
            told = time.monotonic()
        time.sleep(0.2)
