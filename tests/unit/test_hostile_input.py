"""No input breaks a parser (issue 14): every value below once raised inside the module that
reads it (ValueError past 4,300 digits, OverflowError at the calendar's edge, RecursionError,
a value PostgreSQL cannot hold, a header value HTTP cannot carry) and answered 500. Each is
now a deliberate 4xx at that parser; tests/integration/test_hostile_input.py sends the same
inputs through the gateway."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.envelope import KEY_VERSION_MAX, envelope_from_metadata
from core.errors import InvalidEnvelope
from core.json_limits import MAX_JSON_DEPTH, InvalidJson, json_depth, loads_document
from core.wire_numbers import INT32_MAX, INT64_MAX, parse_decimal
from gateway.s3 import errors as s3e
from gateway.s3 import operations as ops
from gateway.s3 import sigv2
from gateway.s3.copy_source import copy_range
from gateway.s3.preconditions import evaluate, parse_http_date
from gateway.s3.ranges import parse_range
from gateway.s3.sigv4 import HttpRequestView, changes_what_is_stored
from gateway.s3.stored_headers import response_overrides
from gateway.s3.xml import parse_complete_document
from tests.support.envelopes import fake_envelope, fake_wrapped_key
from tests.unit.test_sigv4 import check, presign, sign, with_headers

HUGE = "9" * 5000  # past CPython's 4,300-digit int-from-str limit
LONG_ZEROS = "0" * 5000 + "7"


# --------------------------------------------------------------------------- numbers


def test_parse_decimal_bounds_before_int() -> None:
    assert parse_decimal("0", maximum=10) == 0
    assert parse_decimal("10", maximum=10) == 10
    assert parse_decimal("11", maximum=10) is None
    assert parse_decimal(HUGE, maximum=INT64_MAX) is None
    assert parse_decimal(LONG_ZEROS, maximum=10) == 7
    for bad in ("", "-1", "+1", "1.0", " 1", "²", "١", "0x1"):
        assert parse_decimal(bad, maximum=10) is None
    assert parse_decimal(str(INT32_MAX), maximum=INT32_MAX) == INT32_MAX
    assert parse_decimal(str(INT32_MAX + 1), maximum=INT32_MAX) is None


@given(st.integers(min_value=0, max_value=2**70), st.integers(min_value=0, max_value=2**64))
def test_parse_decimal_agrees_with_int(value: int, maximum: int) -> None:
    expected = value if value <= maximum else None
    assert parse_decimal(str(value), maximum=maximum) == expected


@pytest.mark.parametrize("header", [f"bytes=0-{HUGE}", f"bytes={HUGE}-", f"bytes=-{HUGE}"])
def test_range_with_huge_numbers_is_invalid_range(header: str) -> None:
    with pytest.raises(s3e.S3Error) as caught:
        parse_range(header, 100)
    assert caught.value.code == "InvalidRange" and caught.value.status == 416
    assert parse_range(f"bytes=0-{INT64_MAX}", 100) == (0, 99)  # the largest offset still reads


def test_copy_source_range_with_huge_numbers_is_invalid_argument() -> None:
    for header in (f"bytes=0-{HUGE}", f"bytes={HUGE}-{HUGE}"):
        with pytest.raises(s3e.S3Error) as caught:
            copy_range(header, 100)
        assert caught.value.code == "InvalidArgument"


def test_complete_document_with_huge_part_number_is_malformed_xml() -> None:
    doc = (
        f"<CompleteMultipartUpload><Part><PartNumber>{HUGE}</PartNumber><ETag>x</ETag></Part>"
        "</CompleteMultipartUpload>"
    ).encode()
    with pytest.raises(s3e.S3Error) as caught:
        parse_complete_document(doc)
    assert caught.value.code == "MalformedXML"


def _parse(method: str, path: str, query: dict[str, str]) -> ops.Operation:
    return ops.parse_operation(method, path, list(query.items()), {})


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("GET", "/bkt", {"max-keys": HUGE}),
        ("GET", "/bkt", {"list-type": "2", "max-keys": HUGE}),
        ("GET", "/bkt", {"max-keys": str(INT32_MAX + 1)}),
        ("GET", "/bkt", {"versions": "", "max-keys": HUGE}),
        ("GET", "/bkt", {"uploads": "", "max-uploads": HUGE}),
        ("GET", "/bkt/k", {"uploadId": "u", "max-parts": HUGE}),
        ("GET", "/bkt/k", {"uploadId": "u", "part-number-marker": HUGE}),
        ("GET", "/bkt/k", {"uploadId": "u", "part-number-marker": str(2**31)}),
        ("GET", "/bkt/k", {"uploadId": "u", "part-number-marker": str(2**32 - 1)}),
        ("PUT", "/bkt/k", {"uploadId": "u", "partNumber": HUGE}),
        ("GET", "/bkt/k", {"partNumber": HUGE}),
    ],
)
def test_huge_integers_in_the_query_are_invalid_argument(
    method: str, path: str, query: dict[str, str]
) -> None:
    with pytest.raises(s3e.S3Error) as caught:
        _parse(method, path, query)
    assert caught.value.status == 400 and caught.value.code == "InvalidArgument"


def test_counts_in_range_still_clamp_and_markers_still_parse() -> None:
    listing = _parse("GET", "/bkt", {"max-keys": "5000"})
    assert isinstance(listing, ops.ListObjects) and listing.max_keys == 1000
    parts = _parse("GET", "/bkt/k", {"uploadId": "u", "part-number-marker": str(INT32_MAX)})
    assert isinstance(parts, ops.ListParts) and parts.part_number_marker == INT32_MAX


# --------------------------------------------------------------------------- NUL in text


@pytest.mark.parametrize(
    "query",
    [
        {"prefix": "a\x00"},
        {"marker": "\x00"},
        {"delimiter": "\x00"},
        {"list-type": "2", "start-after": "\x00"},
        {"list-type": "2", "prefix": "\x00"},
        {"versions": "", "key-marker": "\x00"},
        {"versions": "", "prefix": "\x00"},
        {"versions": "", "key-marker": "a", "version-id-marker": "\x00"},
        {"uploads": "", "key-marker": "\x00"},
        {"uploads": "", "prefix": "\x00"},
        {"uploads": "", "key-marker": "a", "upload-id-marker": "\x00"},
    ],
)
def test_nul_in_listing_parameters_is_invalid_argument(query: dict[str, str]) -> None:
    with pytest.raises(s3e.S3Error) as caught:
        _parse("GET", "/bkt", query)
    assert caught.value.code == "InvalidArgument"


@pytest.mark.parametrize("method", ["GET", "PUT", "POST", "DELETE"])
def test_nul_in_upload_id_is_no_such_upload(method: str) -> None:
    query = {"uploadId": "ab\x00", "partNumber": "1"}
    with pytest.raises(s3e.S3Error) as caught:
        _parse(method, "/bkt/k", query)
    assert caught.value.code == "NoSuchUpload" and caught.value.status == 404


def test_nul_in_version_ids_is_invalid_argument() -> None:
    with pytest.raises(s3e.S3Error):
        _parse("GET", "/bkt/k", {"versionId": "\x00"})
    with pytest.raises(s3e.S3Error) as caught:
        ops.parse_operation("PUT", "/bkt/k", [], {"x-amz-copy-source": "/src/k?versionId=%00"})
    assert caught.value.code == "InvalidArgument"


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+12:00",
        "9999-12-31T23:59:59-12:00",
        "Fri, 31 Dec 9999 23:59:59 -1200",
    ],
)
def test_conditional_dates_outside_the_calendar_are_invalid_argument(value: str) -> None:
    with pytest.raises(s3e.S3Error) as caught:
        parse_http_date(value, "If-Modified-Since")
    assert caught.value.code == "InvalidArgument" and "If-Modified-Since" in caught.value.message
    with pytest.raises(s3e.S3Error):
        evaluate({"if-unmodified-since": value}, "etag", datetime.now(UTC))
    assert parse_http_date("not a date") is None  # unparseable stays ignored, as S3 does


def test_date_header_at_the_calendars_edge_is_access_denied_not_overflow() -> None:
    view = sign("GET", "/bkt/k")
    for date in ("Fri, 31 Dec 9999 23:59:59 -1200", "Sat, 01 Jan 0999 00:00:00 +0000"):
        dated = with_headers(view, x_amz_date=None, date=date)
        with pytest.raises(s3e.S3Error) as caught:
            check(dated, now=datetime.now(UTC))
        assert caught.value.code == "AccessDenied" and caught.value.status == 403


def test_sigv2_date_and_expires_at_the_calendars_edge_are_access_denied() -> None:
    now = datetime.now(UTC)
    header = HttpRequestView(
        "GET",
        "/bkt/k",
        "",
        {"host": "h", "date": "Fri, 31 Dec 9999 23:59:59 -1200", "authorization": "AWS AK:c2ln"},
    )
    with pytest.raises(s3e.S3Error) as caught:
        sigv2.verify(header, "secret", now=now, resource_path="/bkt/k")
    assert caught.value.status == 403
    presigned = HttpRequestView(
        "GET", "/bkt/k", "AWSAccessKeyId=AK&Signature=c2ln&Expires=999999999999", {"host": "h"}
    )
    with pytest.raises(s3e.S3Error) as caught:
        sigv2.verify(presigned, "secret", now=now, resource_path="/bkt/k")
    assert caught.value.code == "AuthorizationQueryParametersError"


# --------------------------------------------------------------------------- headers out


@pytest.mark.parametrize(
    "param",
    [
        "response-content-type",
        "response-content-disposition",
        "response-cache-control",
        "response-expires",
        "response-content-language",
        "response-content-encoding",
    ],
)
@pytest.mark.parametrize("value", ["€", "a\x00b", "a\rb", "\x7f", "\U0001f600"])
def test_response_overrides_must_be_latin1_header_text(param: str, value: str) -> None:
    with pytest.raises(s3e.S3Error) as caught:
        response_overrides({param: value})
    assert caught.value.code == "InvalidArgument"


def test_latin1_response_overrides_still_pass() -> None:
    assert response_overrides({"response-content-disposition": 'inline; filename="café.txt"'}) == {
        "Content-Disposition": 'inline; filename="café.txt"'
    }


# --------------------------------------------------------------------------- JSON


def test_deeply_nested_json_is_refused_before_parsing() -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        with pytest.raises(InvalidJson, match="deeper"):
            loads_document(body)
    nested = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert json_depth(nested, stop_above=100) == MAX_JSON_DEPTH
    loads_document(nested)
    assert loads_document(b'{"s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"["}') == {
        "s": "[" * 36 + '"['
    }


@pytest.mark.parametrize(
    "body",
    [
        b'{"n": ' + HUGE.encode() + b"}",
        b'{"a": "\\u0000"}',
        b'{"\\u0000": 1}',
        b'["\\ud800"]',
        b"\xff\xfe",
        b"{",
    ],
)
def test_bad_json_is_one_invalid_json(body: bytes) -> None:
    with pytest.raises(InvalidJson):
        loads_document(body)


# --------------------------------------------------------------------------- column ranges


@pytest.mark.parametrize("version", [2**31, 2**32 - 1])
def test_key_versions_an_integer_column_cannot_hold_are_refused(version: int) -> None:
    meta = fake_envelope(version=version)
    with pytest.raises(InvalidEnvelope, match="key-version"):
        envelope_from_metadata(meta)
    ok = envelope_from_metadata(fake_envelope(version=KEY_VERSION_MAX))
    assert ok is not None and ok.key_version == KEY_VERSION_MAX
    assert len(fake_wrapped_key(version=version)) > 0  # the wire format itself can carry it


# --------------------------------------------------------------------------- signed headers


STORE_HEADERS = {
    "X-Encrypted-Key": "AAAA",
    "X-Key-Id": "bp:other",
    "X-Key-Version": "2",
    "X-Encryption-Alg": "rsa-oaep-256",
    "X-Content-Id": "00" * 16,
    "X-Redundancy-Class": "RegionalClass",
    "x-bp-region-lock": "eu",
}


@pytest.mark.parametrize(("name", "value"), sorted(STORE_HEADERS.items()))
def test_store_changing_headers_must_be_signed(name: str, value: str) -> None:
    assert changes_what_is_stored(name.lower())
    signed = sign("PUT", "/bkt/k", headers={name: value}, body=b"x")
    check(signed)  # botocore signs every header present: this verifies
    replayed = with_headers(sign("PUT", "/bkt/k", body=b"x"), **{name.lower(): value})
    with pytest.raises(s3e.S3Error) as caught:
        check(replayed)
    assert caught.value.code == "AccessDenied" and name.lower() in caught.value.message
    url = presign("PUT", "/bkt/k")
    with pytest.raises(s3e.S3Error) as caught:
        check(with_headers(url, **{name.lower(): value}))
    assert caught.value.code == "AccessDenied"
    check(presign("PUT", "/bkt/k", headers={name: value}))


def test_sigv2_refuses_store_changing_headers() -> None:
    view = HttpRequestView(
        "PUT",
        "/bkt/k",
        "",
        {"host": "h", "x-redundancy-class": "RegionalClass", "authorization": "AWS AK:c2ln"},
    )
    with pytest.raises(s3e.S3Error) as caught:
        sigv2.verify(view, "secret", now=datetime.now(UTC), resource_path="/bkt/k")
    assert caught.value.code == "AccessDenied" and "x-redundancy-class" in caught.value.message
