"""SigV4 verification against requests signed by real botocore, and against AWS's published vectors.

botocore is the oracle: whatever it signs (header auth, presigned URLs, boto3 clients) must verify,
and any single change to a signed part must not.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.s3 import errors
from gateway.s3.sigv4 import (
    AuthorizationQueryParametersError,
    Credential,
    HttpRequestView,
    PayloadMode,
    VerifiedRequest,
    parse_credential,
    signing_key,
    uri_encode,
    verify,
)

ACCESS = "AKIDBULLETPROOF"
SECRET = "s3cr3t/with+slash=and~tilde"
REGION = "us-east-1"
HOST = "127.0.0.1:9000"
ENDPOINT = f"http://{HOST}"

# --------------------------------------------------------------------------- helpers


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def view_of(method: str, url: str, headers: Mapping[str, Any]) -> HttpRequestView:
    """What the ASGI layer would hand us for a request botocore prepared."""
    parts = urlsplit(url)
    lowered = {name.lower(): _text(value) for name, value in headers.items()}
    lowered.setdefault("host", parts.netloc)
    return HttpRequestView(
        method=method, raw_path=parts.path, query_string=parts.query, headers=lowered
    )


def amz_time(view: HttpRequestView) -> datetime:
    stamp = view.headers.get("x-amz-date") or dict(parse_qsl(view.query_string))["X-Amz-Date"]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def sign(
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    unsigned_payload: bool = False,
    content_sha256: str | None = None,
    secret: str = SECRET,
    region: str = REGION,
) -> HttpRequestView:
    """Header-sign with botocore's S3SigV4Auth, exactly as an S3 client does.

    ``content_sha256`` keeps a caller-chosen x-amz-content-sha256 (e.g. a STREAMING-* mode),
    which S3SigV4Auth would otherwise replace by the hash of ``body``.
    """
    request = AWSRequest(
        method=method, url=ENDPOINT + path, params=params or {}, headers=headers or {}, data=body
    )
    if unsigned_payload:
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    auth_cls = S3SigV4Auth if content_sha256 is None else _KeepPayloadHeaderAuth
    if content_sha256 is not None:
        request.headers["X-Amz-Content-SHA256"] = content_sha256
    auth_cls(Credentials(ACCESS, secret), "s3", region).add_auth(request)
    prepared = request.prepare()
    return view_of(prepared.method, prepared.url, prepared.headers)


class _KeepPayloadHeaderAuth(S3SigV4Auth):  # type: ignore[misc]
    """S3SigV4Auth that signs the X-Amz-Content-SHA256 header already on the request."""

    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        SigV4Auth._modify_request_before_signing(self, request)


def presign(
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    expires: int = 3600,
) -> HttpRequestView:
    """A presigned URL from botocore's S3SigV4QueryAuth; the client then sends ``headers``."""
    request = AWSRequest(
        method=method, url=ENDPOINT + path, params=params or {}, headers=headers or {}
    )
    S3SigV4QueryAuth(Credentials(ACCESS, SECRET), "s3", REGION, expires=expires).add_auth(request)
    prepared = request.prepare()
    return view_of(prepared.method, prepared.url, prepared.headers)


def check(
    view: HttpRequestView, *, now: datetime | None = None, secret: str = SECRET
) -> VerifiedRequest:
    assert parse_credential(view).access_key_id == ACCESS
    return verify(view, secret, region=REGION, now=now or amz_time(view))


def with_headers(view: HttpRequestView, **changes: str | None) -> HttpRequestView:
    headers = dict(view.headers)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return replace(view, headers=headers)


def key_path(bucket: str, key: str) -> str:
    """The path botocore's serializer builds for a key (greedy label: quote, '/' and '~' kept)."""
    return f"/{bucket}/" + quote(key, safe="/~")


# --------------------------------------------------------------------------- primitives


def test_uri_encode_is_sigv4_uriencode() -> None:
    assert uri_encode("AZaz09-._~", keep_slash=False) == "AZaz09-._~"
    assert uri_encode("a b+c=d&e/f", keep_slash=False) == "a%20b%2Bc%3Dd%26e%2Ff"
    assert uri_encode("a b/c", keep_slash=True) == "a%20b/c"
    assert uri_encode("é☃", keep_slash=False) == "%C3%A9%E2%98%83"
    assert uri_encode("*'()!", keep_slash=False) == "%2A%27%28%29%21"


def test_signing_key_matches_aws_general_reference_example() -> None:
    # AWS General Reference "Examples of how to derive a signing key for Signature Version 4".
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_aws_published_chunked_seed_signature_verifies() -> None:
    """AWS's "Example: PUT Object" for chunked upload (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)."""
    view = HttpRequestView(
        method="PUT",
        raw_path="/examplebucket/chunkObject.txt",
        query_string="",
        headers={
            "host": "s3.amazonaws.com",
            "x-amz-date": "20130524T000000Z",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": "66560",
            "content-length": "66824",
            "authorization": (
                "AWS4-HMAC-SHA256 "
                "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                "x-amz-decoded-content-length;x-amz-storage-class,"
                "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
            ),
        },
    )
    verified = verify(
        view,
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        now=datetime(2013, 5, 24, tzinfo=UTC),
    )
    assert verified.payload_mode is PayloadMode.STREAMING_SIGNED
    assert verified.decoded_content_length == 66560
    assert verified.credential == Credential("AKIAIOSFODNN7EXAMPLE", "20130524", "us-east-1", "s3")


# --------------------------------------------------------------------------- botocore properties

_SPECIAL_KEY_PARTS = st.sampled_from(
    [
        "a",
        " ",
        "+",
        "%",
        "%20",
        "%2F",
        "~",
        "//",
        "./",
        "../",
        "/.",
        "/..",
        "=",
        "&",
        "?",
        "#",
        "é",
        "日本",
        "*",
        "'",
        "(",
        ")",
        "!",
        "$",
        ",",
        ";",
        ":",
        "@",
        "[",
        "]",
        "\t",
        "\x7f",
        "\u00a0",
        "🙂",
    ]
)
KEYS = st.lists(
    st.one_of(_SPECIAL_KEY_PARTS, st.text(min_size=1, max_size=6)), min_size=1, max_size=8
).map("".join)
PARAM_NAMES = st.text(min_size=1, max_size=8).filter(
    lambda n: not n.startswith("X-Amz-") and n not in ("AWSAccessKeyId", "Signature")
)
PARAMS = st.dictionaries(PARAM_NAMES, st.text(max_size=8), max_size=4)
HEADER_VALUE = st.text(
    alphabet=string.ascii_letters + string.digits + " -_.,;:/=+*'\"()!?@#$%&", max_size=20
).filter(lambda v: v.strip() != "")
EXTRA_HEADERS = st.dictionaries(
    st.from_regex(r"x-(amz-meta|amz-tagging-test|custom)-[a-z0-9-]{1,10}", fullmatch=True),
    HEADER_VALUE,
    max_size=4,
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(key=KEYS, params=PARAMS, extra=EXTRA_HEADERS, body=st.binary(max_size=64))
def test_botocore_header_signed_requests_verify(
    key: str, params: dict[str, str], extra: dict[str, str], body: bytes
) -> None:
    view = sign("PUT", key_path("bkt", key), params=params, headers=extra, body=body)
    verified = check(view)
    assert verified.payload_mode is PayloadMode.SIGNED
    assert not verified.presigned
    assert verified.credential.access_key_id == ACCESS
    # The router reads the key and query that were signed (path decoded once, query form-decoded).
    assert unquote(view.raw_path) == "/bkt/" + key
    assert dict(parse_qsl(view.query_string, keep_blank_values=True)) == params
    with pytest.raises(errors.SignatureDoesNotMatch):
        check(view, secret=SECRET + "x")


@FAST
@given(key=KEYS, params=PARAMS)
def test_botocore_unsigned_payload_requests_verify(key: str, params: dict[str, str]) -> None:
    view = sign("GET", key_path("bkt", key), params=params, unsigned_payload=True)
    assert view.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    verified = check(view)
    assert verified.payload_mode is PayloadMode.UNSIGNED
    assert verified.payload_sha256 is None


@FAST
@given(key=KEYS, params=PARAMS, expires=st.integers(1, 604800))
def test_botocore_presigned_urls_verify(key: str, params: dict[str, str], expires: int) -> None:
    view = presign("GET", key_path("bkt", key), params=params, expires=expires)
    verified = check(view)
    assert verified.presigned
    assert verified.payload_mode is PayloadMode.UNSIGNED
    assert verified.signed_headers == ("host",)
    t = amz_time(view)
    check(view, now=t + timedelta(seconds=expires))
    with pytest.raises(errors.AccessDenied, match="Request has expired"):
        check(view, now=t + timedelta(seconds=expires + 1))


@FAST
@given(
    key=KEYS, mutation=st.sampled_from(["method", "path", "query", "header", "secret", "body-hash"])
)
def test_any_single_change_breaks_the_signature(key: str, mutation: str) -> None:
    view = sign(
        "PUT",
        key_path("bkt", key),
        params={"tagging": "a b"},
        headers={"x-amz-meta-k": "v"},
        body=b"x",
    )
    if mutation == "method":
        view = replace(view, method="POST")
    elif mutation == "path":
        view = replace(view, raw_path=view.raw_path + "x")
    elif mutation == "query":
        view = replace(view, query_string=view.query_string + "&extra=1")
    elif mutation == "header":
        view = with_headers(view, x_amz_meta_k="w")
    elif mutation == "body-hash":
        view = with_headers(view, x_amz_content_sha256="0" * 64)
    with pytest.raises(errors.SignatureDoesNotMatch):
        check(view, secret=SECRET + "!" if mutation == "secret" else SECRET)


# --------------------------------------------------------------------------- canonicalization


@pytest.mark.parametrize(
    "key",
    [
        "a b",
        "a+b",
        "a%b",
        "a~b",
        "a=b&c",
        "//double//",
        "./dot/../dotdot/.",
        "ünï cødé/☃",
        "x%2Fy",
        "?#",
    ],
)
def test_s3_paths_are_neither_normalized_nor_double_encoded(key: str) -> None:
    view = sign("GET", key_path("bkt", key))
    check(view)
    # The same key spelled with an unreserved character percent-encoded is the same S3 key.
    if "~" in key:
        check(replace(view, raw_path=view.raw_path.replace("~", "%7E")))


def test_plus_in_path_is_a_literal_plus_and_in_query_a_space() -> None:
    view = sign("GET", "/bkt/a%2Bb", params={"q": "a b"})
    assert view.query_string == "q=a+b"  # botocore's URL uses '+' for the space it signed as %20
    check(view)
    # '+' in the path is a plus sign, so it must not verify as if it were %20.
    with pytest.raises(errors.SignatureDoesNotMatch):
        check(replace(view, raw_path="/bkt/a+b".replace("+", "%20")))
    check(replace(view, raw_path="/bkt/a+b"))


def test_query_param_without_value_and_repeated_params() -> None:
    view = sign("GET", "/bkt", params={"acl": "", "uploads": ""})
    check(replace(view, query_string="acl&uploads"))
    view = sign("GET", "/bkt", params=[("a", "2"), ("a", "1")])  # type: ignore[arg-type]
    check(view)


def test_malformed_percent_encoding_is_refused() -> None:
    view = sign("GET", "/bkt/key")
    with pytest.raises(errors.InvalidArgument):
        check(replace(view, raw_path="/bkt/%zz"))
    with pytest.raises(errors.InvalidArgument):
        check(replace(view, raw_path="/bkt/%ff"))  # not UTF-8 once decoded
    with pytest.raises(errors.InvalidArgument):
        check(replace(view, query_string="a=%"))


def test_header_values_are_trimmed_and_whitespace_collapsed() -> None:
    view = sign(
        "PUT", "/bkt/k", headers={"x-amz-meta-a": "  one   two  ", "content-type": "text/plain"}
    )
    check(with_headers(view, x_amz_meta_a="one two"))
    check(with_headers(view, x_amz_meta_a="\tone \t two "))
    with pytest.raises(errors.SignatureDoesNotMatch):
        check(with_headers(view, x_amz_meta_a="onetwo"))


def test_date_header_instead_of_x_amz_date() -> None:
    view = sign("GET", "/bkt/k", headers={"Date": "Thu, 01 Jan 1970 00:00:00 GMT"})
    assert "x-amz-date" not in view.headers and "date" in view.headers
    verified = check(view, now=datetime.now(UTC))
    assert verified.amz_date[:8] == verified.credential.date


# --------------------------------------------------------------------------- policy and errors


@pytest.fixture
def signed_view() -> HttpRequestView:
    return sign("PUT", "/bkt/key", headers={"x-amz-meta-a": "1"}, body=b"data")


def test_clock_skew_is_fifteen_minutes(signed_view: HttpRequestView) -> None:
    t = amz_time(signed_view)
    check(signed_view, now=t + timedelta(minutes=15))
    check(signed_view, now=t - timedelta(minutes=15))
    for delta in (timedelta(minutes=15, seconds=1), -timedelta(minutes=15, seconds=1)):
        with pytest.raises(errors.RequestTimeTooSkewed) as info:
            check(signed_view, now=t + delta)
        assert info.value.status == 403


def test_wrong_region_names_the_expected_one(signed_view: HttpRequestView) -> None:
    with pytest.raises(errors.AuthorizationHeaderMalformed, match="expecting 'eu-west-1'"):
        verify(signed_view, SECRET, region="eu-west-1", now=amz_time(signed_view))


def test_other_service_and_other_scope_date_are_refused() -> None:
    request = AWSRequest(method="GET", url=ENDPOINT + "/bkt/k")
    S3SigV4Auth(Credentials(ACCESS, SECRET), "ec2", REGION).add_auth(request)
    view = view_of("GET", request.url, request.headers)
    with pytest.raises(errors.AuthorizationHeaderMalformed, match="service 'ec2'"):
        check(view)
    view = sign("GET", "/bkt/k")
    t = amz_time(view) + timedelta(days=1)
    with pytest.raises(errors.AuthorizationHeaderMalformed, match="date"):
        check(with_headers(view, x_amz_date=t.strftime("%Y%m%dT%H%M%SZ")), now=t)


def test_unsigned_x_amz_header_is_refused_by_name(signed_view: HttpRequestView) -> None:
    with pytest.raises(errors.AccessDenied, match="x-amz-acl"):
        check(with_headers(signed_view, x_amz_acl="public-read"))
    # Headers outside x-amz-* may be added by proxies and are simply not covered.
    check(with_headers(signed_view, user_agent="curl", x_forwarded_for="10.0.0.1"))


def test_host_must_be_signed() -> None:
    view = sign("GET", "/bkt/k")
    auth = view.headers["authorization"].replace("SignedHeaders=host;", "SignedHeaders=")
    with pytest.raises(errors.AccessDenied, match="host"):
        check(with_headers(view, authorization=auth))


def test_signed_header_missing_from_request(signed_view: HttpRequestView) -> None:
    with pytest.raises(errors.SignatureDoesNotMatch, match="x-amz-meta-a"):
        check(with_headers(signed_view, x_amz_meta_a=None))


def test_anonymous_and_unsupported_mechanisms() -> None:
    anonymous = HttpRequestView("GET", "/bkt/k", "", {"host": HOST})
    with pytest.raises(errors.AccessDenied, match="Anonymous access is not allowed"):
        parse_credential(anonymous)
    with pytest.raises(errors.InvalidRequest, match="AWS4-HMAC-SHA256"):
        parse_credential(with_headers(anonymous, authorization="AWS AKID:c2lnbmF0dXJl"))
    with pytest.raises(errors.InvalidRequest):
        parse_credential(
            replace(anonymous, query_string="AWSAccessKeyId=AKID&Signature=x&Expires=1")
        )
    with pytest.raises(errors.InvalidRequest):
        parse_credential(
            with_headers(anonymous, authorization="AWS4-ECDSA-P256-SHA256 Credential=x")
        )


_CRED = "AKID/20260101/us-east-1/s3/aws4_request"
_SIG = "Signature=" + "a" * 64


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256 ",
        f"AWS4-HMAC-SHA256 Credential={_CRED}",
        f"AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3, SignedHeaders=host, {_SIG}",
        f"AWS4-HMAC-SHA256 Credential={_CRED.replace('0101', '1301')}, SignedHeaders=host, {_SIG}",
        f"AWS4-HMAC-SHA256 Credential={_CRED}, SignedHeaders=host, Signature=abc",
        f"AWS4-HMAC-SHA256 Credential={_CRED}, SignedHeaders=x-b;host, {_SIG}",
        f"AWS4-HMAC-SHA256 Credential={_CRED}, SignedHeaders=Host, {_SIG}",
        f"AWS4-HMAC-SHA256 Credential={_CRED}, Credential=B, SignedHeaders=host",
        f"AWS4-HMAC-SHA256 Credential={_CRED}, SignedHeaders=host, {_SIG}, Extra=1",
        f"AWS4-HMAC-SHA256 Credential={_CRED.removeprefix('AKID')}, SignedHeaders=host, {_SIG}",
        "AWS4-HMAC-SHA256 Credential=" + "A" * 20000,
    ],
)
def test_malformed_authorization_headers(authorization: str) -> None:
    view = HttpRequestView("GET", "/bkt/k", "", {"host": HOST, "authorization": authorization})
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        parse_credential(view)


def test_both_mechanisms_at_once_are_refused(signed_view: HttpRequestView) -> None:
    with pytest.raises(errors.InvalidArgument, match="Only one auth mechanism"):
        parse_credential(replace(signed_view, query_string="X-Amz-Signature=" + "a" * 64))


def test_content_sha256_header_is_required_and_validated(signed_view: HttpRequestView) -> None:
    with pytest.raises(errors.InvalidRequest, match="x-amz-content-sha256"):
        check(with_headers(signed_view, x_amz_content_sha256=None))
    with pytest.raises(errors.InvalidArgument):
        check(with_headers(signed_view, x_amz_content_sha256="not-a-hash"))
    with pytest.raises(errors.InvalidRequest, match="SigV4a"):
        check(
            with_headers(
                signed_view, x_amz_content_sha256="STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"
            )
        )


def test_signed_payload_hash_is_returned(signed_view: HttpRequestView) -> None:
    import hashlib

    verified = check(signed_view)
    assert verified.payload_sha256 == hashlib.sha256(b"data").hexdigest()
    assert verified.signing_key == signing_key(SECRET, verified.credential.date, REGION)
    assert verified.amz_date == signed_view.headers["x-amz-date"]


@pytest.mark.parametrize(
    "mode",
    [
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    ],
)
def test_streaming_modes_need_decoded_content_length(mode: str) -> None:
    headers = {"content-encoding": "aws-chunked"}
    if mode.endswith("TRAILER"):
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    view = sign("PUT", "/bkt/k", headers=headers, content_sha256=mode)
    with pytest.raises(errors.MissingContentLength):
        check(view)
    view = sign(
        "PUT",
        "/bkt/k",
        headers={**headers, "x-amz-decoded-content-length": "12"},
        content_sha256=mode,
    )
    verified = check(view)
    assert verified.decoded_content_length == 12
    assert verified.trailer_names == (("x-amz-checksum-crc32",) if mode.endswith("TRAILER") else ())
    bad = sign(
        "PUT",
        "/bkt/k",
        headers={**headers, "x-amz-decoded-content-length": "-1"},
        content_sha256=mode,
    )
    with pytest.raises(errors.InvalidArgument):
        check(bad)


def test_trailer_declarations_are_checked() -> None:
    base = {"x-amz-decoded-content-length": "1", "x-amz-trailer": "x-amz-meta-foo"}
    mode = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    with pytest.raises(errors.InvalidRequest, match="x-amz-checksum"):
        check(sign("PUT", "/bkt/k", headers=base, content_sha256=mode))
    with pytest.raises(errors.InvalidRequest):
        check(sign("PUT", "/bkt/k", headers={"x-amz-trailer": "x-amz-checksum-crc32"}, body=b"x"))


# --------------------------------------------------------------------------- presigned specifics


def test_presigned_with_signed_content_type_header() -> None:
    view = presign("PUT", "/bkt/k", headers={"Content-Type": "image/png"})
    verified = check(view)
    assert verified.signed_headers == ("content-type", "host")
    with pytest.raises(errors.SignatureDoesNotMatch):
        check(with_headers(view, content_type="text/html"))


def test_presigned_rejects_unsigned_amz_headers_but_binds_content_sha256() -> None:
    view = presign("PUT", "/bkt/k")
    with pytest.raises(errors.AccessDenied, match="x-amz-acl"):
        check(with_headers(view, x_amz_acl="public-read"))
    # x-amz-content-sha256 is the payload line of the canonical request: any value but
    # UNSIGNED-PAYLOAD (what was signed) breaks the signature, so it cannot be smuggled in.
    check(with_headers(view, x_amz_content_sha256="UNSIGNED-PAYLOAD"))
    with pytest.raises(errors.SignatureDoesNotMatch):
        check(with_headers(view, x_amz_content_sha256="0" * 64))


def test_presigned_query_tampering() -> None:
    view = presign("GET", "/bkt/k", params={"response-content-type": "text/plain"})
    check(view)
    for old, new in [("text%2Fplain", "text%2Fhtml"), ("X-Amz-Expires=3600", "X-Amz-Expires=3601")]:
        assert old in view.query_string
        with pytest.raises(errors.SignatureDoesNotMatch):
            check(replace(view, query_string=view.query_string.replace(old, new)))
    with pytest.raises(errors.SignatureDoesNotMatch):
        check(replace(view, method="DELETE"))


@pytest.mark.parametrize("expires", ["0", "604801", "-5", "abc", ""])
def test_presigned_expires_range(expires: str) -> None:
    view = presign("GET", "/bkt/k")
    query = view.query_string.replace("X-Amz-Expires=3600", f"X-Amz-Expires={expires}")
    with pytest.raises(AuthorizationQueryParametersError) as info:
        check(replace(view, query_string=query))
    assert info.value.code == "AuthorizationQueryParametersError"
    assert info.value.status == 400
    assert isinstance(info.value, errors.AuthorizationHeaderMalformed)


def test_presigned_missing_or_duplicate_params_and_future_dates() -> None:
    view = presign("GET", "/bkt/k")
    pairs = [p for p in view.query_string.split("&") if not p.startswith("X-Amz-SignedHeaders=")]
    with pytest.raises(AuthorizationQueryParametersError, match="X-Amz-SignedHeaders"):
        parse_credential(replace(view, query_string="&".join(pairs)))
    with pytest.raises(AuthorizationQueryParametersError, match="more than once"):
        parse_credential(replace(view, query_string=view.query_string + "&X-Amz-Expires=5"))
    t = amz_time(view)
    with pytest.raises(errors.AccessDenied, match="not valid yet"):
        check(view, now=t - timedelta(minutes=16))
    check(view, now=t - timedelta(minutes=14))
    with pytest.raises(errors.AuthorizationHeaderMalformed, match="expecting 'eu-west-1'"):
        verify(view, SECRET, region="eu-west-1", now=t)


def test_presigned_cannot_stream() -> None:
    view = presign("PUT", "/bkt/k")
    headers = {
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "x-amz-decoded-content-length": "1",
    }
    with pytest.raises(errors.InvalidRequest, match="presigned"):
        check(with_headers(view, **{k.replace("-", "_"): v for k, v in headers.items()}))


# --------------------------------------------------------------------------- a real boto3 client


def _client(endpoint: str, **config: Any) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=ACCESS, aws_secret_access_key=SECRET, region_name=REGION
    )
    return session.client(
        "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}, **config)
    )


@pytest.mark.parametrize("key", ["plain.txt", "dir/a b+c~d=e&f.txt", "ünï/☃ 🙂", "a//b/./c/../d"])
def test_boto3_generate_presigned_url(key: str) -> None:
    client = _client(ENDPOINT, signature_version="s3v4")
    for method, http_method, params in [
        (
            "get_object",
            "GET",
            {"Bucket": "bkt", "Key": key, "ResponseContentDisposition": "attachment; x=a b"},
        ),
        ("put_object", "PUT", {"Bucket": "bkt", "Key": key}),
        ("list_objects_v2", "GET", {"Bucket": "bkt", "Prefix": key, "Delimiter": "/"}),
    ]:
        url = client.generate_presigned_url(method, Params=params, ExpiresIn=900)
        verified = check(view_of(http_method, url, {}))
        assert verified.presigned and verified.payload_mode is PayloadMode.UNSIGNED


def test_boto3_presigned_url_defaults_to_sigv2_which_is_refused() -> None:
    """boto3 1.44.8 presigns with SigV2 unless the client sets signature_version="s3v4"."""
    url = _client(ENDPOINT).generate_presigned_url(
        "get_object", Params={"Bucket": "bkt", "Key": "k"}
    )
    assert "AWSAccessKeyId=" in url and "X-Amz-Signature" not in url
    with pytest.raises(errors.InvalidRequest, match="AWS4-HMAC-SHA256"):
        parse_credential(view_of("GET", url, {}))


def test_boto3_client_requests_verify() -> None:
    """Header-signed requests as a boto3 client really sends them (captured before the network)."""
    from botocore.awsrequest import AWSResponse

    captured: list[HttpRequestView] = []

    class _Raw:
        def stream(self, **_: Any) -> Any:
            yield b""

    def before_send(request: Any, **_: Any) -> AWSResponse:
        captured.append(view_of(request.method, request.url, request.headers))
        return AWSResponse(request.url, 200, {}, _Raw())

    client = _client(ENDPOINT)
    client.meta.events.register("before-send.s3", before_send)
    client.get_object(Bucket="bkt", Key="dir/a b+c~d=e&f.txt", Range="bytes=0-9")
    client.list_objects_v2(Bucket="bkt", Prefix="a b/", StartAfter="x+y", MaxKeys=5)
    client.delete_object(Bucket="bkt", Key="ünï ☃")
    for view in captured:
        check(view)


def test_utf8_header_values_verify_from_the_bytes_sent() -> None:
    """Issue 17: the AWS SDKs sign a non-ASCII x-amz-meta-* value as UTF-8 and send those
    bytes; the ASGI layer hands them over one character per byte (latin-1)."""
    value = "café 日本 ✓ à"
    view = sign("PUT", "/bkt/k", headers={"x-amz-meta-word": value})
    wire = value.encode("utf-8").decode("latin-1")
    check(with_headers(view, x_amz_meta_word=wire))
    with pytest.raises(errors.SignatureDoesNotMatch):
        check(with_headers(view, x_amz_meta_word=wire.replace("\xa0", " ")))
    # A client sending one latin-1 byte for "é" while signing its UTF-8 still verifies.
    latin = sign("PUT", "/bkt/k", headers={"content-disposition": 'inline; filename="é"'})
    check(latin)
