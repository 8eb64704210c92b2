"""Conditional GET and HEAD over HTTP (If-Match, If-None-Match, If-Modified-Since,
If-Unmodified-Since with S3's precedence), and x-amz-checksum-mode."""

from __future__ import annotations

import base64
import zlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.cluster import Federation
from tests.support.raw_s3 import Tenant

pytestmark = pytest.mark.integration

BODY = b"conditional body " * 100


@pytest.fixture(scope="module")
def t(cluster: Federation) -> Tenant:
    return Tenant.create(cluster)


@pytest.fixture(scope="module")
def obj(t: Tenant) -> tuple[str, str, datetime]:
    """A bucket with one object: (bucket, ETag with quotes, Last-Modified)."""
    bucket = "conditional-reads"
    t.s3.create_bucket(Bucket=bucket)
    t.s3.put_object(Bucket=bucket, Key="k", Body=BODY)
    head = t.s3.head_object(Bucket=bucket, Key="k")
    return bucket, head["ETag"], head["LastModified"]


def status(call: Any, **kwargs: Any) -> int:
    try:
        response = call(**kwargs)
    except ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    return int(response["ResponseMetadata"]["HTTPStatusCode"])


def test_conditional_matrix(t: Tenant, obj: tuple[str, str, datetime]) -> None:
    bucket, etag, modified = obj
    before, after = modified - timedelta(hours=1), modified + timedelta(hours=1)
    cases: list[tuple[dict[str, Any], int]] = [
        ({}, 200),
        ({"IfMatch": etag}, 200),
        ({"IfMatch": etag.strip('"')}, 200),
        ({"IfMatch": '"0123"'}, 412),
        ({"IfNoneMatch": etag}, 304),
        ({"IfNoneMatch": '"0123"'}, 200),
        ({"IfModifiedSince": before}, 200),
        ({"IfModifiedSince": modified}, 304),
        ({"IfModifiedSince": after}, 304),
        ({"IfUnmodifiedSince": before}, 412),
        ({"IfUnmodifiedSince": modified}, 200),
        ({"IfUnmodifiedSince": after}, 200),
        # If-Match true + If-Unmodified-Since false -> 200 (S3's documented rule).
        ({"IfMatch": etag, "IfUnmodifiedSince": before}, 200),
        # If-None-Match false + If-Modified-Since true -> 304 (S3's documented rule).
        ({"IfNoneMatch": etag, "IfModifiedSince": before}, 304),
        ({"IfMatch": '"0123"', "IfNoneMatch": etag}, 412),
        ({"IfMatch": etag, "IfNoneMatch": etag}, 304),
    ]
    for kwargs, expected in cases:
        assert status(t.s3.get_object, Bucket=bucket, Key="k", **kwargs) == expected, kwargs
        assert status(t.s3.head_object, Bucket=bucket, Key="k", **kwargs) == expected, kwargs
    ranged = t.s3.get_object(Bucket=bucket, Key="k", IfMatch=etag, Range="bytes=0-10")
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert ranged["Body"].read() == BODY[:11]
    with pytest.raises(ClientError) as exc:
        t.s3.get_object(Bucket=bucket, Key="k", IfMatch='"0123"')
    assert exc.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        t.s3.get_object(Bucket=bucket, Key="missing", IfMatch=etag)
    assert exc.value.response["Error"]["Code"] == "NoSuchKey"


def test_raw_headers_lists_stars_and_bad_dates(t: Tenant, obj: tuple[str, str, datetime]) -> None:
    bucket, etag, modified = obj
    http_date = format_datetime(modified.astimezone(UTC), usegmt=True)
    cases = [
        ({"If-Match": "*"}, 200),
        ({"If-Match": f'"nope", {etag}'}, 200),
        ({"If-Match": f"W/{etag}"}, 200),
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": f'"a", "b", {etag.strip(chr(34))}'}, 304),
        ({"If-Modified-Since": "not a date"}, 200),
        ({"If-Unmodified-Since": "31 Feb 1999"}, 200),
        ({"If-None-Match": '"other"', "If-Modified-Since": http_date}, 200),
        ({"If-Match": '"other"', "If-Unmodified-Since": "garbage"}, 412),
    ]
    for headers, expected in cases:
        for method in ("GET", "HEAD"):
            response = t.raw(method, f"/{bucket}/k", headers=headers)
            assert response.status_code == expected, (method, headers, response.text)
    not_modified = t.raw("GET", f"/{bucket}/k", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    assert not_modified.headers["last-modified"] == http_date
    failed = t.raw("GET", f"/{bucket}/k", headers={"If-Match": '"other"'})
    assert failed.status_code == 412 and b"<Code>PreconditionFailed</Code>" in failed.content


def test_conditions_on_versions_and_markers(t: Tenant, bucket_name: str) -> None:
    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    s3.put_bucket_versioning(Bucket=bucket_name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"old")
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"new")
    new, old = t.version_ids(bucket_name, "k")
    old_etag = s3.head_object(Bucket=bucket_name, Key="k", VersionId=old)["ETag"]
    got = s3.get_object(Bucket=bucket_name, Key="k", VersionId=old, IfMatch=old_etag)
    assert got["Body"].read() == b"old"
    assert status(s3.get_object, Bucket=bucket_name, Key="k", IfMatch=old_etag) == 412
    assert status(s3.head_object, Bucket=bucket_name, Key="k", VersionId=new, IfMatch=old_etag) == (
        412
    )
    not_modified = t.raw(
        "GET", f"/{bucket_name}/k?versionId={old}", headers={"If-None-Match": old_etag}
    )
    assert not_modified.status_code == 304
    assert not_modified.headers["x-amz-version-id"] == old
    s3.delete_object(Bucket=bucket_name, Key="k")
    assert status(s3.get_object, Bucket=bucket_name, Key="k", IfNoneMatch=old_etag) == 404


def test_checksum_mode(cluster: Federation, t: Tenant, bucket_name: str) -> None:
    s3 = t.s3
    s3.create_bucket(Bucket=bucket_name)
    data = b"checksummed " * 1000
    s3.put_object(Bucket=bucket_name, Key="c", Body=data)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    # Whatever the PUT stored, this object's checksum is the CRC32 of its bytes (set before
    # any read, so no cached copy of the version exists yet).
    cluster.sql(
        "UPDATE object_versions v SET checksum_algorithm = 'crc32', checksum_value = $3,"
        " checksum_type = 'FULL_OBJECT' FROM buckets b"
        " WHERE b.id = v.bucket_id AND b.name = $1 AND v.key = $2",
        bucket_name,
        "c",
        crc,
    )
    # Without x-amz-checksum-mode (boto3 sends it by default, hence a raw request).
    plain = t.raw("GET", f"/{bucket_name}/c")
    assert plain.content == data
    assert "x-amz-checksum-crc32" not in plain.headers
    moded = t.raw("GET", f"/{bucket_name}/c", headers={"x-amz-checksum-mode": "ENABLED"})
    assert moded.headers["x-amz-checksum-crc32"] == crc
    got = s3.get_object(Bucket=bucket_name, Key="c", ChecksumMode="ENABLED")
    assert got["Body"].read() == data  # botocore validates the CRC32 while reading
    assert got["ChecksumCRC32"] == crc
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-amz-checksum-type"] == "FULL_OBJECT"
    head = s3.head_object(Bucket=bucket_name, Key="c", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc
    ranged = s3.get_object(Bucket=bucket_name, Key="c", ChecksumMode="ENABLED", Range="bytes=0-9")
    assert ranged["Body"].read() == data[:10]
    assert "x-amz-checksum-crc32" not in ranged["ResponseMetadata"]["HTTPHeaders"]
