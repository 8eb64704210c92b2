"""Pure parts of the front door: which Host names a virtual-hosted bucket; canned ACLs."""

from __future__ import annotations

import pytest

from gateway.front_door import routable, virtual_host_bucket
from gateway.s3 import errors as s3e
from gateway.s3.conditions import write_condition
from gateway.s3.handlers.acl import check_canned_acl


@pytest.mark.parametrize(
    ("host", "domain", "bucket"),
    [
        ("photos.s3.example.net", "s3.example.net", "photos"),
        ("photos.s3.example.net:9000", "s3.example.net", "photos"),
        ("Photos.S3.Example.Net.", "s3.example.net", "photos"),
        ("a.b.s3.example.net", "s3.example.net", "a.b"),
        ("s3.example.net", "s3.example.net", None),
        ("s3.example.net:9000", "s3.example.net", None),
        ("127.0.0.1:9000", "s3.example.net", None),
        ("photos.s3.example.net", "", None),
        ("x.s3.example.net", "s3.example.net", None),  # too short for a bucket name
        ("-bad.s3.example.net", "s3.example.net", None),
        ("evil.com", "s3.example.net", None),
        ("photoss3.example.net", "s3.example.net", None),
        ("[::1]:9000", "s3.example.net", None),
    ],
)
def test_virtual_host_bucket(host: str, domain: str, bucket: str | None) -> None:
    assert virtual_host_bucket(host, domain) == bucket


def test_routable_path_has_no_newline() -> None:
    # Route patterns are ``.*``: a newline in a key must not make the request miss its route.
    assert routable("/bkt/line\nbreak\n") == "/bkt/line%0Abreak%0A"
    assert routable("/bkt/tab\tcr\r") == "/bkt/tab\tcr\r"


def test_canned_acl_rule() -> None:
    check_canned_acl({})
    check_canned_acl({"x-amz-acl": "private"})
    check_canned_acl({"x-amz-acl": " Private "})
    for public in ("public-read", "public-read-write", "authenticated-read"):
        with pytest.raises(s3e.AccessDenied):
            check_canned_acl({"x-amz-acl": public})
    check_canned_acl({"x-amz-acl": "bucket-owner-full-control"})
    for other in ("bucket-owner-read", "aws-exec-read", "log-delivery-write"):
        with pytest.raises(s3e.NotImplemented):
            check_canned_acl({"x-amz-acl": other})
    with pytest.raises(s3e.NotImplemented):
        check_canned_acl({"x-amz-grant-read": "id=abc"})


def test_write_condition_headers() -> None:
    assert write_condition({}) is None
    cond = write_condition({"if-none-match": "*"})
    assert cond is not None and cond.if_none_match == "*"
    cond = write_condition({"if-match": '"abc"'})
    assert cond is not None and cond.if_match == '"abc"'
    cond = write_condition({"if-none-match": '"abc", "def"'})
    assert cond is not None and cond.if_none_match == '"abc", "def"'
    with pytest.raises(s3e.InvalidArgument):
        write_condition({"if-match": " "})
    with pytest.raises(s3e.InvalidArgument):
        write_condition({"if-none-match": " , "})


def test_write_condition_check() -> None:
    from core.errors import NoSuchKey, PreconditionFailed
    from schema.records import WriteCondition

    create = WriteCondition(if_none_match="*")
    create.check(None)
    with pytest.raises(PreconditionFailed):
        create.check("abc")
    replace = WriteCondition(if_match='"abc"')
    replace.check("abc")
    with pytest.raises(PreconditionFailed):
        replace.check("def")
    with pytest.raises(NoSuchKey):
        replace.check(None)
    WriteCondition(if_match='"x", "abc"').check("abc")
    WriteCondition(if_match="*").check("anything")
    with pytest.raises(NoSuchKey):
        WriteCondition(if_match="*").check(None)
    WriteCondition(if_none_match='"abc"').check(None)
    WriteCondition(if_none_match='"abc"').check("def")
    with pytest.raises(PreconditionFailed):
        WriteCondition(if_none_match='"x", "abc"').check("abc")


@pytest.mark.parametrize(
    "header",
    [
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-customer-algorithm",
        "x-amz-object-lock-mode",
        "x-amz-tagging",
        "x-amz-website-redirect-location",
    ],
)
def test_data_affecting_headers_are_refused_not_ignored(header: str) -> None:
    from gateway.s3.header_rules import refuse_unsupported_headers

    with pytest.raises(s3e.NotImplemented):
        refuse_unsupported_headers({header: "x"})
    refuse_unsupported_headers({"x-amz-meta-a": "1", "x-amz-acl": "private"})
