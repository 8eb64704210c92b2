"""Invariant 7 at the wire: every request is authenticated with SigV4, and each failure is a
403 with the S3 error code a client can act on."""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any
from unittest import mock

import boto3
import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.test_s3_api import error_of
from tests.support.cluster import Federation

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def creds(cluster: Federation) -> tuple[str, str]:
    _, key, secret = cluster.create_tenant(allow_plaintext=True)
    s3 = cluster.s3(key, secret)
    s3.create_bucket(Bucket="authz")
    s3.put_object(Bucket="authz", Key="obj", Body=b"payload")
    return key, secret


def test_wrong_secret_is_signature_mismatch(cluster: Federation, creds: tuple[str, str]) -> None:
    s3 = cluster.s3(creds[0], creds[1] + "x")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="authz", Key="obj")
    assert error_of(exc) == (403, "SignatureDoesNotMatch")


def test_unknown_access_key(cluster: Federation) -> None:
    s3 = cluster.s3("BPNOSUCHKEY000000000", "secret")
    with pytest.raises(ClientError) as exc:
        s3.list_buckets()
    assert error_of(exc) == (403, "InvalidAccessKeyId")


def test_anonymous_request_is_denied(cluster: Federation, creds: tuple[str, str]) -> None:
    response = httpx.get(f"{cluster.endpoint}/authz/obj")
    assert response.status_code == 403
    assert b"<Code>AccessDenied</Code>" in response.content
    assert b"payload" not in response.content


def test_skewed_clock_is_refused(cluster: Federation, creds: tuple[str, str]) -> None:
    s3 = cluster.s3(*creds)
    skewed = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    with mock.patch.object(botocore.auth.datetime, "datetime", wraps=dt.datetime) as fake:
        fake.utcnow.return_value = skewed.replace(tzinfo=None)
        fake.now.return_value = skewed
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket="authz", Key="obj")
    assert error_of(exc) == (403, "RequestTimeTooSkewed")


def test_tampered_signed_header_is_refused(cluster: Federation, creds: tuple[str, str]) -> None:
    s3 = cluster.s3(*creds)

    def tamper(request: Any, **_: Any) -> None:
        request.headers["x-amz-meta-owner"] = "mallory"  # changed after signing

    s3.meta.events.register("before-send.s3.PutObject", tamper)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="authz", Key="tampered", Body=b"x", Metadata={"owner": "alice"})
    assert error_of(exc) == (403, "SignatureDoesNotMatch")
    assert cluster.replicas("authz", "tampered") == []


def test_presigned_urls(cluster: Federation, creds: tuple[str, str]) -> None:
    s3 = cluster.s3(*creds)
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "authz", "Key": "obj"}, ExpiresIn=60
    )
    assert httpx.get(url).content == b"payload"
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "authz", "Key": "presigned"}, ExpiresIn=60
    )
    assert httpx.put(put_url, content=b"via url").status_code == 200
    assert s3.get_object(Bucket="authz", Key="presigned")["Body"].read() == b"via url"
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=120)
    with mock.patch.object(botocore.auth.datetime, "datetime", wraps=dt.datetime) as fake:
        fake.utcnow.return_value = past.replace(tzinfo=None)
        fake.now.return_value = past
        expired = s3.generate_presigned_url(
            "get_object", Params={"Bucket": "authz", "Key": "obj"}, ExpiresIn=60
        )
    response = httpx.get(expired)
    assert response.status_code == 403 and b"<Code>AccessDenied</Code>" in response.content
    assert b"expired" in response.content


def test_payload_hash_mismatch_stores_nothing(cluster: Federation, creds: tuple[str, str]) -> None:
    s3 = cluster.s3(*creds)

    def swap_body(request: Any, **_: Any) -> None:
        request.body = b"Y" * 5000  # the signed sha256 was over the original body

    s3.meta.events.register("before-send.s3.PutObject", swap_body)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="authz", Key="swapped", Body=b"X" * 5000)
    assert error_of(exc) == (400, "XAmzContentSHA256Mismatch")
    assert cluster.replicas("authz", "swapped") == []


class _EmptyRaw:
    def stream(self, **_: Any) -> Any:
        yield b""


def _captured_https_put(
    cluster: Federation, creds: tuple[str, str], body: bytes
) -> tuple[str, httpx.Headers, bytes]:
    """What current boto3 sends over https by default (aws-chunked, unsigned payload, CRC32
    trailer), captured before the network so the same bytes can be replayed over http."""
    https = cluster.endpoint.replace("http://", "https://")
    s3 = boto3.client(
        "s3",
        endpoint_url=https,
        aws_access_key_id=creds[0],
        aws_secret_access_key=creds[1],
        region_name=cluster.settings.region,
        config=Config(s3={"addressing_style": "path"}),
    )
    sent: dict[str, Any] = {}

    def capture(request: Any, **_: Any) -> AWSResponse:
        raw = request.body
        sent["body"] = raw.read() if hasattr(raw, "read") else bytes(raw or b"")
        sent["headers"] = {
            k: (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()
        }
        sent["url"] = request.url
        return AWSResponse(request.url, 200, {}, _EmptyRaw())

    s3.meta.events.register("before-send.s3.PutObject", capture)
    s3.put_object(Bucket="authz", Key="chunked", Body=body)
    url = sent["url"].replace("https://", "http://")
    # httpx frames the body with Transfer-Encoding: chunked itself when given an iterator,
    # exactly as botocore does on the wire (no Content-Length).
    # Case-insensitive: botocore's own signer title-cases names, the AWS CRT signer (used
    # when awscrt is installed, as here) sends them lower-case.
    headers = httpx.Headers(
        {k: v for k, v in sent["headers"].items() if k.lower() != "transfer-encoding"}
    )
    return url, headers, sent["body"]


def _chunks(data: bytes, size: int = 256 * 1024) -> Any:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


def test_aws_chunked_unsigned_trailer_upload(cluster: Federation, creds: tuple[str, str]) -> None:
    body = os.urandom(3 * 1024 * 1024 + 11)
    url, headers, raw = _captured_https_put(cluster, creds, body)
    assert headers["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert headers["X-Amz-Trailer"] == "x-amz-checksum-crc32"
    s3 = cluster.s3(*creds)
    # The request with one payload byte flipped fails its CRC32 trailer; nothing is stored,
    # and a failed request does not use up its signature (gateway/admission.py).
    corrupted = bytearray(raw)
    corrupted[200] ^= 0x01
    response = httpx.put(url, content=_chunks(bytes(corrupted)), headers=headers)
    assert response.status_code == 400 and b"<Code>BadDigest</Code>" in response.content
    response = httpx.put(url, content=_chunks(raw), headers=headers)
    assert response.status_code == 200, response.text
    assert s3.get_object(Bucket="authz", Key="chunked")["Body"].read() == body
    # The seed signature covers no body byte: a replay with another body within the skew
    # window is refused by the replay cache, and the object is unchanged.
    other = os.urandom(len(body))
    _, _, swapped = _captured_https_put(cluster, creds, other)
    time.sleep(cluster.settings.replay_grace_s + 0.5)  # twins within the grace pass
    response = httpx.put(url, content=_chunks(swapped), headers=headers)
    assert response.status_code == 403 and b"replayed" in response.content
    assert s3.get_object(Bucket="authz", Key="chunked")["Body"].read() == body
