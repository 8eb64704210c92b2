"""No input breaks the gateway (issue 14), over HTTP: each value that once answered 500 (an
overflow or a PostgreSQL error far from the parser) is a deliberate 4xx with the S3 XML error
(or the JSON error of a JSON API), and nothing of a refused write reaches a backend. The
parsers' own tests are tests/unit/test_hostile_input.py."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from xml.etree import ElementTree as ET

import httpx
import pytest

from tests.support.cluster import BACKENDS, Federation
from tests.support.envelopes import bp1_header, fake_envelope
from tests.support.raw_s3 import Tenant, signed_request

pytestmark = pytest.mark.integration

HUGE = "9" * 5000  # past CPython's 4,300-digit int-from-str limit
DEEP = b"[" * 20_000 + b"]" * 20_000  # within every body cap, far past json's recursion


@pytest.fixture(scope="module")
def plain(cluster: Federation) -> Iterator[tuple[Tenant, str, str]]:
    """A plaintext tenant with a bucket, an object and an open multipart upload."""
    tenant = Tenant.create(cluster)
    bucket = f"hostile-{secrets.token_hex(3)}"
    tenant.s3.create_bucket(Bucket=bucket)
    tenant.s3.put_object(Bucket=bucket, Key="obj", Body=b"hello world")
    upload = tenant.s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    yield tenant, bucket, upload
    tenant.s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)


@pytest.fixture(scope="module")
def sealed(cluster: Federation) -> tuple[Tenant, str]:
    """A default (encryption required) tenant with a bucket."""
    _, key, secret = cluster.create_tenant()
    tenant = Tenant(cluster, key, secret, cluster.s3(key, secret))
    bucket = f"hostile-enc-{secrets.token_hex(3)}"
    tenant.s3.create_bucket(Bucket=bucket)
    return tenant, bucket


def backend_keys(cluster: Federation) -> set[tuple[int, str]]:
    """Every object on every backend (moto lists at most 1000 per call: enough here)."""
    found: set[tuple[int, str]] = set()
    for index in range(len(BACKENDS)):
        listing = cluster.backend_s3(index).list_objects_v2(Bucket=cluster.backend_bucket(index))
        found |= {(index, o["Key"]) for o in listing.get("Contents", [])}
    return found


def s3_error(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"].startswith("application/xml"), response.text
    return response.status_code, ET.fromstring(response.content).findtext("Code") or ""


# (name, method, path and query with {b} bucket / {u} upload id, headers, body, status, code)
CASES: list[tuple[str, str, str, dict[str, str], bytes, int, str]] = [
    ("range", "GET", "/{b}/obj", {"Range": f"bytes=0-{HUGE}"}, b"", 416, "InvalidRange"),
    ("range-first", "GET", "/{b}/obj", {"Range": f"bytes={HUGE}-"}, b"", 416, "InvalidRange"),
    ("range-suffix", "GET", "/{b}/obj", {"Range": f"bytes=-{HUGE}"}, b"", 416, "InvalidRange"),
    ("max-keys", "GET", f"/{{b}}?max-keys={HUGE}", {}, b"", 400, "InvalidArgument"),
    ("max-keys-v2", "GET", f"/{{b}}?list-type=2&max-keys={HUGE}", {}, b"", 400, "InvalidArgument"),
    (
        "max-keys-versions",
        "GET",
        f"/{{b}}?versions&max-keys={HUGE}",
        {},
        b"",
        400,
        "InvalidArgument",
    ),
    ("max-uploads", "GET", f"/{{b}}?uploads&max-uploads={HUGE}", {}, b"", 400, "InvalidArgument"),
    (
        "max-parts",
        "GET",
        f"/{{b}}/mp?uploadId={{u}}&max-parts={HUGE}",
        {},
        b"",
        400,
        "InvalidArgument",
    ),
    (
        "part-number-marker",
        "GET",
        f"/{{b}}/mp?uploadId={{u}}&part-number-marker={HUGE}",
        {},
        b"",
        400,
        "InvalidArgument",
    ),
    (
        "part-number-marker-2^31",
        "GET",
        "/{b}/mp?uploadId={u}&part-number-marker=2147483648",
        {},
        b"",
        400,
        "InvalidArgument",
    ),
    ("partNumber-get", "GET", f"/{{b}}/obj?partNumber={HUGE}", {}, b"", 400, "InvalidArgument"),
    (
        "partNumber-put",
        "PUT",
        f"/{{b}}/mp?uploadId={{u}}&partNumber={HUGE}",
        {},
        b"x",
        400,
        "InvalidArgument",
    ),
    (
        "copy-source-range",
        "PUT",
        "/{b}/mp?uploadId={u}&partNumber=1",
        {"x-amz-copy-source": "/{b}/obj", "x-amz-copy-source-range": f"bytes=0-{HUGE}"},
        b"",
        400,
        "InvalidArgument",
    ),
    (
        "complete-part-number",
        "POST",
        "/{b}/mp?uploadId={u}",
        {},
        (
            f"<CompleteMultipartUpload><Part><PartNumber>{HUGE}</PartNumber><ETag>x</ETag>"
            "</Part></CompleteMultipartUpload>"
        ).encode(),
        400,
        "MalformedXML",
    ),
    (
        "if-modified-since-0001",
        "GET",
        "/{b}/obj",
        {"If-Modified-Since": "0001-01-01T00:00:00+12:00"},
        b"",
        400,
        "InvalidArgument",
    ),
    (
        "if-unmodified-since-9999",
        "GET",
        "/{b}/obj",
        {"If-Unmodified-Since": "9999-12-31T23:59:59-12:00"},
        b"",
        400,
        "InvalidArgument",
    ),
    (
        "copy-if-modified-since",
        "PUT",
        "/{b}/copy",
        {
            "x-amz-copy-source": "/{b}/obj",
            "x-amz-copy-source-if-modified-since": "0001-01-01T00:00:00+12:00",
        },
        b"",
        400,
        "InvalidArgument",
    ),
    *[
        (param, "GET", f"/{{b}}/obj?{param}=%E2%82%AC", {}, b"", 400, "InvalidArgument")
        for param in (
            "response-content-type",
            "response-content-disposition",
            "response-cache-control",
            "response-expires",
            "response-content-language",
            "response-content-encoding",
        )
    ],
    ("prefix-nul", "GET", "/{b}?prefix=a%00", {}, b"", 400, "InvalidArgument"),
    ("marker-nul", "GET", "/{b}?marker=%00", {}, b"", 400, "InvalidArgument"),
    ("start-after-nul", "GET", "/{b}?list-type=2&start-after=%00", {}, b"", 400, "InvalidArgument"),
    ("key-marker-nul", "GET", "/{b}?versions&key-marker=%00", {}, b"", 400, "InvalidArgument"),
    (
        "uploads-key-marker-nul",
        "GET",
        "/{b}?uploads&key-marker=%00",
        {},
        b"",
        400,
        "InvalidArgument",
    ),
    (
        "upload-id-marker-nul",
        "GET",
        "/{b}?uploads&key-marker=a&upload-id-marker=%00",
        {},
        b"",
        400,
        "InvalidArgument",
    ),
    ("upload-id-nul-list", "GET", "/{b}/mp?uploadId=%00", {}, b"", 404, "NoSuchUpload"),
    (
        "upload-id-nul-part",
        "PUT",
        "/{b}/mp?uploadId=%00&partNumber=1",
        {},
        b"x",
        404,
        "NoSuchUpload",
    ),
    ("upload-id-nul-abort", "DELETE", "/{b}/mp?uploadId=%00", {}, b"", 404, "NoSuchUpload"),
    (
        "copy-source-version-nul",
        "PUT",
        "/{b}/copy2",
        {"x-amz-copy-source": "/{b}/obj?versionId=%00"},
        b"",
        400,
        "InvalidArgument",
    ),
    (
        "rewrap-nul-key",
        "POST",
        "/{b}?rewrap",
        {},
        json.dumps(
            {"items": [{"key": "a\x00b", "expect_key_id": "k", "expect_key_version": 1}]}
        ).encode(),
        400,
        "InvalidRequest",
    ),
    (
        "rewrap-expect-version-2^40",
        "POST",
        "/{b}?rewrap",
        {},
        json.dumps(
            {"items": [{"key": "obj", "expect_key_id": "k", "expect_key_version": 2**40}]}
        ).encode(),
        400,
        "InvalidRequest",
    ),
    ("rewrap-deep-json", "POST", "/{b}?rewrap", {}, DEEP, 400, "InvalidRequest"),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_hostile_s3_input_is_a_4xx_at_its_parser(
    cluster: Federation,
    plain: tuple[Tenant, str, str],
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    code: str,
) -> None:
    tenant, bucket, upload = plain
    fill = {"b": bucket, "u": upload}
    before = backend_keys(cluster)
    response = tenant.raw(
        method,
        path.format(**fill),
        body=body,
        headers={k: v.format(**fill) for k, v in headers.items()},
    )
    assert s3_error(response) == (status, code), response.text
    assert backend_keys(cluster) - before == set()


def test_date_at_the_calendars_edge_without_x_amz_date_is_403(
    cluster: Federation, plain: tuple[Tenant, str, str]
) -> None:
    """The issue's reproducer: ``Date`` in year 9999 with a negative offset overflowed while
    converting to UTC, before the signature was even looked at."""
    tenant, bucket, _ = plain
    auth = (
        f"AWS4-HMAC-SHA256 Credential={tenant.key}/99991231/{cluster.settings.region}/s3/"
        f"aws4_request, SignedHeaders=date;host, Signature={'0' * 64}"
    )
    response = httpx.get(
        f"{cluster.endpoint}/{bucket}/obj",
        headers={
            "Date": "Fri, 31 Dec 9999 23:59:59 -1200",
            "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
            "Authorization": auth,
        },
        timeout=30,
    )
    assert s3_error(response) == (403, "AccessDenied")


@pytest.mark.parametrize("version", [2**31, 2**32 - 1])
def test_key_version_an_integer_column_cannot_hold_is_refused_before_any_backend_write(
    cluster: Federation, sealed: tuple[Tenant, str], version: int
) -> None:
    """The wrapped-key format carries a u32 version; the metadata column is a signed INTEGER.
    Before the fix the body went to the backends and the commit then failed (500)."""
    tenant, bucket = sealed
    envelope = fake_envelope(version=version)
    body = bp1_header(0) + bytes(16)
    before = backend_keys(cluster)
    s3_put = tenant.raw(
        "PUT",
        f"/{bucket}/kv",
        body=body,
        headers={f"x-amz-meta-{k}": v for k, v in envelope.items()},
    )
    assert s3_error(s3_put) == (400, "InvalidRequest") and "key-version" in s3_put.text
    objects_put = tenant.raw(
        "PUT",
        f"/objects/{bucket}/kv",
        body=body,
        headers={
            "X-Encrypted-Key": envelope["bp-wrapped-key"],
            "X-Key-Id": envelope["bp-key-id"],
            "X-Key-Version": envelope["bp-key-version"],
            "X-Encryption-Alg": envelope["bp-wrap-alg"],
        },
    )
    assert s3_error(objects_put) == (400, "InvalidRequest")
    assert backend_keys(cluster) - before == set()
    assert tenant.raw("HEAD", f"/{bucket}/kv").status_code == 404


def _admin_post(cluster: Federation, path: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{cluster.endpoint}{path}",
        content=body,
        headers={"Authorization": f"Bearer {cluster.admin_token}"},
        timeout=30,
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(DEEP, id="deep-array"),
        pytest.param(b'{"a":' * 10_000 + b"1" + b"}" * 10_000, id="deep-object"),
        pytest.param(b'{"name": ' + HUGE.encode() + b"}", id="huge-int"),
        pytest.param(b'{"name": "a\\u0000b"}', id="nul"),
        pytest.param(b'{"name": "\\ud800"}', id="lone-surrogate"),
    ],
)
def test_admin_refuses_hostile_json_with_400(cluster: Federation, body: bytes) -> None:
    """``/admin`` renders its errors as the S3 XML error document (docs/admin.md)."""
    for path in ("/admin/tenants", "/admin/policy/explain"):
        response = _admin_post(cluster, path, body)
        assert s3_error(response) == (400, "InvalidRequest"), response.text


def _json_error(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.status_code, response.json()["error"]


def test_tenant_json_apis_refuse_deep_json_with_a_json_400(
    cluster: Federation, plain: tuple[Tenant, str, str]
) -> None:
    tenant = plain[0]
    for path in ("/import/sources", "/import/runs", "/ui/api/explain"):
        body = DEEP[:8000] + DEEP[-8000:] if path.startswith("/ui/") else DEEP
        response = signed_request(cluster, tenant.key, tenant.secret, "POST", path, body=body)
        assert _json_error(response) == (400, "InvalidRequest"), (path, response.text)


def test_import_ids_beyond_bigint_are_4xx(
    cluster: Federation, plain: tuple[Tenant, str, str]
) -> None:
    tenant = plain[0]
    too_big = "9" * 25
    for path in (f"/import/runs/{too_big}", f"/import/sources/{too_big}"):
        assert _json_error(tenant.raw("GET", path))[0] == 404
    assert _json_error(tenant.raw("GET", f"/import/runs?before={too_big}")) == (
        400,
        "InvalidArgument",
    )


# --------------------------------------------------------------------------- signed headers


def _objects_headers(envelope: dict[str, str]) -> dict[str, str]:
    return {
        "X-Encrypted-Key": envelope["bp-wrapped-key"],
        "X-Key-Id": envelope["bp-key-id"],
        "X-Key-Version": envelope["bp-key-version"],
        "X-Encryption-Alg": envelope["bp-wrap-alg"],
        "X-Content-Id": envelope["bp-content-id"],
        "X-Redundancy-Class": "StandardClass",
    }


@pytest.mark.parametrize(
    ("swap", "value"),
    [
        ("X-Encrypted-Key", base64.b64encode(b"attacker").decode()),
        ("X-Redundancy-Class", "RegionalClass"),
        ("X-Key-Version", "2"),
    ],
)
def test_replayed_request_with_an_unsigned_store_header_is_refused_and_stores_nothing(
    cluster: Federation, sealed: tuple[Tenant, str], swap: str, value: str
) -> None:
    """A captured ``/objects`` PUT (signed without ``swap``) replayed with ``swap`` added: the
    signature still matches the signed part, but the header changes what would be stored."""
    tenant, bucket = sealed
    envelope = fake_envelope()
    headers = {k: v for k, v in _objects_headers(envelope).items() if k != swap}
    body = bp1_header(0) + bytes(16)
    before = backend_keys(cluster)
    key = f"replay-{secrets.token_hex(3)}"
    response = tenant.raw(
        "PUT", f"/objects/{bucket}/{key}", body=body, headers=headers, unsigned={swap: value}
    )
    assert s3_error(response) == (403, "AccessDenied") and swap.lower() in response.text
    assert backend_keys(cluster) - before == set()
    assert tenant.raw("HEAD", f"/{bucket}/{key}").status_code == 404
    signed = tenant.raw(
        "PUT", f"/objects/{bucket}/{key}", body=body, headers=_objects_headers(envelope)
    )
    assert signed.status_code == 200, signed.text  # the same headers, signed, are accepted


def test_s3_put_with_an_unsigned_class_or_bp_header_is_refused(
    cluster: Federation, plain: tuple[Tenant, str, str]
) -> None:
    tenant, bucket, _ = plain
    for header, value in (("X-Redundancy-Class", "RegionalClass"), ("x-bp-region-lock", "eu")):
        response = tenant.raw("PUT", f"/{bucket}/unsigned", body=b"abc", unsigned={header: value})
        assert s3_error(response) == (403, "AccessDenied"), response.text
    assert tenant.raw("HEAD", f"/{bucket}/unsigned").status_code == 404
    ok = tenant.raw(
        "PUT", f"/{bucket}/signed", body=b"abc", headers={"X-Redundancy-Class": "StandardClass"}
    )
    assert ok.status_code == 200, ok.text


def test_presigned_put_with_an_unsigned_class_header_is_refused(
    cluster: Federation, plain: tuple[Tenant, str, str]
) -> None:
    tenant, bucket, _ = plain
    url = tenant.s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "presigned"}, ExpiresIn=300
    )
    response = httpx.put(url, content=b"abc", headers={"X-Redundancy-Class": "RegionalClass"})
    assert s3_error(response) == (403, "AccessDenied")
    assert httpx.put(url, content=b"abc").status_code == 200
