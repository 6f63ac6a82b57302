"""The landing zone: one CSV per source table and ingestion date.

Key layout, identical locally and on S3::

    <root>/ecomm_db_extracts/daily_extracts/<table>/ingestion_date=YYYY-MM-DD/<table>.csv

Writing a partition replaces it whole, and a reader never sees a half-written file.
"""

import io
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import dagster as dg
from dagster_aws.s3 import S3Resource

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


class _MultipartUpload(io.RawIOBase):
    """A write-only stream into one S3 object: parts go up as they fill, memory stays one part."""

    def __init__(self, client: Any, bucket: str, key: str, part_size: int):
        self._client, self._bucket, self._key, self._part_size = client, bucket, key, part_size
        self._upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        self._buffer = bytearray()
        self._parts: list[dict] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._buffer += data
        while len(self._buffer) >= self._part_size:
            self._send(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
        return len(data)

    def _send(self, chunk: bytes) -> None:
        number = len(self._parts) + 1
        response = self._client.upload_part(Bucket=self._bucket, Key=self._key, PartNumber=number,
                                            UploadId=self._upload_id, Body=bytes(chunk))
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def complete(self) -> None:
        if self._buffer or not self._parts:  # the last part may be small, and an empty file is one part
            self._send(self._buffer)
        self._client.complete_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                                               MultipartUpload={"Parts": self._parts})

    def abort(self) -> None:
        self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)


class S3LandingZone(LandingZone):
    """``s3://<bucket>/ecomm_db_extracts/daily_extracts/...``, written with multipart uploads.

    The object appears only when its upload completes, so readers see the old CSV or the new one;
    anything else under the partition's prefix is deleted afterwards.
    """

    bucket: str
    s3: S3Resource
    part_size_bytes: int = 8 << 20  # S3 takes parts of 5 MiB and more, the last one excepted

    @property
    def extracts_root(self) -> str:
        return f"s3://{self.bucket}/{EXTRACTS_PREFIX}"

    @contextmanager
    def replace_partition(self, table: str, ingestion_date: str) -> Iterator[tuple[BinaryIO, str]]:
        client = self.s3.get_client()
        prefix = partition_prefix(table, ingestion_date)
        key = f"{prefix}/{table}.csv"
        upload = _MultipartUpload(client, self.bucket, key, self.part_size_bytes)
        try:
            yield upload, f"s3://{self.bucket}/{key}"
            upload.complete()
        except BaseException:
            upload.abort()
            raise
        listed = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{prefix}/")
        strays = [{"Key": o["Key"]} for page in listed for o in page.get("Contents", []) if o["Key"] != key]
        if strays:
            client.delete_objects(Bucket=self.bucket, Delete={"Objects": strays})
