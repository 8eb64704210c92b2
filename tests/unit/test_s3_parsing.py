"""Pure parts of the S3 front end: operation routing, ranges, listing cursors, XML, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import errors as domain
from gateway.s3 import errors as s3e
from gateway.s3 import operations as ops
from gateway.s3.handlers.list import _decode_token, _encode_token
from gateway.s3.listing import past_prefix
from gateway.s3.ranges import parse_range
from gateway.s3.xml import error_document, parse_xml


def parse(
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> ops.Operation:
    return ops.parse_operation(method, path, query or [], headers or {})


def test_routing() -> None:
    assert parse("GET", "/") == ops.ListBuckets()
    assert parse("PUT", "/bkt") == ops.CreateBucket("bkt")
    assert parse("HEAD", "/bkt") == ops.HeadBucket("bkt")
    assert parse("DELETE", "/bkt") == ops.DeleteBucket("bkt")
    assert parse("GET", "/bkt", [("location", "")]) == ops.GetBucketLocation("bkt")
    listing = parse("GET", "/bkt", [("list-type", "2"), ("prefix", "a/"), ("max-keys", "5000")])
    assert isinstance(listing, ops.ListObjects) and listing.v2 and listing.max_keys == 1000
    assert parse("PUT", "/bkt/a%20b/c%2Fd") == ops.PutObject("bkt", "a b/c/d")
    assert parse("GET", "/bkt/k", headers={"range": "bytes=0-1"}) == ops.GetObject(
        "bkt", "k", "bytes=0-1"
    )
    assert parse("DELETE", "/bkt/k") == ops.DeleteObject("bkt", "k")


def test_s3_compatibility_operations_parse() -> None:
    """Multipart, copy, versioning, batch delete and ACL requests map to their operations."""
    assert parse("POST", "/bkt/k", [("uploads", "")]) == ops.CreateMultipartUpload("bkt", "k")
    assert parse("PUT", "/bkt/k", [("partNumber", "3"), ("uploadId", "u1")]) == ops.UploadPart(
        "bkt", "k", "u1", 3
    )
    copy_part = parse(
        "PUT",
        "/bkt/k",
        [("partNumber", "2"), ("uploadId", "u1")],
        {"x-amz-copy-source": "src/a%20b?versionId=v9", "x-amz-copy-source-range": "bytes=0-9"},
    )
    assert copy_part == ops.UploadPartCopy(
        "bkt", "k", "u1", 2, ops.CopySource("src", "a b", "v9"), "bytes=0-9"
    )
    assert parse("POST", "/bkt/k", [("uploadId", "u1")]) == ops.CompleteMultipartUpload(
        "bkt", "k", "u1"
    )
    assert parse("DELETE", "/bkt/k", [("uploadId", "u1")]) == ops.AbortMultipartUpload(
        "bkt", "k", "u1"
    )
    assert parse("GET", "/bkt/k", [("uploadId", "u1"), ("max-parts", "5")]) == ops.ListParts(
        "bkt", "k", "u1", 5, 0
    )
    uploads = parse("GET", "/bkt", [("uploads", ""), ("prefix", "p")])
    assert isinstance(uploads, ops.ListMultipartUploads) and uploads.prefix == "p"
    assert parse("PUT", "/bkt/k", headers={"x-amz-copy-source": "/src/x/y"}) == ops.CopyObject(
        "bkt", "k", ops.CopySource("src", "x/y")
    )
    assert parse("PUT", "/bkt", [("versioning", "")]) == ops.PutBucketVersioning("bkt")
    assert parse("GET", "/bkt", [("versioning", "")]) == ops.GetBucketVersioning("bkt")
    versions = parse("GET", "/bkt", [("versions", ""), ("key-marker", "a")])
    assert isinstance(versions, ops.ListObjectVersions) and versions.key_marker == "a"
    assert parse("GET", "/bkt/k", [("versionId", "v1")]) == ops.GetObject("bkt", "k", None, "v1")
    assert parse("HEAD", "/bkt/k", [("versionId", "null")]) == ops.HeadObject(
        "bkt", "k", None, "null"
    )
    assert parse("DELETE", "/bkt/k", [("versionId", "v1")]) == ops.DeleteObject("bkt", "k", "v1")
    assert parse("POST", "/bkt", [("delete", "")]) == ops.DeleteObjects("bkt")
    assert parse("GET", "/bkt", [("acl", "")]) == ops.GetAcl("bkt", None)
    assert parse("PUT", "/bkt/k", [("acl", "")]) == ops.PutAcl("bkt", "k")


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "error"),
    [
        ("GET", "/bkt/k", [("tagging", "")], {}, s3e.NotImplemented),
        ("GET", "/bkt", [("lifecycle", "")], {}, s3e.NotImplemented),
        ("GET", "/bkt/k", [("partNumber", "0")], {}, s3e.InvalidArgument),
        ("DELETE", "/bkt/k", [("partNumber", "1")], {}, s3e.InvalidArgument),
        ("GET", "/bkt/k", [("partNumber", "1")], {"range": "bytes=0-1"}, s3e.InvalidRequest),
        ("PUT", "/bkt/k", [], {"x-amz-copy-source": "/a"}, s3e.InvalidArgument),
        ("PUT", "/bkt/k", [], {"x-amz-copy-source": "/Bad_B/k"}, s3e.InvalidBucketName),
        ("PUT", "/bkt/k", [("uploadId", "u"), ("partNumber", "0")], {}, s3e.InvalidArgument),
        ("PUT", "/bkt/k", [("uploadId", "u"), ("partNumber", "10001")], {}, s3e.InvalidArgument),
        ("PUT", "/bkt/k", [("uploadId", "u"), ("partNumber", "x")], {}, s3e.InvalidArgument),
        ("PUT", "/bkt/k", [("uploadId", "u"), ("partNumber", "\u00b2")], {}, s3e.InvalidArgument),
        ("GET", "/bkt", [("max-keys", "\u00b2")], {}, s3e.InvalidArgument),
        (
            "GET",
            "/bkt/k",
            [("uploadId", "u"), ("part-number-marker", "\u00b2")],
            {},
            s3e.InvalidArgument,
        ),
        ("PUT", "/bkt/k", [("uploadId", ""), ("partNumber", "1")], {}, s3e.NoSuchUpload),
        ("GET", "/bkt/k", [("versionId", "")], {}, s3e.InvalidArgument),
        ("PUT", "/bkt/k", [("versionId", "v")], {}, s3e.InvalidArgument),
        (
            "GET",
            "/bkt/k",
            [("uploadId", "u"), ("part-number-marker", "x")],
            {},
            s3e.InvalidArgument,
        ),
        ("POST", "/bkt/k", [("uploads", "")], {"x": "y"}, None),
        ("DELETE", "/bkt", [("delete", "")], {}, s3e.MethodNotAllowed),
        ("POST", "/bkt", [("versioning", "")], {}, s3e.MethodNotAllowed),
        ("PUT", "/Bad_Bucket", [], {}, s3e.InvalidBucketName),
        ("PUT", "/admin", [], {}, s3e.InvalidBucketName),
        ("PUT", "/192.168.1.1", [], {}, s3e.InvalidBucketName),
        ("PUT", "/bkt/" + "k" * 1025, [], {}, s3e.KeyTooLongError),
        ("PUT", "/bkt/%FF", [], {}, s3e.InvalidArgument),
        ("PUT", "/bkt/a%00b", [], {}, s3e.InvalidArgument),
        ("POST", "/bkt/k", [], {}, s3e.MethodNotAllowed),
        ("PUT", "/", [], {}, s3e.MethodNotAllowed),
        ("GET", "/bkt", [("list-type", "1")], {}, s3e.InvalidArgument),
        ("GET", "/bkt", [("max-keys", "-1")], {}, s3e.InvalidArgument),
        ("GET", "/bkt", [("encoding-type", "base64")], {}, s3e.InvalidArgument),
    ],
)
def test_bad_requests_are_s3_errors(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    error: type[s3e.S3Error] | None,
) -> None:
    if error is None:
        parse(method, path, query, headers)
        return
    with pytest.raises(error):
        parse(method, path, query, headers)


@given(st.integers(min_value=1, max_value=10**9), st.data())
def test_ranges_are_inside_the_object(size: int, data: st.DataObject) -> None:
    first = data.draw(st.integers(min_value=0, max_value=size - 1))
    last = data.draw(st.integers(min_value=first, max_value=size * 2))
    assert parse_range(f"bytes={first}-{last}", size) == (first, min(last, size - 1))
    suffix = data.draw(st.integers(min_value=1, max_value=size * 2))
    assert parse_range(f"bytes=-{suffix}", size) == (max(0, size - suffix), size - 1)


def test_unsatisfiable_and_ignored_ranges() -> None:
    with pytest.raises(s3e.InvalidRange):
        parse_range("bytes=10-", 10)
    with pytest.raises(s3e.InvalidRange):
        parse_range("bytes=-5", 0)
    assert parse_range("bytes=5-2", 10) is None  # invalid syntax is ignored, as S3 does
    assert parse_range("items=0-1", 10) is None
    assert parse_range(None, 10) is None


@given(st.text(min_size=1).filter(lambda s: s[-1] != "\U0010ffff"), st.text())
def test_past_prefix_is_greater_than_everything_below_the_prefix(prefix: str, tail: str) -> None:
    bound = past_prefix(prefix)
    assert (prefix + tail).encode() < bound.encode()
    assert prefix.encode() < bound.encode()


@given(st.sampled_from(["k", "p"]), st.text())
def test_continuation_tokens_round_trip(kind: str, value: str) -> None:
    assert _decode_token(_encode_token(kind, value)) == (kind, value)


def test_forged_tokens_are_refused() -> None:
    for token in ["!!!", "eDpmb28=", ""]:  # bad base64, unknown kind "x", empty
        with pytest.raises(s3e.InvalidArgument):
            _decode_token(token)


def test_xml_parsing_refuses_entities_and_garbage() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><x>&b;</x>'
    for body in [bomb, b"<unclosed>", b"\xff\xfe", b"<a>" * 10 + b"x"]:
        with pytest.raises(s3e.MalformedXML):
            parse_xml(body)
    with pytest.raises(s3e.MalformedXML):
        parse_xml(b"<a>" + b"x" * (1024 * 1024 + 1) + b"</a>")
    assert parse_xml(b"<CreateBucketConfiguration/>").tag == "CreateBucketConfiguration"


def test_error_documents_escape_and_hide_internals() -> None:
    err = s3e.to_s3_error(RuntimeError("password=hunter2 at /srv/secret"), resource="/b/<k>")
    assert err.code == "InternalError" and err.status == 500
    doc = error_document(err, "REQ1")
    assert b"hunter2" not in doc and b"&lt;k&gt;" in doc and b"<RequestId>REQ1</RequestId>" in doc


@pytest.mark.parametrize(
    ("exc", "code", "status"),
    [
        (domain.NoSuchBucket("x"), "NoSuchBucket", 404),
        (domain.NoSuchKey("x"), "NoSuchKey", 404),
        (domain.BucketNotEmpty("x"), "BucketNotEmpty", 409),
        (domain.InvalidEnvelope("x"), "InvalidRequest", 400),
        (domain.PolicyViolation("x"), "InvalidRequest", 400),
        (domain.InsufficientCapacity("x"), "ServiceUnavailable", 503),
        (domain.QuorumNotMet(2, 1), "ServiceUnavailable", 503),
        # the data path's errors keep the S3 answers the handlers gave before it moved
        (domain.NoSuchVersion(), "NoSuchVersion", 404),
        (domain.NoSuchUpload(), "NoSuchUpload", 404),
        (domain.InvalidRequest("x"), "InvalidRequest", 400),
        (domain.EntityTooLarge("x"), "EntityTooLarge", 400),
        (domain.EntityTooSmall("x"), "EntityTooSmall", 400),
        (domain.IncompleteBody("x"), "IncompleteBody", 400),
        (domain.InvalidPart("x"), "InvalidPart", 400),
        (domain.BadDigest("x"), "BadDigest", 400),
        (domain.InvalidInput("x"), "InvalidArgument", 400),
        (domain.MetadataUnavailable("x"), "ServiceUnavailable", 503),
        (domain.IntegrityError("x"), "ServiceUnavailable", 503),
    ],
)
def test_domain_errors_map_to_s3(exc: Exception, code: str, status: int) -> None:
    err = s3e.to_s3_error(exc)
    assert (err.code, err.status) == (code, status)


def test_part_number_reads_parse() -> None:
    """Issue 17: GET/HEAD ?partNumber=N reads one uploaded part (it was NotImplemented)."""
    assert parse("GET", "/bkt/k", [("partNumber", "2")], {}) == ops.GetObject(
        "bkt", "k", None, None, 2
    )
    assert parse("HEAD", "/bkt/k", [("partNumber", "1"), ("versionId", "v")], {}) == (
        ops.HeadObject("bkt", "k", None, "v", 1)
    )
