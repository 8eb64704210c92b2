"""Standard headers S3 keeps with an object (Cache-Control, Content-Disposition,
Content-Encoding, Content-Language, Expires) and the response-* overrides of a GET."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.cluster import Federation

pytestmark = pytest.mark.integration

HEADERS = {
    "CacheControl": "max-age=60",
    "ContentDisposition": 'attachment; filename="r.txt"',
    "ContentEncoding": "gzip",
    "ContentLanguage": "de",
    "Expires": datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC),
}


def _stored(head: dict[str, Any]) -> dict[str, Any]:
    return {name: head.get(name) for name in HEADERS}


@pytest.fixture
def s3(cluster: Federation, bucket_name: str) -> Any:
    _, key, secret = cluster.create_tenant(allow_plaintext=True)
    client = cluster.s3(key, secret)
    client.create_bucket(Bucket=bucket_name)
    return client


def test_put_multipart_and_copy_keep_standard_headers(s3: Any, bucket_name: str) -> None:
    s3.put_object(Bucket=bucket_name, Key="single", Body=b"abc", **HEADERS)
    assert _stored(s3.head_object(Bucket=bucket_name, Key="single")) == HEADERS
    assert _stored(s3.get_object(Bucket=bucket_name, Key="single")) == HEADERS

    upload = s3.create_multipart_upload(Bucket=bucket_name, Key="multi", **HEADERS)
    part = s3.upload_part(
        Bucket=bucket_name,
        Key="multi",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=os.urandom(10),
    )
    s3.complete_multipart_upload(
        Bucket=bucket_name,
        Key="multi",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert _stored(s3.head_object(Bucket=bucket_name, Key="multi")) == HEADERS

    s3.copy_object(Bucket=bucket_name, Key="copied", CopySource=f"{bucket_name}/single")
    assert _stored(s3.head_object(Bucket=bucket_name, Key="copied")) == HEADERS
    s3.copy_object(
        Bucket=bucket_name,
        Key="replaced",
        CopySource=f"{bucket_name}/single",
        MetadataDirective="REPLACE",
        CacheControl="no-store",
    )
    head = s3.head_object(Bucket=bucket_name, Key="replaced")
    assert head["CacheControl"] == "no-store" and head.get("ContentLanguage") is None

    plain = s3.put_object(Bucket=bucket_name, Key="plain", Body=b"x")
    assert plain["ResponseMetadata"]["HTTPStatusCode"] == 200
    head = s3.head_object(Bucket=bucket_name, Key="plain")
    assert head.get("CacheControl") is None and head.get("ContentEncoding") is None


def test_get_response_overrides(s3: Any, bucket_name: str) -> None:
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"hello", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket_name,
        Key="k",
        ResponseContentType="application/x-special",
        ResponseCacheControl="no-cache",
        ResponseContentDisposition="inline",
    )
    assert got["ContentType"] == "application/x-special"
    assert got["CacheControl"] == "no-cache" and got["ContentDisposition"] == "inline"
    assert got["Body"].read() == b"hello"
    assert s3.head_object(Bucket=bucket_name, Key="k")["ContentType"] == "text/plain"
