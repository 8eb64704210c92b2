"""SigV2 verification (gateway/s3/sigv2.py) with botocore's HmacV1Auth and HmacV1QueryAuth as
the oracle: what they sign must verify, anything changed after signing must not."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.auth import authenticate
from gateway.s3 import errors, sigv2
from gateway.s3.sigv4 import HttpRequestView, PayloadMode
from tests.unit.test_sigv4 import ACCESS, ENDPOINT, SECRET, view_of


def header_signed(
    method: str, path: str, headers: dict[str, str] | None = None, params: str = ""
) -> HttpRequestView:
    url = ENDPOINT + path + (f"?{params}" if params else "")
    request = AWSRequest(method=method, url=url, headers=headers or {})
    HmacV1Auth(Credentials(ACCESS, SECRET)).add_auth(request)
    return view_of(method, request.url, request.headers)


def presigned(method: str, path: str, expires: int = 3600, params: str = "") -> HttpRequestView:
    url = ENDPOINT + path + (f"?{params}" if params else "")
    request = AWSRequest(method=method, url=url)
    HmacV1QueryAuth(Credentials(ACCESS, SECRET), expires=expires).add_auth(request)
    return view_of(method, request.url, request.headers)


def check(view: HttpRequestView, now: datetime | None = None) -> Any:
    """Verify as the gateway would at ``now`` (default: the present, as botocore signed it)."""
    assert sigv2.is_sigv2(view)
    assert sigv2.parse_access_key(view) == ACCESS
    at = now if now is not None else datetime.now(UTC)
    return sigv2.verify(view, SECRET, now=at, resource_path=view.raw_path)


KEYS = ["k", "dir/a b+c~d=e&f.txt", "ünï ☃", "line\nbreak"]


@pytest.mark.parametrize("key", KEYS)
def test_botocore_header_signatures_verify(key: str) -> None:
    path = "/bkt/" + quote(key, safe="/~")
    verified = check(header_signed("GET", path))
    assert not verified.presigned and verified.payload_mode is PayloadMode.UNSIGNED
    check(header_signed("PUT", path, {"Content-Type": "text/plain", "x-amz-meta-a": "1"}))
    check(header_signed("GET", path, params="versionId=abc&response-content-type=a%2Fb"))
    check(header_signed("POST", path, params="uploads"))
    bucket = header_signed("GET", "/bkt", params="prefix=a%20&encoding-type=url")
    check(bucket)  # botocore signs "/bkt/" for the path "/bkt"


@pytest.mark.parametrize("key", KEYS)
def test_botocore_presigned_urls_verify(key: str) -> None:
    path = "/bkt/" + quote(key, safe="/~")
    verified = check(presigned("GET", path))
    assert verified.presigned
    check(presigned("PUT", path, params="partNumber=1&uploadId=xyz"))


def test_tampering_fails() -> None:
    view = header_signed("PUT", "/bkt/k", {"x-amz-meta-a": "1"})
    for changed in (
        replace(view, method="DELETE"),
        replace(view, raw_path="/bkt/other"),
        replace(view, query_string="versionId=x"),
        replace(view, headers={**view.headers, "x-amz-meta-a": "2"}),
        replace(view, headers={**view.headers, "x-amz-meta-new": "unsigned"}),
        replace(view, headers={**view.headers, "content-type": "text/html"}),
    ):
        with pytest.raises(errors.SignatureDoesNotMatch):
            check(changed)
    with pytest.raises(errors.SignatureDoesNotMatch):
        sigv2.verify(view, "wrong", now=datetime.now(UTC), resource_path=view.raw_path)


def test_clock_and_expiry() -> None:
    # Times relative to the signing moment (botocore signs with the present): a module-level
    # "now" would drift by however long the suite ran before this test.
    signed_at = datetime.now(UTC)
    view = header_signed("GET", "/bkt/k")
    with pytest.raises(errors.RequestTimeTooSkewed):
        check(view, signed_at + timedelta(minutes=16))
    url = presigned("GET", "/bkt/k", expires=60)
    with pytest.raises(errors.AccessDenied, match="expired"):
        check(url, signed_at + timedelta(seconds=120))
    week = presigned("GET", "/bkt/k", expires=7 * 86400)
    check(week)
    too_long = presigned("GET", "/bkt/k", expires=8 * 86400)
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        check(too_long)


def test_malformed_and_mixed() -> None:
    anonymous = HttpRequestView("GET", "/bkt/k", "", {"host": "h"})
    assert not sigv2.is_sigv2(anonymous)
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        sigv2.parse_access_key(replace(anonymous, headers={"authorization": "AWS nocolon"}))
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        sigv2.parse_access_key(replace(anonymous, query_string="AWSAccessKeyId=A&Signature=x"))
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        sigv2.parse_access_key(
            replace(anonymous, query_string="AWSAccessKeyId=A&Signature=x&Expires=soon")
        )
    expires = int(time.time()) + 60
    with pytest.raises(errors.InvalidRequest, match="header"):
        sigv2.parse_access_key(
            replace(
                anonymous,
                query_string=f"AWSAccessKeyId=A&Signature=x&Expires={expires}&x-amz-acl=private",
            )
        )
    with pytest.raises(errors.InvalidArgument):
        sigv2.parse_access_key(
            HttpRequestView(
                "GET", "/bkt/k", "Signature=x", {"authorization": "AWS AKID:c2lnbmF0dXJl"}
            )
        )
    streaming = header_signed(
        "PUT", "/bkt/k", {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}
    )
    with pytest.raises(errors.InvalidRequest, match="SigV4"):
        check(streaming)


def test_switched_off_sigv2_is_an_unsupported_mechanism() -> None:
    ctx: Any = SimpleNamespace(settings=SimpleNamespace(sigv2=False))
    with pytest.raises(errors.InvalidRequest, match="AWS4-HMAC-SHA256"):
        asyncio.run(authenticate(ctx, presigned("GET", "/bkt/k")))
