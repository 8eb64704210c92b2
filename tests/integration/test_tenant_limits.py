"""A tenant's own request limits (issue 14): set through ``/admin/tenants/{t}/limits``, in force
at once (they travel with the cached identity, invalidated by the change), refused when
malformed, and back to the deployment's settings with ``null``. The deployment's defaults are
far above anything the tests do, so only this tenant is limited."""

from __future__ import annotations

import secrets

import pytest
from botocore.exceptions import ClientError

from tests.support.cluster import Federation
from tests.support.raw_s3 import signed_request

pytestmark = pytest.mark.integration


def test_tenant_request_rate_and_uploads_override(cluster: Federation) -> None:
    name, key, secret = cluster.create_tenant(allow_plaintext=True)
    s3 = cluster.s3(key, secret)
    bucket = f"lim-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    s3.list_buckets()  # the identity is cached before the change
    path = f"/admin/tenants/{name}/limits"
    assert cluster.admin("GET", path).json() == {
        "tenant": name,
        "requests_per_s": None,
        "bytes_per_s": None,
        "max_open_uploads": None,
    }
    changed = cluster.admin("PUT", path, {"requests_per_s": 0.5, "max_open_uploads": 1})
    assert changed.status_code == 200, changed.text
    assert changed.json()["requests_per_s"] == 0.5
    statuses = [signed_request(cluster, key, secret, "GET", "/").status_code for _ in range(4)]
    assert statuses[0] == 200 and statuses[-1] == 503, statuses  # burst: 1 request
    throttled = signed_request(cluster, key, secret, "GET", "/")
    assert b"<Code>SlowDown</Code>" in throttled.content
    assert int(throttled.headers["retry-after"]) >= 1

    # The upload limit, with the rate back to the deployment's setting.
    assert cluster.admin("PUT", path, {"requests_per_s": None}).status_code == 200
    s3.create_multipart_upload(Bucket=bucket, Key="a")
    with pytest.raises(ClientError) as info:
        s3.create_multipart_upload(Bucket=bucket, Key="b")
    error = info.value.response
    assert (error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]) == (
        503,
        "SlowDown",
    )
    assert cluster.admin("PUT", path, {"max_open_uploads": 0}).status_code == 200  # no limit
    s3.create_multipart_upload(Bucket=bucket, Key="b")
    for _ in range(10):
        s3.list_buckets()


@pytest.mark.parametrize(
    "payload",
    [
        {"requests_per_s": -1},
        {"requests_per_s": "fast"},
        {"bytes_per_s": 1.5},
        {"max_open_uploads": True},
        {"max_open_uploads": 2**31},
        {"burst": 3},
    ],
)
def test_malformed_limits_are_refused(cluster: Federation, payload: dict[str, object]) -> None:
    name, _, _ = cluster.create_tenant()
    response = cluster.admin("PUT", f"/admin/tenants/{name}/limits", payload)
    assert response.status_code == 400 and b"InvalidArgument" in response.content
    missing = cluster.admin("PUT", "/admin/tenants/nobody-here/limits", {"requests_per_s": 1})
    assert missing.status_code == 404
