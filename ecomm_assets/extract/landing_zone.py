"""The landing zone: the CSV extracts of ecomm-db and the manifest of each landed folder.

Key layout, identical locally and on S3, under ``<root>/ecomm_db_extracts/daily_extracts/<table>/``::

    ingestion_date=YYYY-MM-DD/<table>__<extract id>.csv          the rows changed in the partition's window
    ingestion_date=YYYY-MM-DD/<table>_deleted__<extract id>.csv  keys gone from ecomm-db since the extract before
    ingestion_date=YYYY-MM-DD/_manifest.json
    key_snapshot/<table>.csv                  every primary key with its updated_at, at the latest extract
    key_snapshot/_manifest.json

The extract id is the UTC time of the extract's snapshot of ecomm-db (``20261202_180711_123456``).
Change files are immutable: a re-extract of a partition writes new files beside the earlier ones,
then the manifest, written last, which names the files of its extract as current (rows, bytes and
sha256 of each) and keeps the entries of the earlier files still in the folder as superseded. A
reader takes only files a manifest names. The key snapshot is a snapshot, not a change: each
extract replaces it under the same name (its manifest is removed first, so a reader never takes
the old manifest for the new file). Anything else in a folder (a file a killed extract left
before its manifest, a temporary file) is removed by the next extract of that folder.

Retention: a file goes only once a later extract of its partition superseded it and Bronze holds
every row of it (Bronze is never reset, so no refresh needs the file again); the lakehouse step
retires such files. Locally they are removed then; on S3 they are tagged, and the bucket's
lifecycle rule (``dlt_notebooks/security/landing_bucket_lifecycle.json``) removes tagged objects
seven days after they landed. Current files and the key snapshot stay.
"""

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import dagster as dg

EXTRACTS_PREFIX = "ecomm_db_extracts/daily_extracts"
MANIFEST = "_manifest.json"


def partition_folder(table: str, ingestion_date: str) -> str:
    return f"{table}/ingestion_date={ingestion_date}"


def key_snapshot_folder(table: str) -> str:
    return f"{table}/key_snapshot"


def extract_id(snapshot_at: datetime) -> str:
    """The name an extract gives its files: the UTC time of its snapshot, to the microsecond (the
    DLT SQL reads it back as ``_extracted_at``)."""
    return snapshot_at.astimezone(UTC).strftime("%Y%m%d_%H%M%S_%f")


def changes_file(table: str, extract: str) -> str:
    return f"{table}__{extract}.csv"


def deleted_keys_file(table: str, extract: str) -> str:
    return f"{table}_deleted__{extract}.csv"


def key_snapshot_file(table: str) -> str:
    return f"{table}.csv"


def named_files(manifest: dict) -> dict[str, dict]:
    """Every file a manifest vouches for, current and superseded: {name: rows, bytes, sha256, ...}."""
    return {**manifest.get("superseded", {}), **manifest["files"]}


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

    def land(self, folder: str, files: dict[str, Callable[[BinaryIO], int]], about: dict) -> dict:
        """Land one extract's ``files`` in ``folder`` (each filled by its writer, which returns its
        row count), then the manifest naming them current; returns the manifest. The files of the
        extract before stay, as superseded, unless a new file takes their name."""
        before = self.read_manifest(folder) or {"files": {}}
        if set(files) & set(named_files(before)):
            self._delete(f"{folder}/{MANIFEST}")  # a name is reused: its old entry must not vouch for the new file
        landed = {}
        for name, write in files.items():
            with self._write_atomically(f"{folder}/{name}") as raw:
                out = _HashingWriter(raw)
                rows = write(out)
            landed[name] = {"rows": rows, "bytes": out.bytes, "sha256": out.sha256}
        superseded = {name: {**entry, "superseded_by": about.get("extract_id")}
                      for name, entry in before["files"].items()} | before.get("superseded", {})
        manifest = {**about, "files": landed,
                    "superseded": {name: entry for name, entry in superseded.items() if name not in landed}}
        self._put(f"{folder}/{MANIFEST}", json.dumps(manifest, indent=2, default=str).encode())
        self._remove_all_but(folder, {*named_files(manifest), MANIFEST})
        return manifest

    def read_manifest(self, folder: str) -> dict | None:
        """The manifest of ``folder``, or None while it has none."""
        found = self._get(f"{folder}/{MANIFEST}")
        return json.loads(found) if found is not None else None

    @abstractmethod
    def retire(self, key: str) -> None:
        """``key`` is superseded and Bronze holds all its rows: let retention remove it."""

    @abstractmethod
    def open(self, key: str) -> AbstractContextManager[BinaryIO | None]:
        """``key`` to read as a stream, or None if there is no such file."""

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

    def retire(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO | None]:
        path = self._path(key)
        if not path.exists():
            yield None
            return
        with path.open("rb") as stream:
            yield stream

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
