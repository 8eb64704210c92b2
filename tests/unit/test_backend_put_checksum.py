"""``S3BackendClient.put`` with the part's SHA-256 (no network: boto3's two clients replaced by
recorders): the digest goes as ``ChecksumSHA256`` on the unsigned-payload client; a backend
that refuses the header (B2, R2) gets the put again the old way, and every later put too."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

from actors.backend_client import S3BackendClient, new_locator
from core.errors import BackendUnavailable


class Recorder:
    def __init__(self, refuse: str | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.refuse = refuse

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        body = kwargs["Body"]
        if hasattr(body, "read"):  # ViewBody: read while the call runs, as botocore does
            kwargs["Body"] = body.read()
        self.calls.append(kwargs)
        if self.refuse:
            raise ClientError({"Error": {"Code": self.refuse, "Message": "no"}}, "PutObject")
        return {}


def client(checked: Recorder, plain: Recorder) -> S3BackendClient:
    c = S3BackendClient(
        endpoint="http://127.0.0.1:9", bucket="bucket-x", access_key="a", secret_key="b"
    )
    c._s3_checked, c._s3 = checked, plain
    return c


def test_the_digest_goes_as_the_checksum_header() -> None:
    checked, plain = Recorder(), Recorder()
    data = b"part" * 100
    digest = hashlib.sha256(data).digest()
    client(checked, plain).put(new_locator(), memoryview(data), digest)
    assert [c["ChecksumSHA256"] for c in checked.calls] == [base64.b64encode(digest).decode()]
    assert checked.calls[0]["Body"] == data and plain.calls == []


def test_without_a_digest_the_put_is_signed_as_before() -> None:
    checked, plain = Recorder(), Recorder()
    client(checked, plain).put(new_locator(), b"x")
    assert checked.calls == [] and len(plain.calls) == 1
    assert "ChecksumSHA256" not in plain.calls[0]


@pytest.mark.parametrize("code", ["InvalidArgument", "NotImplemented"])
def test_a_backend_refusing_the_header_gets_signed_puts(code: str) -> None:
    checked, plain = Recorder(refuse=code), Recorder()
    c = client(checked, plain)
    digest = hashlib.sha256(b"x").digest()
    c.put(new_locator(), b"x", digest)
    c.put(new_locator(), b"x", digest)
    assert len(checked.calls) == 1  # tried once, then never again
    assert len(plain.calls) == 2 and not c.checksums_accepted


def test_other_refusals_are_not_retried() -> None:
    checked, plain = Recorder(refuse="AccessDenied"), Recorder()
    c = client(checked, plain)
    with pytest.raises(BackendUnavailable):
        c.put(new_locator(), b"x", hashlib.sha256(b"x").digest())
    assert plain.calls == [] and c.checksums_accepted
