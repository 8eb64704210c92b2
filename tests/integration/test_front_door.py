"""Virtual-hosted-style addressing, CORS for the UI origin, and the private-only ACL rule."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.cluster import UI_ORIGIN, VIRTUAL_HOST_DOMAIN, Federation

pytestmark = pytest.mark.integration


def _code(exc: ClientError) -> tuple[int, str]:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


@pytest.fixture
def virtual_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolve *.s3.bp.test to 127.0.0.1 in this process only (no /etc/hosts edits)."""
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and (
            host == VIRTUAL_HOST_DOMAIN or host.endswith("." + VIRTUAL_HOST_DOMAIN)
        ):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.fixture(scope="module")
def creds(cluster: Federation) -> tuple[str, str]:
    _, key, secret = cluster.create_tenant(allow_plaintext=True)
    return key, secret


def _virtual_client(cluster: Federation, key: str, secret: str) -> Any:
    port = urlparse(cluster.endpoint).port
    return boto3.client(
        "s3",
        endpoint_url=f"http://{VIRTUAL_HOST_DOMAIN}:{port}",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name=cluster.settings.region,
        config=Config(
            s3={"addressing_style": "virtual"},
            retries={"max_attempts": 1, "mode": "standard"},
            signature_version="s3v4",
        ),
    )


def test_virtual_hosted_style_reaches_the_same_buckets(
    cluster: Federation, creds: tuple[str, str], bucket_name: str, virtual_dns: None
) -> None:
    key, secret = creds
    virtual = _virtual_client(cluster, key, secret)
    path_style = cluster.s3(key, secret)
    virtual.create_bucket(Bucket=bucket_name)
    # Keys that collide with the gateway's fixed routes in path form reach the S3 API.
    names = ["admin/tokens", "health", "objects/x", "plain key.txt"]
    for name in names:
        virtual.put_object(Bucket=bucket_name, Key=name, Body=name.encode() * 3)
    for name in names:
        assert path_style.get_object(Bucket=bucket_name, Key=name)["Body"].read() == (
            name.encode() * 3
        )
        assert virtual.get_object(Bucket=bucket_name, Key=name)["Body"].read() == (
            name.encode() * 3
        )
    listed = virtual.list_objects_v2(Bucket=bucket_name)
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(names)
    assert virtual.head_bucket(Bucket=bucket_name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    for name in names:
        virtual.delete_object(Bucket=bucket_name, Key=name)
    virtual.delete_bucket(Bucket=bucket_name)
    with pytest.raises(ClientError) as missing:
        path_style.head_bucket(Bucket=bucket_name)
    assert _code(missing.value)[0] == 404


def test_virtual_hosted_signature_covers_the_sent_path(
    cluster: Federation, creds: tuple[str, str], bucket_name: str, virtual_dns: None
) -> None:
    """A request signed for one virtual host is refused when sent to another bucket's host."""
    key, secret = creds
    virtual = _virtual_client(cluster, key, secret)
    virtual.create_bucket(Bucket=bucket_name)
    other = bucket_name + "-b"
    virtual.create_bucket(Bucket=other)

    def retarget(request: Any, **_: Any) -> None:
        request.headers["Host"] = f"{other}.{VIRTUAL_HOST_DOMAIN}"

    virtual.meta.events.register("before-send.s3.PutObject", retarget)
    with pytest.raises(ClientError) as refused:
        virtual.put_object(Bucket=bucket_name, Key="k", Body=b"x")
    assert _code(refused.value) == (403, "SignatureDoesNotMatch")
    virtual.meta.events.unregister("before-send.s3.PutObject", retarget)
    assert virtual.list_objects_v2(Bucket=other)["KeyCount"] == 0
    virtual.delete_bucket(Bucket=other)
    virtual.delete_bucket(Bucket=bucket_name)


def _raw(cluster: Federation, method: str, path: str, headers: dict[str, str]) -> Any:
    url = urlparse(cluster.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def test_cors_preflight_allows_only_the_ui_origin(cluster: Federation) -> None:
    status, headers, _ = _raw(
        cluster,
        "OPTIONS",
        "/some-bucket/some-key",
        {
            "Origin": UI_ORIGIN,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization,x-amz-date,content-type",
        },
    )
    assert status == 200
    assert headers["access-control-allow-origin"] == UI_ORIGIN
    assert "PUT" in headers["access-control-allow-methods"]
    assert "x-amz-date" in headers["access-control-allow-headers"]
    assert "ETag" in headers["access-control-expose-headers"]

    status, headers, body = _raw(
        cluster,
        "OPTIONS",
        "/some-bucket/some-key",
        {"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert status == 403
    assert "access-control-allow-origin" not in headers
    assert b"<Code>AccessForbidden</Code>" in body

    status, headers, body = _raw(
        cluster,
        "OPTIONS",
        "/b/k",
        {"Origin": UI_ORIGIN, "Access-Control-Request-Method": "<script>"},
    )
    assert status == 403 and b"<script>" not in body


def test_cors_headers_on_real_responses(
    cluster: Federation, creds: tuple[str, str], bucket_name: str
) -> None:
    key, secret = creds
    s3 = cluster.s3(key, secret)
    s3.create_bucket(Bucket=bucket_name)
    s3.put_object(Bucket=bucket_name, Key="k", Body=b"hello")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket_name, "Key": "k"})
    path = url[len(cluster.endpoint) :]
    status, headers, body = _raw(cluster, "GET", path, {"Origin": UI_ORIGIN})
    assert (status, body) == (200, b"hello")
    assert headers["access-control-allow-origin"] == UI_ORIGIN
    status, headers, body = _raw(cluster, "GET", path, {"Origin": "http://evil.example"})
    assert status == 200 and "access-control-allow-origin" not in headers
    # Unauthenticated requests from the UI origin are still refused: CORS authorizes nothing.
    status, headers, body = _raw(cluster, "GET", f"/{bucket_name}/k", {"Origin": UI_ORIGIN})
    assert status == 403 and b"<Error>" in body
    s3.delete_object(Bucket=bucket_name, Key="k")
    s3.delete_bucket(Bucket=bucket_name)


@pytest.fixture
def acl_bucket(cluster: Federation, creds: tuple[str, str], bucket_name: str) -> Iterator[Any]:
    s3 = cluster.s3(*creds)
    s3.create_bucket(Bucket=bucket_name)
    yield s3
    for obj in s3.list_objects_v2(Bucket=bucket_name).get("Contents", []):
        s3.delete_object(Bucket=bucket_name, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket_name)


def test_acl_is_private_and_only_private(acl_bucket: Any, bucket_name: str) -> None:
    s3 = acl_bucket
    acl = s3.get_bucket_acl(Bucket=bucket_name)
    assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
    assert acl["Grants"][0]["Grantee"]["ID"] == acl["Owner"]["ID"]

    s3.put_object(Bucket=bucket_name, Key="k", Body=b"x", ACL="private")
    assert s3.get_object_acl(Bucket=bucket_name, Key="k")["Grants"][0]["Permission"] == (
        "FULL_CONTROL"
    )
    s3.put_object_acl(Bucket=bucket_name, Key="k", ACL="private")
    s3.put_bucket_acl(Bucket=bucket_name, ACL="private")

    for canned, expected in [
        ("public-read", (403, "AccessDenied")),
        ("public-read-write", (403, "AccessDenied")),
        ("authenticated-read", (403, "AccessDenied")),
        ("bucket-owner-read", (501, "NotImplemented")),
    ]:
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=bucket_name, Key="public", Body=b"x", ACL=canned)
        assert _code(refused.value) == expected, canned
        with pytest.raises(ClientError) as refused:
            s3.put_object_acl(Bucket=bucket_name, Key="k", ACL=canned)
        assert _code(refused.value) == expected, canned
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket_name, Key="g", Body=b"x", GrantRead='uri="x"')
    assert _code(refused.value) == (501, "NotImplemented")
    for extra in ({"ServerSideEncryption": "AES256"}, {"Tagging": "a=b"}):
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=bucket_name, Key="sse", Body=b"x", **extra)
        assert _code(refused.value) == (501, "NotImplemented"), extra

    owner = acl["Owner"]["ID"]
    public_policy = {
        "Owner": {"ID": owner},
        "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": owner}, "Permission": "FULL_CONTROL"},
            {
                "Grantee": {
                    "Type": "Group",
                    "URI": "http://acs.amazonaws.com/groups/global/AllUsers",
                },
                "Permission": "READ",
            },
        ],
    }
    with pytest.raises(ClientError) as refused:
        s3.put_bucket_acl(Bucket=bucket_name, AccessControlPolicy=public_policy)
    assert _code(refused.value) == (501, "NotImplemented")
    s3.put_bucket_acl(
        Bucket=bucket_name,
        AccessControlPolicy={"Owner": {"ID": owner}, "Grants": public_policy["Grants"][:1]},
    )
    with pytest.raises(ClientError) as missing:
        s3.get_object_acl(Bucket=bucket_name, Key="nope")
    assert _code(missing.value) == (404, "NoSuchKey")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket_name)["Contents"]] == ["k"]
