"""CopyObject: shared replicas (reference-counted), metadata directives, byte copies when
the target's class differs, and every refusal a clean S3 error."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from core.envelope import ciphertext_length
from tests.support.cluster import Federation
from tests.support.envelopes import bp1_header, fake_envelope

pytestmark = pytest.mark.integration

DUO = "version: 1\nclasses:\n  Duo: {replication: {copies: 2}, min_regions: 2}\n"


def _code(exc: ClientError) -> tuple[int, str]:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


def _locators(cluster: Federation, bucket: str, key: str) -> set[tuple[str, str]]:
    return {(r["backend"], r["locator"]) for r in cluster.replicas(bucket, key)}


def _backend_objects(cluster: Federation) -> set[tuple[int, str]]:
    found: set[tuple[int, str]] = set()
    for i in range(3):
        s3 = cluster.backend_s3(i)
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=cluster.backend_bucket(i))
        for page in pages:
            found |= {(i, o["Key"]) for o in page.get("Contents", [])}
    return found


@pytest.fixture
def plain(cluster: Federation, bucket_name: str) -> Iterator[tuple[Any, str]]:
    _, key, secret = cluster.create_tenant(allow_plaintext=True)
    s3 = cluster.s3(key, secret)
    s3.create_bucket(Bucket=bucket_name)
    yield s3, bucket_name


def test_copy_shares_replicas_and_reference_counts_them(
    cluster: Federation, plain: tuple[Any, str]
) -> None:
    s3, bucket = plain
    body = os.urandom(3 * 1024 * 1024 + 17)  # 4 stored parts at the tests' 1 MiB part size
    s3.put_object(
        Bucket=bucket, Key="src", Body=body, ContentType="text/x-src", Metadata={"a": "1"}
    )
    # Shared only once every replica is acknowledged (the third copy of a 2-of-3 write may
    # still be in flight right after the PUT; a copy made then moves bytes instead).
    cluster.wait_for(
        lambda: {r["status"] for r in cluster.replicas(bucket, "src")} == {"ok"},
        what="all source replicas ok",
    )
    source_locators = _locators(cluster, bucket, "src")
    before = _backend_objects(cluster)

    result = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert result["CopyObjectResult"]["ETag"] == s3.head_object(Bucket=bucket, Key="src")["ETag"]
    assert _locators(cluster, bucket, "dst") == source_locators  # metadata only
    assert not _backend_objects(cluster) - before  # no byte moved
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["ContentType"] == "text/x-src" and head["Metadata"] == {"a": "1"}
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == body

    # Deleting the source keeps every backend object the copy still names: its locators go
    # to garbage and the collector forgets them because the copy references them.
    s3.delete_object(Bucket=bucket, Key="src")
    names = {loc for _, loc in source_locators}

    def settled() -> bool:
        rows = cluster.sql(
            "SELECT locator FROM garbage WHERE locator = ANY($1::text[])", list(names)
        )
        return not rows

    cluster.wait_for(settled, timeout_s=30, what="garbage rows of the source resolved")
    assert {loc for _, loc in _backend_objects(cluster)} >= names
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == body

    # The last holder going away deletes them.
    s3.delete_object(Bucket=bucket, Key="dst")

    def gone() -> bool:
        return not ({loc for _, loc in _backend_objects(cluster)} & names)

    cluster.wait_for(gone, timeout_s=30, what="shared backend objects deleted with the last holder")


def test_copy_across_buckets_and_metadata_directive(
    cluster: Federation, plain: tuple[Any, str]
) -> None:
    s3, bucket = plain
    other = bucket + "-2"
    s3.create_bucket(Bucket=other)
    s3.put_object(Bucket=bucket, Key="k", Body=b"payload", ContentType="a/b", Metadata={"x": "1"})
    s3.copy_object(Bucket=other, Key="copied", CopySource=f"{bucket}/k")
    head = s3.head_object(Bucket=other, Key="copied")
    assert (head["ContentType"], head["Metadata"]) == ("a/b", {"x": "1"})
    s3.copy_object(
        Bucket=other,
        Key="replaced",
        CopySource={"Bucket": bucket, "Key": "k"},
        MetadataDirective="REPLACE",
        ContentType="c/d",
        Metadata={"y": "2"},
    )
    head = s3.head_object(Bucket=other, Key="replaced")
    assert (head["ContentType"], head["Metadata"]) == ("c/d", {"y": "2"})
    assert s3.get_object(Bucket=other, Key="replaced")["Body"].read() == b"payload"

    # Copying onto itself with new metadata is allowed, without change it is not.
    s3.copy_object(
        Bucket=bucket,
        Key="k",
        CopySource={"Bucket": bucket, "Key": "k"},
        MetadataDirective="REPLACE",
        Metadata={"z": "3"},
    )
    assert s3.head_object(Bucket=bucket, Key="k")["Metadata"] == {"z": "3"}
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"payload"
    with pytest.raises(ClientError) as illegal:
        s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"})
    assert _code(illegal.value) == (400, "InvalidRequest")


def test_copy_refusals_are_clean_errors(cluster: Federation, plain: tuple[Any, str]) -> None:
    s3, bucket = plain
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    cases = [
        ({"CopySource": {"Bucket": bucket, "Key": "missing"}}, (404, "NoSuchKey")),
        ({"CopySource": {"Bucket": "no-such-bucket-x", "Key": "k"}}, (404, "NoSuchBucket")),
        ({"CopySource": f"{bucket}/k", "MetadataDirective": "MOVE"}, (400, "InvalidArgument")),
        (
            {
                "CopySource": f"{bucket}/k",
                "MetadataDirective": "REPLACE",
                "Metadata": {"bp-key-id": "x"},
            },
            (400, "InvalidArgument"),
        ),
        ({"CopySource": f"{bucket}/k", "ACL": "public-read"}, (403, "AccessDenied")),
    ]
    for kwargs, expected in cases:
        with pytest.raises(ClientError) as refused:
            s3.copy_object(Bucket=bucket, Key="dst", **kwargs)
        assert _code(refused.value) == expected, kwargs
    # Another tenant's bucket is invisible, even with its exact name.
    _, key2, secret2 = cluster.create_tenant(allow_plaintext=True)
    with pytest.raises(ClientError) as foreign:
        cluster.s3(key2, secret2).copy_object(Bucket=bucket, Key="stolen", CopySource=f"{bucket}/k")
    assert _code(foreign.value)[0] == 404
    other_tenant = cluster.s3(key2, secret2)
    other_tenant.create_bucket(Bucket=bucket + "-t2")
    with pytest.raises(ClientError) as foreign_source:
        other_tenant.copy_object(Bucket=bucket + "-t2", Key="stolen", CopySource=f"{bucket}/k")
    assert _code(foreign_source.value) == (404, "NoSuchBucket")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]


def test_conditional_copy_target(cluster: Federation, plain: tuple[Any, str]) -> None:
    s3, bucket = plain
    s3.put_object(Bucket=bucket, Key="src", Body=b"one")
    s3.put_object(Bucket=bucket, Key="dst", Body=b"two")

    def no_overwrite(request: Any, **_: Any) -> None:
        request.headers["If-None-Match"] = "*"

    s3.meta.events.register("before-sign.s3.CopyObject", no_overwrite)
    try:
        with pytest.raises(ClientError) as exists:
            s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src")
        assert _code(exists.value) == (412, "PreconditionFailed")
        s3.copy_object(Bucket=bucket, Key="fresh", CopySource=f"{bucket}/src")
    finally:
        s3.meta.events.unregister("before-sign.s3.CopyObject", no_overwrite)
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"two"
    assert s3.get_object(Bucket=bucket, Key="fresh")["Body"].read() == b"one"


def test_copy_source_preconditions(cluster: Federation, plain: tuple[Any, str]) -> None:
    s3, bucket = plain
    etag = s3.put_object(Bucket=bucket, Key="src", Body=b"data")["ETag"]
    ok = {"CopySourceIfMatch": etag}
    s3.copy_object(Bucket=bucket, Key="a", CopySource=f"{bucket}/src", **ok)
    for failing in (
        {"CopySourceIfMatch": '"0123"'},
        {"CopySourceIfNoneMatch": etag},
        {"CopySourceIfModifiedSince": "2100-01-01T00:00:00Z"},
        {"CopySourceIfUnmodifiedSince": "2000-01-01T00:00:00Z"},
    ):
        with pytest.raises(ClientError) as refused:
            s3.copy_object(Bucket=bucket, Key="b", CopySource=f"{bucket}/src", **failing)
        assert _code(refused.value) == (412, "PreconditionFailed"), failing
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["a", "src"]


def test_copy_into_another_class_copies_the_bytes(
    cluster: Federation, plain: tuple[Any, str]
) -> None:
    applied = cluster.admin("PUT", "/admin/policy", {"document": DUO, "comment": "copy test"})
    assert applied.status_code == 200, applied.text
    s3, bucket = plain
    body = os.urandom(2 * 1024 * 1024 + 5)
    s3.put_object(Bucket=bucket, Key="src", Body=body)

    def duo(request: Any, **_: Any) -> None:
        request.headers["X-Redundancy-Class"] = "Duo"

    s3.meta.events.register("before-sign.s3.CopyObject", duo)
    try:
        s3.copy_object(Bucket=bucket, Key="duo", CopySource=f"{bucket}/src")
    finally:
        s3.meta.events.unregister("before-sign.s3.CopyObject", duo)
    head = s3.head_object(Bucket=bucket, Key="duo")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-bp-redundancy-class"] == "Duo"
    copied = _locators(cluster, bucket, "duo")
    assert len({b for b, _ in copied}) == 2
    assert not copied & _locators(cluster, bucket, "src")  # own backend objects
    got = s3.get_object(Bucket=bucket, Key="duo")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    # Leave no object of the test class behind: a later policy may drop the class.
    s3.delete_object(Bucket=bucket, Key="duo")


def test_encrypted_copies_keep_their_binding(cluster: Federation, bucket_name: str) -> None:
    _, key, secret = cluster.create_tenant()
    s3 = cluster.s3(key, secret)
    s3.create_bucket(Bucket=bucket_name)
    pt_len = 1000
    body = bp1_header(pt_len)
    body += os.urandom(ciphertext_length(pt_len, 16) - len(body))
    envelope = fake_envelope()
    s3.put_object(Bucket=bucket_name, Key="secret", Body=body, Metadata=envelope)
    with pytest.raises(ClientError) as refused:
        s3.copy_object(Bucket=bucket_name, Key="elsewhere", CopySource=f"{bucket_name}/secret")
    assert _code(refused.value) == (400, "InvalidRequest")
    assert "bound" in refused.value.response["Error"]["Message"]
    # Same key, new metadata: allowed, the envelope stays the source's.
    s3.copy_object(
        Bucket=bucket_name,
        Key="secret",
        CopySource=f"{bucket_name}/secret",
        MetadataDirective="REPLACE",
        ContentType="application/x-bp1",
    )
    head = s3.head_object(Bucket=bucket_name, Key="secret")
    assert head["ContentType"] == "application/x-bp1"
    assert head["Metadata"]["bp-wrapped-key"] == envelope["bp-wrapped-key"]
    assert s3.get_object(Bucket=bucket_name, Key="secret")["Body"].read() == body
