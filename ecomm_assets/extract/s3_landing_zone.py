"""The landing zone on S3: ``s3://<bucket>/ecomm_db_extracts/daily_extracts/...``."""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from ecomm_assets.extract.landing_zone import EXTRACTS_PREFIX, LandingZone

# The object tag the bucket's lifecycle rule expires (dlt_notebooks/security/landing_bucket_lifecycle.json).
RETIREMENT_TAG = "ecomm-retention"


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

    An object appears only when its upload completes: a reader never sees half a file.
    """

    bucket: str
    s3: S3Resource
    part_size_bytes: int = 8 << 20  # S3 takes parts of 5 MiB and more, the last one excepted
    _client: Any = PrivateAttr(default=None)

    def client(self) -> Any:
        """The boto3 S3 client of this resource, made on first use: ``S3Resource.get_client()``
        builds a new boto3 session each call, which costs more than most of the calls here."""
        if self._client is None:
            self._client = self.s3.get_client()
        return self._client

    @property
    def extracts_root(self) -> str:
        return f"s3://{self.bucket}/{EXTRACTS_PREFIX}"

    def uri(self, key: str) -> str:
        return f"{self.extracts_root}/{key}"

    @contextmanager
    def _write_atomically(self, key: str) -> Iterator[BinaryIO]:
        upload = _MultipartUpload(self.client(), self.bucket, f"{EXTRACTS_PREFIX}/{key}",
                                  self.part_size_bytes)
        try:
            yield upload
            upload.complete()
        except BaseException:
            upload.abort()
            raise

    def _put(self, key: str, content: bytes) -> None:
        self.client().put_object(Bucket=self.bucket, Key=f"{EXTRACTS_PREFIX}/{key}", Body=content)

    def _get(self, key: str) -> bytes | None:
        client = self.client()
        try:
            return client.get_object(Bucket=self.bucket, Key=f"{EXTRACTS_PREFIX}/{key}")["Body"].read()
        except client.exceptions.NoSuchKey:
            return None

    def retire(self, key: str) -> None:
        self.client().put_object_tagging(
            Bucket=self.bucket, Key=f"{EXTRACTS_PREFIX}/{key}",
            Tagging={"TagSet": [{"Key": RETIREMENT_TAG, "Value": "superseded-and-ingested"}]})

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO | None]:
        client = self.client()
        try:
            body = client.get_object(Bucket=self.bucket, Key=f"{EXTRACTS_PREFIX}/{key}")["Body"]
        except client.exceptions.NoSuchKey:
            yield None
            return
        with body:
            yield body

    def _delete(self, key: str) -> None:
        self.client().delete_object(Bucket=self.bucket, Key=f"{EXTRACTS_PREFIX}/{key}")

    def _remove_all_but(self, folder: str, keep: set[str]) -> None:
        # Extracts hold ecomm-db's extract lock while they write: an unfinished upload here was
        # left by a killed extract.
        client, prefix = self.client(), f"{EXTRACTS_PREFIX}/{folder}/"
        kept = {prefix + name for name in keep}
        listed = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        strays = [{"Key": o["Key"]} for page in listed for o in page.get("Contents", []) if o["Key"] not in kept]
        if strays:
            client.delete_objects(Bucket=self.bucket, Delete={"Objects": strays})
        uploads = client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix)
        for upload in (u for page in uploads for u in page.get("Uploads", [])):
            client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
