"""The landing zone: the CSV extracts of ecomm-db and the manifest of each landed folder.

Key layout, identical locally and on S3, under ``<root>/ecomm_db_extracts/daily_extracts/<table>/``::

    ingestion_date=YYYY-MM-DD/<table>.csv     the rows changed in the partition's window
    ingestion_date=YYYY-MM-DD/_manifest.json
    key_snapshot/<table>.csv                  every primary key with its updated_at, at the latest extract
    key_snapshot/_manifest.json

Landing a folder removes its manifest first, replaces the file atomically (a reader sees the old
file or the new one), then writes the manifest (rows, bytes and sha256 of the file, and what the
extract was) and removes anything else in the folder, stale temporary files of killed extracts
included. A folder whose file does not match its manifest, or has none, is never ingested.
"""

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO

import dagster as dg

EXTRACTS_PREFIX = "ecomm_db_extracts/daily_extracts"
MANIFEST = "_manifest.json"


def partition_folder(table: str, ingestion_date: str) -> str:
    return f"{table}/ingestion_date={ingestion_date}"


def key_snapshot_folder(table: str) -> str:
    return f"{table}/key_snapshot"


def data_file(table: str) -> str:
    return f"{table}.csv"


class _HashingWriter:
    """Counts and hashes what goes through to ``out``."""

    def __init__(self, out: BinaryIO):
        self._out, self._sha256, self.bytes = out, hashlib.sha256(), 0

    def write(self, data) -> int:
        self._sha256.update(data)
        self.bytes += len(data)
        return self._out.write(data)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()


class LandingZone(dg.ConfigurableResource, ABC):
    """Where the nightly extracts land. ``folder`` arguments are relative to ``extracts_root``."""

    @property
    @abstractmethod
    def extracts_root(self) -> str:
        """URI of ``ecomm_db_extracts/daily_extracts``: what the DLT pipeline reads."""

    def land(self, folder: str, file_name: str, write: Callable[[BinaryIO], int], about: dict) -> dict:
        """Replace ``folder`` with one file, filled by ``write`` (which returns its row count), and
        the file's manifest; returns the manifest."""
        self._delete(f"{folder}/{MANIFEST}")
        with self._write_atomically(f"{folder}/{file_name}") as raw:
            out = _HashingWriter(raw)
            rows = write(out)
        manifest = {**about, "files": {file_name: {"rows": rows, "bytes": out.bytes, "sha256": out.sha256}}}
        self._put(f"{folder}/{MANIFEST}", json.dumps(manifest, indent=2, default=str).encode())
        self._remove_all_but(folder, {file_name, MANIFEST})
        return manifest

    def read_manifest(self, folder: str) -> dict | None:
        """The manifest of ``folder``, or None while it has none."""
        found = self._get(f"{folder}/{MANIFEST}")
        return json.loads(found) if found is not None else None

    @abstractmethod
    def uri(self, key: str) -> str:
        """The URI of ``key``."""

    @abstractmethod
    def _write_atomically(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A stream whose content becomes ``key`` in one step when the context exits cleanly."""

    @abstractmethod
    def _put(self, key: str, content: bytes) -> None: ...

    @abstractmethod
    def _get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def _remove_all_but(self, folder: str, keep: set[str]) -> None:
        """Remove what ``folder`` holds besides ``keep``, unfinished writes included."""


class LocalLandingZone(LandingZone):
    """A folder on this machine with the S3 key layout."""

    root: str

    @property
    def extracts_root(self) -> str:
        return str(Path(self.root).resolve() / EXTRACTS_PREFIX)

    def _path(self, key: str) -> Path:
        return Path(self.extracts_root) / key

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def _write_atomically(self, key: str) -> AbstractContextManager[BinaryIO]:
        return _atomic_file(self._path(key))

    def _put(self, key: str, content: bytes) -> None:
        with self._write_atomically(key) as out:
            out.write(content)

    def _get(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.exists() else None

    def _delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def _remove_all_but(self, folder: str, keep: set[str]) -> None:
        # Extracts hold ecomm-db's extract lock while they write, so nothing else in the folder is
        # still being written: hidden temporary files here were left by killed extracts.
        for stray in self._path(folder).iterdir():
            if stray.name not in keep:
                stray.unlink()


@contextmanager
def _atomic_file(target: Path) -> Iterator[BinaryIO]:
    """Write to a hidden temporary file beside ``target`` (readers skip names starting with "."),
    renamed over it in one step on success and removed on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp")
    try:
        with staging.open("wb") as out:
            yield out
        staging.replace(target)
    finally:
        staging.unlink(missing_ok=True)
