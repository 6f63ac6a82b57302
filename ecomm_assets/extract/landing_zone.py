"""The landing zone: one CSV per source table and ingestion date.

Key layout, identical locally and on S3::

    <root>/ecomm_db_extracts/daily_extracts/<table>/ingestion_date=YYYY-MM-DD/<table>.csv

Writing a partition replaces it whole, and a reader never sees a half-written file.
"""

import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import dagster as dg

EXTRACTS_PREFIX = "ecomm_db_extracts/daily_extracts"


def partition_prefix(table: str, ingestion_date: str) -> str:
    return f"{EXTRACTS_PREFIX}/{table}/ingestion_date={ingestion_date}"


class LandingZone(dg.ConfigurableResource, ABC):
    """Where the nightly extracts land."""

    @property
    @abstractmethod
    def extracts_root(self) -> str:
        """URI of ``ecomm_db_extracts/daily_extracts``: what the DLT pipeline reads."""

    @abstractmethod
    @contextmanager
    def replace_partition(self, table: str, ingestion_date: str) -> Iterator[tuple[BinaryIO, str]]:
        """Yield a writable binary stream and the URI it becomes; on success it replaces the partition."""


class LocalLandingZone(LandingZone):
    """A folder on this machine with the S3 key layout."""

    root: str

    @property
    def extracts_root(self) -> str:
        return str(Path(self.root).resolve() / EXTRACTS_PREFIX)

    @contextmanager
    def replace_partition(self, table: str, ingestion_date: str) -> Iterator[tuple[BinaryIO, str]]:
        folder = Path(self.root).resolve() / partition_prefix(table, ingestion_date)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{table}.csv"
        # A hidden temporary file (readers skip names starting with "."), renamed over the
        # target in one atomic step once complete.
        handle, staging = tempfile.mkstemp(prefix=f".{table}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(handle, "wb") as out:
                yield out, str(target)
            os.replace(staging, target)
        finally:
            Path(staging).unlink(missing_ok=True)
        for stray in folder.iterdir():
            if stray != target and not stray.name.startswith("."):
                stray.unlink()
