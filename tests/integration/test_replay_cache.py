"""The replay cache (issue 14, gateway/admission.py): a captured PUT, DELETE or presigned PUT
sent again within its validity is refused with 403 AccessDenied and changes nothing; reads
may be repeated; a request that failed does not use up its signature (an SDK retry within
the same second carries the same signature, botocore signing neither its invocation id nor
its attempt number)."""

from __future__ import annotations

import hashlib
import secrets
import time

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.support.cluster import Federation

pytestmark = pytest.mark.integration


def _after_grace(cluster: Federation) -> None:
    """Identical requests within ``replay_grace_s`` of each other are twins, not replays."""
    time.sleep(cluster.settings.replay_grace_s + 0.5)


def _signed(
    cluster: Federation, creds: tuple[str, str], method: str, path: str, body: bytes = b""
) -> tuple[str, dict[str, str]]:
    url = f"{cluster.endpoint}{path}"
    request = AWSRequest(method=method, url=url, data=body)
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(Credentials(*creds), "s3", cluster.settings.region).add_auth(request)
    return url, dict(request.prepare().headers.items())


@pytest.fixture
def creds(cluster: Federation) -> tuple[str, str]:
    _, key, secret = cluster.create_tenant(allow_plaintext=True)
    return key, secret


def test_replayed_put_and_delete_are_refused(cluster: Federation, creds: tuple[str, str]) -> None:
    s3 = cluster.s3(*creds)
    bucket = f"rp-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    url, headers = _signed(cluster, creds, "PUT", f"/{bucket}/doc", b"v1")
    assert httpx.put(url, content=b"v1", headers=headers).status_code == 200
    s3.put_object(Bucket=bucket, Key="doc", Body=b"v2")
    _after_grace(cluster)
    replay = httpx.put(url, content=b"v1", headers=headers)
    assert replay.status_code == 403, replay.text
    assert b"<Code>AccessDenied</Code>" in replay.content and b"replayed" in replay.content
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"v2"

    url, headers = _signed(cluster, creds, "DELETE", f"/{bucket}/doc")
    assert httpx.delete(url, headers=headers).status_code == 204
    s3.put_object(Bucket=bucket, Key="doc", Body=b"v3")
    _after_grace(cluster)
    replay = httpx.delete(url, headers=headers)
    assert replay.status_code == 403 and b"replayed" in replay.content
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"v3"


def test_identical_twins_within_the_grace_both_count(
    cluster: Federation, creds: tuple[str, str]
) -> None:
    """Two PUTs of the same bytes in one second are two versions of a versioned bucket (the
    same signature, as SigV4 dates to the second): both pass."""
    s3 = cluster.s3(*creds)
    bucket = f"rp-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    url, headers = _signed(cluster, creds, "PUT", f"/{bucket}/twin", b"same")
    assert [httpx.put(url, content=b"same", headers=headers).status_code for _ in range(2)] == [
        200,
        200,
    ]
    versions = s3.list_object_versions(Bucket=bucket, Prefix="twin").get("Versions", [])
    assert len(versions) == 2


def test_reads_may_be_repeated(cluster: Federation, creds: tuple[str, str]) -> None:
    s3 = cluster.s3(*creds)
    bucket = f"rp-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="doc", Body=b"data")
    url, headers = _signed(cluster, creds, "GET", f"/{bucket}/doc")
    for _ in range(3):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 200 and response.content == b"data"


def test_presigned_put_works_once(cluster: Federation, creds: tuple[str, str]) -> None:
    s3 = cluster.s3(*creds)
    bucket = f"rp-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "up"}, ExpiresIn=300
    )
    assert httpx.put(put_url, content=b"first").status_code == 200
    _after_grace(cluster)
    again = httpx.put(put_url, content=b"swapped")
    assert again.status_code == 403 and b"replayed" in again.content
    assert s3.get_object(Bucket=bucket, Key="up")["Body"].read() == b"first"


def test_a_failed_request_does_not_use_up_its_signature(
    cluster: Federation, creds: tuple[str, str]
) -> None:
    s3 = cluster.s3(*creds)
    bucket = f"rp-{secrets.token_hex(4)}"
    url, headers = _signed(cluster, creds, "PUT", f"/{bucket}/doc", b"body")
    first = httpx.put(url, content=b"body", headers=headers)
    assert first.status_code == 404 and b"NoSuchBucket" in first.content
    s3.create_bucket(Bucket=bucket)
    # The same signed request (what a retry in the same second is) now succeeds, once.
    assert httpx.put(url, content=b"body", headers=headers).status_code == 200
    _after_grace(cluster)
    assert httpx.put(url, content=b"body", headers=headers).status_code == 403
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="missing")
