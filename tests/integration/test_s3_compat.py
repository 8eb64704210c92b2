"""S3 behaviour real clients and SDK defaults expect (issue 17), against the running gateway
with boto3 and raw signed requests: retried Complete, SigV2, version listing after deletes,
UTF-8 metadata, re-sent parts, control characters in keys, partNumber reads, full write
preconditions, version headers, expired presigned URLs, max-keys=0, fetch-owner,
EncodingType=url and CreateBucket of an owned bucket.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import string
import threading
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import botocore.auth
import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.integration.test_s3_api import error_of
from tests.support.cluster import Federation
from tests.support.raw_s3 import Tenant

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
PART = 5 * MIB


@pytest.fixture(scope="module")
def who(cluster: Federation) -> Tenant:
    return Tenant.create(cluster)


@pytest.fixture
def bucket(who: Tenant, bucket_name: str) -> str:
    who.s3.create_bucket(Bucket=bucket_name)
    return bucket_name


def _complete(s3: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]]) -> Any:
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )


# -- 1. a retried Complete ----------------------------------------------------------------------
def test_retried_complete_answers_the_same_version(who: Tenant, bucket: str) -> None:
    s3 = who.s3
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"x")[
        "ETag"
    ]
    parts = [{"PartNumber": 1, "ETag": etag}]
    first = _complete(s3, bucket, "k", upload_id, parts)
    again = _complete(s3, bucket, "k", upload_id, parts)
    assert again["ETag"] == first["ETag"]
    assert again["VersionId"] == first["VersionId"]
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [v["VersionId"] for v in versions] == [first["VersionId"]]
    # Another part list, or another key, is still no such upload.
    with pytest.raises(ClientError) as exc:
        _complete(s3, bucket, "k", upload_id, [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}])
    assert error_of(exc) == (404, "NoSuchUpload")
    with pytest.raises(ClientError) as exc:
        _complete(s3, bucket, "other", upload_id, parts)
    assert error_of(exc) == (404, "NoSuchUpload")
    # Parts of a completed upload are not writable again.
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=2, Body=b"y")
    assert error_of(exc) == (404, "NoSuchUpload")


# -- 2. SigV2 ------------------------------------------------------------------------------------
def _v2_client(cluster: Federation, who: Tenant) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=cluster.endpoint,
        aws_access_key_id=who.key,
        aws_secret_access_key=who.secret,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            signature_version="s3",
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )


def test_sigv2_header_and_presigned_urls(cluster: Federation, who: Tenant, bucket: str) -> None:
    v2 = _v2_client(cluster, who)
    v2.put_object(Bucket=bucket, Key="a b/ü+x", Body=b"v2 body", Metadata={"m": "1"})
    assert v2.get_object(Bucket=bucket, Key="a b/ü+x")["Body"].read() == b"v2 body"
    assert [o["Key"] for o in v2.list_objects(Bucket=bucket, Prefix="a ")["Contents"]] == [
        "a b/ü+x"
    ]
    url = v2.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "a b/ü+x"}, ExpiresIn=60
    )
    assert "AWSAccessKeyId=" in url and "Signature=" in url and "Expires=" in url
    assert httpx.get(url).content == b"v2 body"
    put_url = v2.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "via-v2"}, ExpiresIn=60
    )
    assert httpx.put(put_url, content=b"put by url").status_code == 200
    assert who.s3.get_object(Bucket=bucket, Key="via-v2")["Body"].read() == b"put by url"
    # boto3's default presigner for us-east-1, without any signature_version setting.
    default = boto3.client(
        "s3",
        endpoint_url=cluster.endpoint,
        aws_access_key_id=who.key,
        aws_secret_access_key=who.secret,
        region_name="us-east-1",
    )
    url = default.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "via-v2"}, ExpiresIn=60
    )
    assert httpx.get(url).content == b"put by url"
    # A wrong signature, a tampered query, a week and a day, an unsigned x-amz-* header.
    bad = url.replace("Signature=", "Signature=AAAA")
    assert _code(httpx.get(bad)) == (403, "SignatureDoesNotMatch")
    expires = int(time.time()) + 8 * 24 * 3600
    long_url = _swap_param(url, "Expires", str(expires))
    assert _code(httpx.get(long_url))[0] in (400, 403)
    # SigV2 signs every x-amz-* header: one added after signing breaks the signature.
    response = httpx.get(url, headers={"x-amz-meta-extra": "1"})
    assert _code(response) == (403, "SignatureDoesNotMatch")
    other_key = url.replace(f"/{bucket}/via-v2", f"/{bucket}/a%20b")
    assert _code(httpx.get(other_key)) == (403, "SignatureDoesNotMatch")


def _swap_param(url: str, name: str, value: str) -> str:
    head, _, query = url.partition("?")
    pairs = [p.split("=", 1) for p in query.split("&")]
    return head + "?" + "&".join(f"{k}={value if k == name else v}" for k, v in pairs)


def _code(response: httpx.Response) -> tuple[int, str]:
    text = response.text
    code = text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else ""
    return response.status_code, code


# -- 3. ListObjectVersions continued from a deleted marker ---------------------------------------
def test_version_listing_continues_after_a_deleted_marker(who: Tenant, bucket: str) -> None:
    s3 = who.s3
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for key in ("a", "b", "c"):
        for _ in range(3):
            s3.put_object(Bucket=bucket, Key=key, Body=b"v")
    seen = 0
    params: dict[str, Any] = {"Bucket": bucket, "MaxKeys": 2}
    for _ in range(20):
        page = s3.list_object_versions(**params)
        versions = page.get("Versions", [])
        seen += len(versions)
        if versions:
            s3.delete_objects(
                Bucket=bucket,
                Delete={
                    "Objects": [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]
                },
            )
        if not page["IsTruncated"]:
            break
        params.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"])
    assert seen == 9
    assert "Versions" not in s3.list_object_versions(Bucket=bucket)
    # The null version as marker, deleted meanwhile.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=bucket, Key="n", Body=b"null")
    s3.delete_object(Bucket=bucket, Key="n", VersionId="null")
    page = s3.list_object_versions(Bucket=bucket, KeyMarker="n", VersionIdMarker="null")
    assert page["IsTruncated"] is False


# -- 4. UTF-8 user metadata ----------------------------------------------------------------------
def test_utf8_metadata_signs_and_round_trips(cluster: Federation, who: Tenant, bucket: str) -> None:
    value = "café 日本 ✓"
    url = f"{cluster.endpoint}/{bucket}/meta"
    request = AWSRequest(method="PUT", url=url, data=b"m", headers={"x-amz-meta-word": value})
    request.headers["x-amz-content-sha256"] = hashlib.sha256(b"m").hexdigest()
    S3SigV4Auth(Credentials(who.key, who.secret), "s3", cluster.settings.region).add_auth(request)
    wire = [
        (k.encode(), v.encode("utf-8") if isinstance(v, str) else v)
        for k, v in request.headers.items()
    ]
    response = httpx.put(url, content=b"m", headers=wire)
    assert response.status_code == 200, response.text
    head = who.raw("HEAD", f"/{bucket}/meta")
    assert head.headers.raw and dict(head.headers.raw)[b"x-amz-meta-word"] == value.encode()


# -- 5. a part re-sent while its first upload still runs -----------------------------------------
def test_resent_part_finishing_first_wins(cluster: Federation, who: Tenant, bucket: str) -> None:
    s3 = who.s3
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    slow_body = b"A" * MIB
    started = threading.Event()
    release = threading.Event()

    def slow() -> Iterator[bytes]:
        yield slow_body[: MIB // 2]
        started.set()
        release.wait(30)
        yield slow_body[MIB // 2 :]

    result: dict[str, Any] = {}

    def first_attempt() -> None:
        path = f"/{bucket}/k?partNumber=1&uploadId={upload_id}"
        request = AWSRequest(method="PUT", url=f"{cluster.endpoint}{path}", data=slow_body)
        S3SigV4Auth(Credentials(who.key, who.secret), "s3", cluster.settings.region).add_auth(
            request
        )
        result["first"] = httpx.put(
            f"{cluster.endpoint}{path}",
            content=slow(),
            headers={**dict(request.headers.items()), "Content-Length": str(MIB)},
            timeout=60,
        )

    thread = threading.Thread(target=first_attempt)
    thread.start()
    assert started.wait(30)
    time.sleep(0.5)
    retry = s3.upload_part(
        Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"B" * MIB
    )
    release.set()
    thread.join(60)
    assert result["first"].status_code == 200, result["first"].text
    done = _complete(s3, bucket, "k", upload_id, [{"PartNumber": 1, "ETag": retry["ETag"]}])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"B" * MIB
    assert done["ETag"].strip('"').endswith("-1")


# -- 6. control characters in keys ----------------------------------------------------------------
def test_keys_with_control_characters(who: Tenant, bucket: str) -> None:
    s3 = who.s3
    keys = ["line\nbreak", "tab\there", "cr\rkey", "bell\x07", "trail\n"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
        s3.head_object(Bucket=bucket, Key=key)
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(keys)
    for key in keys:
        s3.delete_object(Bucket=bucket, Key=key)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


# -- 7. GET/HEAD by partNumber --------------------------------------------------------------------
def test_part_number_reads(who: Tenant, bucket: str) -> None:
    s3 = who.s3
    data = [b"1" * PART, b"2" * (PART + 7), b"3" * 1000]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    parts = []
    for n, body in enumerate(data, start=1):
        etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=n, Body=body)[
            "ETag"
        ]
        parts.append({"PartNumber": n, "ETag": etag})
    _complete(s3, bucket, "mp", upload_id, parts)
    start = 0
    for n, body in enumerate(data, start=1):
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert got["Body"].read() == body
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["PartsCount"] == 3
        total = sum(map(len, data))
        assert got["ContentRange"] == f"bytes {start}-{start + len(body) - 1}/{total}"
        head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert head["ContentLength"] == len(body) and head["PartsCount"] == 3
        start += len(body)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=4)
    assert error_of(exc) == (416, "InvalidPartNumber")
    s3.put_object(Bucket=bucket, Key="single", Body=b"whole")
    got = s3.get_object(Bucket=bucket, Key="single", PartNumber=1)
    assert got["Body"].read() == b"whole"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="single", PartNumber=2)
    assert error_of(exc) == (416, "InvalidPartNumber")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="single", PartNumber=1, Range="bytes=0-1")
    assert error_of(exc)[0] == 400


# -- 8. write preconditions ----------------------------------------------------------------------
def test_write_preconditions(who: Tenant, bucket: str) -> None:
    s3 = who.s3
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="p", Body=b"1", IfMatch="*")
    assert error_of(exc) == (404, "NoSuchKey")
    first = s3.put_object(Bucket=bucket, Key="p", Body=b"1", IfNoneMatch="*")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="p", Body=b"2", IfNoneMatch="*")
    assert error_of(exc) == (412, "PreconditionFailed")
    raw = who.raw("PUT", f"/{bucket}/p", body=b"2", headers={"If-None-Match": first})
    assert raw.status_code == 412, raw.text
    raw = who.raw("PUT", f"/{bucket}/p", body=b"2", headers={"If-None-Match": '"abc"'})
    assert raw.status_code == 200, raw.text
    second = raw.headers["etag"]
    raw = who.raw("PUT", f"/{bucket}/p", body=b"3", headers={"If-Match": f'"zzz", {second}'})
    assert raw.status_code == 200, raw.text
    raw = who.raw("PUT", f"/{bucket}/p", body=b"4", headers={"If-Match": first})
    assert raw.status_code == 412
    s3.put_object(Bucket=bucket, Key="p", Body=b"5", IfMatch="*")
    # Complete and Copy take the same conditions.
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="p")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="p", UploadId=upload_id, PartNumber=1, Body=b"6")[
        "ETag"
    ]
    current = s3.head_object(Bucket=bucket, Key="p")["ETag"]
    raw = who.raw(
        "POST",
        f"/{bucket}/p?uploadId={upload_id}",
        body=(
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
            f"<ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
        ).encode(),
        headers={"If-None-Match": current},
    )
    assert raw.status_code == 412, raw.text
    raw = who.raw(
        "PUT",
        f"/{bucket}/copy",
        headers={"x-amz-copy-source": f"/{bucket}/p", "If-None-Match": '"nope"'},
    )
    assert raw.status_code == 200, raw.text
    raw = who.raw(
        "PUT",
        f"/{bucket}/copy",
        headers={"x-amz-copy-source": f"/{bucket}/p", "If-None-Match": current},
    )
    assert raw.status_code == 412, raw.text
    raw = who.raw("PUT", f"/{bucket}/p", body=b"x", headers={"If-None-Match": ""})
    assert raw.status_code == 400, raw.text


# -- 9. no version id outside an enabled bucket ---------------------------------------------------
def test_no_version_header_unless_enabled(who: Tenant, bucket: str) -> None:
    s3 = who.s3

    def put_and_complete() -> list[dict[str, str]]:
        headers = [s3.put_object(Bucket=bucket, Key="v", Body=b"x")["ResponseMetadata"]]
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key="v")["UploadId"]
        etag = s3.upload_part(Bucket=bucket, Key="v", UploadId=upload_id, PartNumber=1, Body=b"y")[
            "ETag"
        ]
        done = _complete(s3, bucket, "v", upload_id, [{"PartNumber": 1, "ETag": etag}])
        headers.append(done["ResponseMetadata"])
        return [h["HTTPHeaders"] for h in headers]

    for headers in put_and_complete():
        assert "x-amz-version-id" not in headers
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for headers in put_and_complete():
        assert headers["x-amz-version-id"] != "null"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    for headers in put_and_complete():
        assert "x-amz-version-id" not in headers


# -- 10. expired presigned URLs -------------------------------------------------------------------
def test_expired_presigned_urls(cluster: Federation, who: Tenant, bucket: str) -> None:
    who.s3.put_object(Bucket=bucket, Key="old", Body=b"x")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=300)
    clients = [who.s3, _v2_client(cluster, who)]
    for client in clients:
        with mock.patch.object(botocore.auth.datetime, "datetime", wraps=dt.datetime) as fake:
            fake.utcnow.return_value = past.replace(tzinfo=None)
            fake.now.return_value = past
            with mock.patch.object(botocore.auth.time, "time", return_value=past.timestamp()):
                urls = [
                    client.generate_presigned_url(
                        op, Params={"Bucket": bucket, "Key": "old"}, ExpiresIn=60
                    )
                    for op in ("get_object", "put_object")
                ]
        assert _code(httpx.get(urls[0])) == (403, "AccessDenied"), urls[0]
        assert _code(httpx.put(urls[1], content=b"y")) == (403, "AccessDenied"), urls[1]
    assert who.s3.get_object(Bucket=bucket, Key="old")["Body"].read() == b"x"


# -- 11. max-keys=0 -------------------------------------------------------------------------------
def test_max_keys_zero(who: Tenant, bucket: str) -> None:
    s3 = who.s3
    s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    v1 = s3.list_objects(Bucket=bucket, MaxKeys=0)
    v2 = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    for page in (v1, v2):
        assert page["IsTruncated"] is False and "Contents" not in page
    assert v2["KeyCount"] == 0


# -- 12. fetch-owner ------------------------------------------------------------------------------
def test_fetch_owner(cluster: Federation, bucket: str) -> None:
    name, key, secret = cluster.create_tenant(allow_plaintext=True)
    s3 = cluster.s3(key, secret)
    s3.create_bucket(Bucket=bucket + "o")
    s3.put_object(Bucket=bucket + "o", Key="a", Body=b"x")
    listed = s3.list_objects_v2(Bucket=bucket + "o", FetchOwner=True)["Contents"]
    assert listed[0]["Owner"] == {"ID": name, "DisplayName": name}
    assert "Owner" not in s3.list_objects_v2(Bucket=bucket + "o")["Contents"][0]


# -- 13. EncodingType=url -------------------------------------------------------------------------
PRINTABLE_KEY = "all/" + "".join(c for c in string.printable if c not in "\t\n\r\x0b\x0c")


def test_encoding_type_url_round_trips(who: Tenant, bucket: str) -> None:
    s3 = who.s3
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    keys = [PRINTABLE_KEY, "nl\nprefix/a+b c", "nl\nprefix/x%y/z"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    v1 = s3.list_objects(Bucket=bucket, Prefix="nl\n", Delimiter="/", Marker="nl\n")
    assert v1["Prefix"] == "nl\n" and v1["Delimiter"] == "/" and v1["Marker"] == "nl\n"
    assert [p["Prefix"] for p in v1["CommonPrefixes"]] == ["nl\nprefix/"]
    v1 = s3.list_objects(Bucket=bucket, MaxKeys=1, Delimiter="~~")
    assert v1["Contents"][0]["Key"] == PRINTABLE_KEY and v1["NextMarker"] == PRINTABLE_KEY
    v2 = s3.list_objects_v2(Bucket=bucket, Prefix="nl\nprefix/", StartAfter="nl\nprefix/a")
    assert v2["Prefix"] == "nl\nprefix/" and v2["StartAfter"] == "nl\nprefix/a"
    assert [o["Key"] for o in v2["Contents"]] == keys[1:]
    every = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(o["Key"] for o in every) == sorted(keys)
    versions = s3.list_object_versions(Bucket=bucket, Prefix="nl\n", MaxKeys=1)
    assert versions["Prefix"] == "nl\n" and versions["NextKeyMarker"] == keys[1]
    versions = s3.list_object_versions(
        Bucket=bucket, KeyMarker=versions["NextKeyMarker"], Delimiter="%"
    )
    assert versions["KeyMarker"] == keys[1] and versions["Delimiter"] == "%"
    assert [p["Prefix"] for p in versions["CommonPrefixes"]] == ["nl\nprefix/x%"]
    # The XML itself: exactly S3's encoded fields.
    raw = who.raw("GET", f"/{bucket}?list-type=2&encoding-type=url&prefix=nl%0A&start-after=nl%0A")
    assert "<Prefix>nl%0A</Prefix>" in raw.text and "<StartAfter>nl%0A</StartAfter>" in raw.text
    assert "<Key>nl%0Aprefix/a%2Bb" in raw.text


# -- 14. CreateBucket of an owned bucket ----------------------------------------------------------
def test_create_owned_bucket_in_us_east_1(cluster: Federation, who: Tenant, bucket: str) -> None:
    assert cluster.settings.region == "us-east-1"
    who.s3.put_object(Bucket=bucket, Key="stays", Body=b"x")
    again = who.s3.create_bucket(Bucket=bucket)
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert who.s3.get_object(Bucket=bucket, Key="stays")["Body"].read() == b"x"
