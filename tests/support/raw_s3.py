"""SigV4-signed raw HTTP requests: bodies and headers boto3 would not send (malformed XML,
entity expansion, a missing Content-MD5), signed exactly like a client would sign them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree as ET

import httpx
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.cluster import Federation

__all__ = ["NS", "Tenant", "signed_request"]

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def signed_request(
    cluster: Federation,
    access_key: str,
    secret: str,
    method: str,
    path_and_query: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    unsigned: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Send one request, signed with SigV4 over the payload's SHA-256; ``unsigned`` headers
    are added after signing (a replayed request with a header swapped or added)."""
    url = f"{cluster.endpoint}{path_and_query}"
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(Credentials(access_key, secret), "s3", cluster.settings.region).add_auth(request)
    prepared = request.prepare()
    sent = {**dict(prepared.headers.items()), **dict(unsigned or {})}
    return httpx.request(method, prepared.url, content=body, headers=sent, timeout=60)


@dataclass
class Tenant:
    """A plaintext tenant of this module: its boto3 client, and raw signed requests."""

    cluster: Federation
    key: str
    secret: str
    s3: Any

    @classmethod
    def create(cls, cluster: Federation) -> Tenant:
        _, key, secret = cluster.create_tenant(allow_plaintext=True)
        return cls(cluster, key, secret, cluster.s3(key, secret))

    def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return signed_request(self.cluster, self.key, self.secret, method, path, **kwargs)

    def listing(self, bucket: str) -> list[tuple[str, str, str, bool]]:
        """(key, version id, Version|DeleteMarker, is latest) in the order the XML has them
        (boto3 splits versions and markers into two lists)."""
        response = self.raw("GET", f"/{bucket}?versions=")
        assert response.status_code == 200, response.text
        root = ET.fromstring(response.content)
        return [
            (
                e.findtext(f"{NS}Key") or "",
                e.findtext(f"{NS}VersionId") or "",
                e.tag.removeprefix(NS),
                e.findtext(f"{NS}IsLatest") == "true",
            )
            for e in root
            if e.tag in (f"{NS}Version", f"{NS}DeleteMarker")
        ]

    def version_ids(self, bucket: str, key: str) -> list[str]:
        """Versions and markers of ``key``, newest first."""
        return [vid for k, vid, _, _ in self.listing(bucket) if k == key]
