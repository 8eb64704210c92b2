"""SigV4-signed raw HTTP requests: bodies and headers boto3 would not send (malformed XML,
entity expansion, a missing Content-MD5), signed exactly like a client would sign them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import httpx
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.cluster import Federation

__all__ = ["signed_request"]


def signed_request(
    cluster: Federation,
    access_key: str,
    secret: str,
    method: str,
    path_and_query: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Send one request, signed with SigV4 over the payload's SHA-256."""
    url = f"{cluster.endpoint}{path_and_query}"
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(Credentials(access_key, secret), "s3", cluster.settings.region).add_auth(request)
    prepared = request.prepare()
    return httpx.request(
        method, prepared.url, content=body, headers=dict(prepared.headers.items()), timeout=60
    )
