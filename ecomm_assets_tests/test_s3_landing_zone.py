"""The S3 landing zone against a real S3 protocol peer: moto's server on 127.0.0.1, real boto3."""

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from conftest import DAYS, source_rows
from ecomm_assets.extract.assets import landing_extracts
from ecomm_assets.extract.s3_landing_zone import S3LandingZone

BUCKET = "ecomm-landing"
MiB = 1 << 20


@pytest.fixture
def landing(s3_endpoint, monkeypatch) -> S3LandingZone:
    s3 = S3Resource(endpoint_url=s3_endpoint, region_name="us-east-1",
                    aws_access_key_id="test-key", aws_secret_access_key="test-secret")
    client = s3.get_client()
    if BUCKET in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        keys = [{"Key": o["Key"]} for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})
    else:
        client.create_bucket(Bucket=BUCKET)
    return S3LandingZone(bucket=BUCKET, s3=s3, part_size_bytes=5 * MiB)


def objects(landing: S3LandingZone) -> dict[str, bytes]:
    client = landing.s3.get_client()
    listed = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def test_a_partition_larger_than_a_part_streams_up_in_parts(landing):
    line = b"1,2,3,4,5,6,7,8,9,0\n"
    with landing.replace_partition("order_items", "2026-03-02") as (out, uri):
        for _ in range(12 * MiB // len(line)):  # 12 MiB in small writes: three 5 MiB parts at most
            out.write(line)
    key = "ecomm_db_extracts/daily_extracts/order_items/ingestion_date=2026-03-02/order_items.csv"
    assert uri == f"s3://{BUCKET}/{key}"
    head = landing.s3.get_client().head_object(Bucket=BUCKET, Key=key, PartNumber=1)
    assert head["PartsCount"] == 3
    assert objects(landing)[key] == line * (12 * MiB // len(line))


def test_a_failed_upload_leaves_the_old_partition_and_no_pending_upload(landing):
    with landing.replace_partition("orders", "2026-03-02") as (out, _):
        out.write(b"order_id\n1\n")
    with pytest.raises(ConnectionError), landing.replace_partition("orders", "2026-03-02") as (out, _):
        out.write(b"order_id\n2\n")
        raise ConnectionError("source went away")
    assert list(objects(landing).values()) == [b"order_id\n1\n"]
    assert landing.s3.get_client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_the_extract_lands_one_object_per_partition_and_rerunning_replaces_it(shop, landing):
    stray = "ecomm_db_extracts/daily_extracts/orders/ingestion_date=2026-03-02/part-0001.csv"
    landing.s3.get_client().put_object(Bucket=BUCKET, Key=stray, Body=b"left over")
    resources = {"source_db": shop.resource(), "landing_zone": landing}

    for _ in range(2):
        result = dg.materialize([landing_extracts], partition_key=DAYS[1], resources=resources,
                                selection=[dg.AssetKey(["landing", "orders"])])

    key = "ecomm_db_extracts/daily_extracts/orders/ingestion_date=2026-03-02/orders.csv"
    assert list(objects(landing)) == [key]
    [(changed_that_day,)] = source_rows(shop, """SELECT count(*) FROM orders
        WHERE updated_at >= '2026-03-02 00:00+07' AND updated_at < '2026-03-03 00:00+07'""")
    assert objects(landing)[key].count(b"\n") == changed_that_day + 1  # and the header
    [materialization] = result.asset_materializations_for_node("landing_extracts")
    assert materialization.metadata["path"].value == f"s3://{BUCKET}/{key}"
    assert materialization.metadata["dagster/row_count"].value == changed_that_day
