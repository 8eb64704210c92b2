"""The S3 API over HTTP with boto3, against real backends (moto processes), PostgreSQL, Redis."""

from __future__ import annotations

import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.cluster import Federation

pytestmark = pytest.mark.integration


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def test_bucket_lifecycle(plain_tenant: tuple[str, Any], bucket_name: str) -> None:
    _, s3 = plain_tenant
    s3.create_bucket(Bucket=bucket_name)
    assert bucket_name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket=bucket_name)
    # Issue 17: in us-east-1 S3 answers 200 to creating a bucket the caller owns (409
    # BucketAlreadyOwnedByYou elsewhere); test_s3_compat.py checks the bucket stays untouched.
    assert s3.create_bucket(Bucket=bucket_name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket_name)
    assert error_of(exc) == (409, "BucketNotEmpty")
    s3.delete_object(Bucket=bucket_name, Key="k")
    s3.delete_bucket(Bucket=bucket_name)
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=bucket_name)
    assert error_of(exc)[0] == 404


@pytest.mark.parametrize("size", [0, 1, 1024 * 1024 - 1, 1024 * 1024, 3 * 1024 * 1024 + 17])
def test_put_get_round_trip_across_part_boundaries(
    cluster: Federation, plain_tenant: tuple[str, Any], size: int
) -> None:
    _, s3 = plain_tenant
    bucket = f"rt-{size}"
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(size)
    put = s3.put_object(
        Bucket=bucket, Key="obj", Body=data, Metadata={"colour": "blue"}, ContentType="x/y"
    )
    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == data
    assert got["ETag"] == put["ETag"]
    assert got["Metadata"] == {"colour": "blue"}
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-bp-redundancy-class"] == "StandardClass"
    assert got["ContentType"] == "x/y"
    head = s3.head_object(Bucket=bucket, Key="obj")
    assert head["ContentLength"] == size
    # 1 MiB parts in tests: every part of every replica is recorded with its own checksum.
    parts = max(1, -(-size // (1024 * 1024)))
    rows = cluster.replicas(bucket, "obj")
    assert len(rows) == 3 * parts
    assert {r["backend"] for r in rows} == {"b0", "b1", "b2"}


def test_ranges(plain_tenant: tuple[str, Any]) -> None:
    _, s3 = plain_tenant
    s3.create_bucket(Bucket="ranges")
    data = os.urandom(3 * 1024 * 1024 + 5)
    s3.put_object(Bucket="ranges", Key="r", Body=data)
    mib = 1024 * 1024
    for first, last in [
        (0, 0),
        (mib - 1, mib),
        (mib - 3, 2 * mib + 3),
        (len(data) - 1, len(data) - 1),
    ]:
        got = s3.get_object(Bucket="ranges", Key="r", Range=f"bytes={first}-{last}")
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["Body"].read() == data[first : last + 1]
        assert got["ContentRange"] == f"bytes {first}-{last}/{len(data)}"
    assert s3.get_object(Bucket="ranges", Key="r", Range="bytes=-10")["Body"].read() == data[-10:]
    assert (
        s3.get_object(Bucket="ranges", Key="r", Range=f"bytes={mib}-")["Body"].read() == data[mib:]
    )
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="ranges", Key="r", Range=f"bytes={len(data)}-")
    assert error_of(exc) == (416, "InvalidRange")


def test_overwrite_and_delete(cluster: Federation, plain_tenant: tuple[str, Any]) -> None:
    _, s3 = plain_tenant
    s3.create_bucket(Bucket="overwrite")
    s3.put_object(Bucket="overwrite", Key="k", Body=b"first")
    old = {(r["backend_id"], r["locator"]) for r in cluster.replicas("overwrite", "k")}
    s3.put_object(Bucket="overwrite", Key="k", Body=b"second")
    assert s3.get_object(Bucket="overwrite", Key="k")["Body"].read() == b"second"
    # The superseded version's backend objects are deleted (garbage collected) soon after.
    names = {
        b: n
        for b, n in [(r["id"], r["name"]) for r in cluster.sql("SELECT id, name FROM backends")]
    }

    def old_gone() -> bool:
        for backend_id, locator in old:
            index = int(names[backend_id][1:])
            listing = cluster.backend_s3(index).list_objects_v2(
                Bucket=cluster.backend_bucket(index)
            )
            if locator in {o["Key"] for o in listing.get("Contents", [])}:
                return False
        return True

    cluster.wait_for(old_gone, what="superseded replicas deleted from backends")
    s3.delete_object(Bucket="overwrite", Key="k")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="overwrite", Key="k")
    assert error_of(exc) == (404, "NoSuchKey")
    assert cluster.replicas("overwrite", "k") == []
    # Deleting a missing key is not an error in S3.
    s3.delete_object(Bucket="overwrite", Key="never-existed")


def test_list_objects_v2_prefix_delimiter_pagination(plain_tenant: tuple[str, Any]) -> None:
    _, s3 = plain_tenant
    s3.create_bucket(Bucket="listing")
    keys = ["a/1", "a/2", "a/b/3", "b/4", "c", "d/5", "é/6", "z"]
    for key in keys:
        s3.put_object(Bucket="listing", Key=key, Body=b"")
    everything = s3.list_objects_v2(Bucket="listing")
    assert [o["Key"] for o in everything["Contents"]] == sorted(keys, key=lambda k: k.encode())
    top = s3.list_objects_v2(Bucket="listing", Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["c", "z"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "b/", "d/", "é/"]
    under_a = s3.list_objects_v2(Bucket="listing", Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in under_a["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in under_a["CommonPrefixes"]] == ["a/b/"]
    # Pagination by two, with a delimiter: prefixes and keys interleave in order, none repeat.
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"Bucket": "listing", "Delimiter": "/", "MaxKeys": 2}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_objects_v2(**kwargs)
        seen += [o["Key"] for o in page.get("Contents", [])]
        seen += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        pages += 1
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
        assert pages < 10
    assert sorted(seen) == sorted(["a/", "b/", "c", "d/", "é/", "z"])
    # UTF-8 byte order, as S3: "z" (0x7a) sorts before "é" (0xc3 0xa9).
    assert [
        o["Key"] for o in s3.list_objects_v2(Bucket="listing", StartAfter="d/5")["Contents"]
    ] == ["z", "é/6"]
    v1 = s3.list_objects(Bucket="listing", Marker="b/4")
    assert [o["Key"] for o in v1["Contents"]] == ["c", "d/5", "z", "é/6"]
    paginator = s3.get_paginator("list_objects")
    assert sum(
        len(p.get("Contents", []))
        for p in paginator.paginate(Bucket="listing", PaginationConfig={"PageSize": 3})
    ) == len(keys)


def test_tenants_are_isolated(cluster: Federation) -> None:
    _, key_a, secret_a = cluster.create_tenant(allow_plaintext=True)
    _, key_b, secret_b = cluster.create_tenant(allow_plaintext=True)
    a, b = cluster.s3(key_a, secret_a), cluster.s3(key_b, secret_b)
    a.create_bucket(Bucket="shared-name")
    a.put_object(Bucket="shared-name", Key="secret", Body=b"tenant a")
    # B neither sees A's bucket nor its object, and can own a bucket of the same name.
    assert "shared-name" not in [x["Name"] for x in b.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as exc:
        b.get_object(Bucket="shared-name", Key="secret")
    assert error_of(exc) == (404, "NoSuchBucket")
    with pytest.raises(ClientError) as exc:
        b.list_objects_v2(Bucket="shared-name")
    assert error_of(exc) == (404, "NoSuchBucket")
    b.create_bucket(Bucket="shared-name")
    assert b.list_objects_v2(Bucket="shared-name")["KeyCount"] == 0
    with pytest.raises(ClientError) as exc:
        b.get_object(Bucket="shared-name", Key="secret")
    assert error_of(exc) == (404, "NoSuchKey")
    assert a.get_object(Bucket="shared-name", Key="secret")["Body"].read() == b"tenant a"


def test_bad_input_gets_s3_errors(plain_tenant: tuple[str, Any]) -> None:
    _, s3 = plain_tenant
    s3.create_bucket(Bucket="badinput")
    cases = [
        (lambda: s3.get_object(Bucket="nope-missing", Key="k"), (404, "NoSuchBucket")),
        (lambda: s3.get_object(Bucket="badinput", Key="missing"), (404, "NoSuchKey")),
        (
            lambda: s3.put_object(Bucket="badinput", Key="k" * 1025, Body=b""),
            (400, "KeyTooLongError"),
        ),
        (
            lambda: s3.put_object(Bucket="badinput", Key="m", Body=b"", Metadata={"a": "x" * 2100}),
            (400, "MetadataTooLarge"),
        ),
        (lambda: s3.create_bucket(Bucket="Bad_Name"), (400, "InvalidBucketName")),
        (
            lambda: s3.put_object(
                Bucket="badinput", Key="r", Body=b"", Metadata={"bp-colour": "x"}
            ),
            (400, "InvalidArgument"),
        ),
        (lambda: s3.create_bucket(Bucket="admin"), (400, "InvalidBucketName")),
        (lambda: s3.get_bucket_tagging(Bucket="badinput"), (501, "NotImplemented")),
        (
            lambda: s3.put_object(Bucket="badinput", Key="c", Body=b"", StorageClass="GLACIER"),
            (400, "InvalidStorageClass"),
        ),
        (
            lambda: s3.put_object(
                Bucket="badinput", Key="md5", Body=b"abc", ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg=="
            ),
            (400, "BadDigest"),
        ),
    ]
    for call, expected in cases:
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == expected
    assert s3.list_objects_v2(Bucket="badinput")["KeyCount"] == 0
