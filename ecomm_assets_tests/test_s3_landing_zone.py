"""The S3 landing zone against a real S3 protocol peer: moto's server on 127.0.0.1, real boto3."""

import json

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource
from support import DAYS, source_rows

from ecomm_assets import REPO_ROOT
from ecomm_assets.extract.assets import landing_extracts
from ecomm_assets.extract.s3_landing_zone import S3LandingZone
from ecomm_assets.retries import StepRetries

BUCKET = "ecomm-landing"
MiB = 1 << 20
SECURITY = REPO_ROOT / "dlt_notebooks" / "security"
# The IAM action each S3 operation needs (AWS Service Authorization Reference, Amazon S3), and the
# KMS actions the action needs under a bucket default KMS key: a multipart upload decrypts the
# data key to put its parts together, a read decrypts it.
IAM_ACTION = {"PutObject": "s3:PutObject", "CreateMultipartUpload": "s3:PutObject", "UploadPart": "s3:PutObject",
              "CompleteMultipartUpload": "s3:PutObject", "AbortMultipartUpload": "s3:AbortMultipartUpload",
              "GetObject": "s3:GetObject", "HeadObject": "s3:GetObject", "DeleteObject": "s3:DeleteObject",
              "DeleteObjects": "s3:DeleteObject", "PutObjectTagging": "s3:PutObjectTagging",
              "ListObjectsV2": "s3:ListBucket", "ListMultipartUploads": "s3:ListBucketMultipartUploads"}
BUCKET_ACTIONS = {"s3:ListBucket", "s3:ListBucketMultipartUploads"}
KMS_ACTIONS = {"s3:PutObject": {"kms:GenerateDataKey", "kms:Decrypt"}, "s3:GetObject": {"kms:Decrypt"}}


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


PARTITION = "ecomm_db_extracts/daily_extracts/orders/ingestion_date=2026-03-02"


def writing(content: bytes):
    def write(out):
        out.write(content)
        return content.count(b"\n") - 1
    return write


def test_a_partition_larger_than_a_part_streams_up_in_parts(landing):
    line = b"1,2,3,4,5,6,7,8,9,0\n"
    lines = 12 * MiB // len(line)  # 12 MiB in small writes: three 5 MiB parts at most

    def write(out):
        for _ in range(lines):
            out.write(line)
        return lines

    manifest = landing.land("order_items/ingestion_date=2026-03-02", {"order_items__A.csv": write}, {})
    key = "ecomm_db_extracts/daily_extracts/order_items/ingestion_date=2026-03-02/order_items__A.csv"
    head = landing.s3.get_client().head_object(Bucket=BUCKET, Key=key, PartNumber=1)
    assert head["PartsCount"] == 3
    assert objects(landing)[key] == line * lines
    assert manifest["files"]["order_items__A.csv"]["bytes"] == len(line) * lines
    assert landing.read_manifest("order_items/ingestion_date=2026-03-02") == manifest


def test_a_failed_upload_leaves_the_earlier_extract_vouched_for_and_no_pending_upload(landing):
    first = landing.land("orders/ingestion_date=2026-03-02", {"orders__A.csv": writing(b"order_id\n1\n")}, {})

    def broken(out):
        out.write(b"order_id\n2\n")
        raise ConnectionError("source went away")

    with pytest.raises(ConnectionError):
        landing.land("orders/ingestion_date=2026-03-02", {"orders__B.csv": broken}, {})
    assert sorted(objects(landing)) == [f"{PARTITION}/_manifest.json", f"{PARTITION}/orders__A.csv"]
    assert landing.read_manifest("orders/ingestion_date=2026-03-02") == first
    assert landing.s3.get_client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_the_next_extract_aborts_the_upload_a_killed_one_left(landing):
    client = landing.s3.get_client()
    client.create_multipart_upload(Bucket=BUCKET, Key=f"{PARTITION}/orders__A.csv")  # killed mid-upload
    landing.land("orders/ingestion_date=2026-03-02", {"orders__B.csv": writing(b"order_id\n1\n")}, {})
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert sorted(objects(landing)) == [f"{PARTITION}/_manifest.json", f"{PARTITION}/orders__B.csv"]


def test_the_bucket_lifecycle_rules_clear_unfinished_uploads_and_retired_extracts(landing):
    """The parts of an upload no extract completed or aborted (a killed run on the last day of a
    backfill) cost storage until removed; an extract that a later one superseded and that Bronze
    has read in full is retired (tagged) and expires a week after it landed. S3 takes the rules."""
    rules = json.loads((REPO_ROOT / "dlt_notebooks/security/landing_bucket_lifecycle.json").read_text())
    client = landing.s3.get_client()
    client.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration=rules)
    uploads, retired = client.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert uploads["Status"] == "Enabled" and uploads["Filter"] == {"Prefix": "ecomm_db_extracts/"}
    assert uploads["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert retired["Expiration"] == {"Days": 7}
    [tag] = retired["Filter"]["And"]["Tags"]

    landing.land("orders/ingestion_date=2026-03-02", {"orders__A.csv": writing(b"order_id\n1\n")}, {})
    landing.retire("orders/ingestion_date=2026-03-02/orders__A.csv")
    assert client.get_object_tagging(Bucket=BUCKET, Key=f"{PARTITION}/orders__A.csv")["TagSet"] == [tag]


def test_each_extract_lands_new_objects_and_never_rewrites_one(shop, landing):
    stray = f"{PARTITION}/part-0001.csv"
    landing.s3.get_client().put_object(Bucket=BUCKET, Key=stray, Body=b"left over")
    resources = {"source_db": shop.resource(), "landing_zone": landing, "retries": StepRetries()}

    results = [dg.materialize([landing_extracts], partition_key=DAYS[1], resources=resources,
                              selection=[dg.AssetKey(["landing", "orders"])]) for _ in range(2)]

    extracts = [r.asset_materializations_for_node("landing_extracts")[0].metadata["extract_id"].value for r in results]
    files = [f"{PARTITION}/{name}" for extract in extracts for name in (f"orders__{extract}.csv",
                                                                          f"orders_deleted__{extract}.csv")]
    snapshot = "ecomm_db_extracts/daily_extracts/orders/key_snapshot"
    landed = objects(landing)
    assert sorted(landed) == sorted([f"{PARTITION}/_manifest.json", *files,
                                     f"{snapshot}/_manifest.json", f"{snapshot}/orders.csv"])
    [(changed_in_window,)] = source_rows(shop, """SELECT count(*) FROM orders
        WHERE updated_at >= '2026-03-01 00:00+07' AND updated_at < '2026-03-03 00:00+07'""")
    assert landed[files[0]] == landed[files[2]]  # the same rows, twice: nothing changed in between
    assert landed[files[2]].count(b"\n") == changed_in_window + 1  # and the header
    manifest = json.loads(landed[f"{PARTITION}/_manifest.json"])
    names = [key.rsplit("/", 1)[1] for key in files]
    assert sorted(manifest["files"]) == sorted(names[2:]) and sorted(manifest["superseded"]) == sorted(names[:2])
    [(orders,)] = source_rows(shop, "SELECT count(*) FROM orders")
    assert landed[f"{snapshot}/orders.csv"].count(b"\n") == orders + 1
    [materialization] = results[-1].asset_materializations_for_node("landing_extracts")
    assert materialization.metadata["path"].value == f"s3://{BUCKET}/ecomm_db_extracts/daily_extracts/orders"
    assert materialization.metadata["dagster/row_count"].value == changed_in_window


def granted(policy_file: str, role: str) -> dict[str, list[dict]]:
    """The Allow statements of a policy for ``role``, by action."""
    statements = json.loads((SECURITY / policy_file).read_text())["Statement"]
    by_action = {}
    for statement in (s for s in statements if s["Effect"] == "Allow"):
        principals = statement["Principal"]["AWS"]
        if role in ([principals] if isinstance(principals, str) else principals):
            actions = statement["Action"]
            for action in [actions] if isinstance(actions, str) else actions:
                by_action.setdefault(action, []).append(statement)
    return by_action


def test_the_bucket_and_key_policies_grant_every_call_the_landing_zone_makes(landing):
    """Every S3 operation the landing zone sends (recorded on its client while it lands over a
    killed upload and a stray file, lands the same names again, reads, retires) is granted to the
    extract role on the right resource; under a bucket KMS key the key policy grants what those
    need, and the Unity Catalog role can decrypt what it reads."""
    operations = set()
    landing.client().meta.events.register("before-call.s3", lambda model, **_: operations.add(model.name))
    landing.client().create_multipart_upload(Bucket=BUCKET, Key=f"{PARTITION}/orders__A.csv")  # a killed upload
    landing.client().put_object(Bucket=BUCKET, Key=f"{PARTITION}/part-0001.csv", Body=b"left over")
    operations.clear()
    for _ in range(2):  # the second lands the same names: the old manifest goes first
        landing.land("orders/ingestion_date=2026-03-02", {"orders__A.csv": writing(b"order_id\n1\n")}, {})
    with landing.open("orders/ingestion_date=2026-03-02/orders__A.csv") as found, landing.open("missing.csv") as missing:
        assert found.read() == b"order_id\n1\n" and missing is None
    landing.retire("orders/ingestion_date=2026-03-02/orders__A.csv")

    unmapped = operations - set(IAM_ACTION)
    assert not unmapped, f"S3 operations without a known IAM action: {unmapped}"
    needed = {IAM_ACTION[operation] for operation in operations}
    assert needed == set(IAM_ACTION.values())  # each operation the landing zone makes was made
    policy = granted("landing_bucket_policy.json", "${DATA_ENGINEERING_ROLE_ARN}")
    for action in needed:
        assert action in policy, f"the bucket policy does not grant {action}"
        resource = "arn:aws:s3:::${LANDING_BUCKET}" + ("" if action in BUCKET_ACTIONS else "/ecomm_db_extracts/*")
        statements = [s for s in policy[action] if s["Resource"] == resource]
        assert statements, f"{action} is not granted on {resource}"
        # s3:prefix is a condition key of ListBucket only: on another action it never matches
        assert action == "s3:ListBucket" or any("Condition" not in s for s in statements), action

    extractor_kms = set(granted("landing_kms_key_policy.json", "${DATA_ENGINEERING_ROLE_ARN}"))
    assert extractor_kms == set().union(*(KMS_ACTIONS.get(action, set()) for action in needed))
    assert set(granted("landing_kms_key_policy.json", "${UC_STORAGE_ROLE_ARN}")) == KMS_ACTIONS["s3:GetObject"]
