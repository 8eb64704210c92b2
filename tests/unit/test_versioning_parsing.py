"""Pure parts of versioning, conditional reads and batch delete: preconditions, the request
documents (defusedxml, limits), the response documents and version id checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.etree import ElementTree as ET

import pytest

from gateway.s3 import errors as s3e
from gateway.s3.handlers.delete_objects import has_integrity_header
from gateway.s3.preconditions import Outcome, etag_matches, evaluate, parse_http_date
from gateway.s3.versioning_xml import (
    DeletedEntry,
    DeleteError,
    delete_result_document,
    list_versions_document,
    parse_delete_request,
    parse_versioning_configuration,
    versioning_document,
)
from gateway.s3.versions import is_version_id
from schema.listing import ListedVersion

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
MODIFIED = datetime(2026, 11, 28, 12, 0, 30, 500_000, tzinfo=UTC)
ETAG = "0123456789abcdef0123456789abcdef"


def http(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


BEFORE = http(MODIFIED - timedelta(hours=1))
AFTER = http(MODIFIED + timedelta(hours=1))
SAME = http(MODIFIED)  # the same second: "not modified since", "not modified after"


def outcome(**headers: str) -> Outcome:
    return evaluate({k.replace("_", "-"): v for k, v in headers.items()}, ETAG, MODIFIED)


# -- preconditions ---------------------------------------------------------------------------
def test_etag_forms() -> None:
    assert etag_matches(f'"{ETAG}"', ETAG)
    assert etag_matches(ETAG, ETAG)
    assert etag_matches(f'W/"{ETAG}"', ETAG)
    assert etag_matches(f'"nope", "{ETAG}"', ETAG)
    assert etag_matches("*", ETAG)
    assert not etag_matches('"nope"', ETAG)
    assert not etag_matches("", ETAG)
    assert not etag_matches('""', ETAG)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, Outcome.PROCEED),
        ({"if_match": f'"{ETAG}"'}, Outcome.PROCEED),
        ({"if_match": '"other"'}, Outcome.PRECONDITION_FAILED),
        ({"if_match": "*"}, Outcome.PROCEED),
        ({"if_none_match": f'"{ETAG}"'}, Outcome.NOT_MODIFIED),
        ({"if_none_match": "*"}, Outcome.NOT_MODIFIED),
        ({"if_none_match": '"other"'}, Outcome.PROCEED),
        ({"if_modified_since": BEFORE}, Outcome.PROCEED),
        ({"if_modified_since": SAME}, Outcome.NOT_MODIFIED),
        ({"if_modified_since": AFTER}, Outcome.NOT_MODIFIED),
        ({"if_unmodified_since": BEFORE}, Outcome.PRECONDITION_FAILED),
        ({"if_unmodified_since": SAME}, Outcome.PROCEED),
        ({"if_unmodified_since": AFTER}, Outcome.PROCEED),
        # S3's documented combinations.
        ({"if_match": ETAG, "if_unmodified_since": BEFORE}, Outcome.PROCEED),
        ({"if_none_match": ETAG, "if_modified_since": BEFORE}, Outcome.NOT_MODIFIED),
        # If-None-Match true: If-Modified-Since is not evaluated.
        ({"if_none_match": '"other"', "if_modified_since": AFTER}, Outcome.PROCEED),
        # 412 wins over 304.
        ({"if_match": '"other"', "if_none_match": ETAG}, Outcome.PRECONDITION_FAILED),
        ({"if_unmodified_since": BEFORE, "if_modified_since": AFTER}, Outcome.PRECONDITION_FAILED),
        # Unparseable dates are ignored.
        ({"if_modified_since": "yesterday"}, Outcome.PROCEED),
        ({"if_unmodified_since": "not a date"}, Outcome.PROCEED),
        ({"if_match": '"other"', "if_unmodified_since": "garbage"}, Outcome.PRECONDITION_FAILED),
    ],
)
def test_precedence(headers: dict[str, str], expected: Outcome) -> None:
    assert outcome(**headers) is expected


def test_http_dates() -> None:
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == datetime(
        1994, 11, 6, 8, 49, 37, tzinfo=UTC
    )
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == datetime(
        1994, 11, 6, 8, 49, 37, tzinfo=UTC
    )
    assert parse_http_date("2026-11-28T12:00:00Z") == datetime(2026, 11, 28, 12, tzinfo=UTC)
    for bad in (None, "", "   ", "tomorrow", "Sun, 99 Nov 1994 08:49:37 GMT"):
        assert parse_http_date(bad) is None


# -- version ids -----------------------------------------------------------------------------
def test_version_ids() -> None:
    assert is_version_id("null")
    assert is_version_id("0" * 32)
    assert is_version_id("187c4a1e2b3d4f5a9e8d7c6b5a493827")
    for bad in ("", "NULL", "0" * 31, "0" * 33, "g" * 32, "../" + "0" * 29, "ABCDEF" + "0" * 26):
        assert not is_version_id(bad)


# -- PutBucketVersioning --------------------------------------------------------------------
def test_versioning_configuration() -> None:
    doc = b'<VersioningConfiguration xmlns="%s"><Status>Enabled</Status></VersioningConfiguration>'
    assert parse_versioning_configuration(doc % NS[1:-1].encode()) == "Enabled"
    assert (
        parse_versioning_configuration(
            b"<VersioningConfiguration><Status>Suspended</Status>"
            b"<MfaDelete>Disabled</MfaDelete></VersioningConfiguration>"
        )
        == "Suspended"
    )
    with pytest.raises(s3e.NotImplemented):
        parse_versioning_configuration(
            b"<VersioningConfiguration><Status>Enabled</Status>"
            b"<MfaDelete>Enabled</MfaDelete></VersioningConfiguration>"
        )
    for bad in (
        b"",
        b"<VersioningConfiguration>",
        b"<VersioningConfiguration><Status>Unversioned</Status></VersioningConfiguration>",
        b"<VersioningConfiguration><Status>enabled</Status></VersioningConfiguration>",
        b"<VersioningConfiguration></VersioningConfiguration>",
        b"<Other><Status>Enabled</Status></Other>",
        b"<VersioningConfiguration><Status>Enabled</Status><Status>Enabled</Status>"
        b"</VersioningConfiguration>",
        b"<VersioningConfiguration><Status>Enabled</Status><MfaDelete>maybe</MfaDelete>"
        b"</VersioningConfiguration>",
    ):
        with pytest.raises(s3e.MalformedXML):
            parse_versioning_configuration(bad)


def test_versioning_document() -> None:
    never = ET.fromstring(versioning_document("Unversioned"))
    assert never.tag == f"{NS}VersioningConfiguration" and list(never) == []
    on = ET.fromstring(versioning_document("Enabled"))
    assert on.findtext(f"{NS}Status") == "Enabled"


# -- DeleteObjects ----------------------------------------------------------------------------
def delete_doc(n: int, *, quiet: str | None = None, extra: str = "") -> bytes:
    objects = "".join(f"<Object><Key>k{i}</Key></Object>" for i in range(n))
    q = f"<Quiet>{quiet}</Quiet>" if quiet is not None else ""
    return f"<Delete>{q}{objects}{extra}</Delete>".encode()


def test_delete_request() -> None:
    request = parse_delete_request(
        b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>'
        b"<Object><Key>a &amp; b</Key><VersionId>null</VersionId></Object>"
        b"<Object><Key> spaced </Key></Object></Delete>"
    )
    assert request.quiet
    assert request.objects == (("a & b", "null"), (" spaced ", None))
    assert not parse_delete_request(delete_doc(1)).quiet
    assert len(parse_delete_request(delete_doc(1000)).objects) == 1000


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        delete_doc(0),
        delete_doc(1001),
        delete_doc(1, quiet="yes"),
        b"<Delete><Object><VersionId>x</VersionId></Object></Delete>",
        b"<Delete><Object><Key></Key></Object></Delete>",
        b"<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>",
        b"<Remove><Object><Key>a</Key></Object></Remove>",
        # Entity expansion (billion laughs) and external entities: no DTD at all.
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<Delete><Object><Key>&lol2;</Key></Object></Delete>",
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<Delete><Object><Key>&x;</Key></Object></Delete>",
        b"<Delete>" + b"<Object><Key>k</Key></Object>" * 80_000 + b"</Delete>",  # > 2 MiB
    ],
)
def test_delete_request_malformed(body: bytes) -> None:
    with pytest.raises(s3e.MalformedXML):
        parse_delete_request(body)


def test_delete_result_document() -> None:
    deleted = [
        DeletedEntry("plain"),
        DeletedEntry("marked", delete_marker=True, delete_marker_version_id="m" * 32),
        DeletedEntry("v", version_id="null"),
    ]
    errors = [DeleteError("bad<key>", "x", "InvalidArgument", "Invalid version id specified")]
    root = ET.fromstring(delete_result_document(deleted, errors, quiet=False))
    got = [(d.findtext(f"{NS}Key"), d.findtext(f"{NS}DeleteMarkerVersionId")) for d in root]
    assert got == [("plain", None), ("marked", "m" * 32), ("v", None), ("bad<key>", None)]
    assert root[1].findtext(f"{NS}DeleteMarker") == "true"
    assert root[3].findtext(f"{NS}Code") == "InvalidArgument"
    quiet = ET.fromstring(delete_result_document(deleted, errors, quiet=True))
    assert [local.tag for local in quiet] == [f"{NS}Error"]


def test_has_integrity_header() -> None:
    assert has_integrity_header({"content-md5": "x"})
    assert has_integrity_header({"x-amz-checksum-crc32": "x"})
    assert has_integrity_header({"x-amz-trailer": "x-amz-checksum-crc64nvme"})
    assert not has_integrity_header({})
    assert not has_integrity_header({"x-amz-sdk-checksum-algorithm": "CRC32"})
    assert not has_integrity_header({"x-amz-checksum-mode": "ENABLED"})


# -- ListObjectVersions -----------------------------------------------------------------------
def test_list_versions_document() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    entries = [
        ListedVersion(1, "a b", "null", False, False, 3, ETAG, when),
        ListedVersion(2, "a b", "f" * 32, True, True, 0, "", when),
    ]
    body = list_versions_document(
        bucket="bkt",
        prefix="",
        delimiter="/",
        key_marker="",
        version_id_marker="",
        max_keys=2,
        is_truncated=True,
        next_key_marker="a b",
        next_version_id_marker="f" * 32,
        entries=entries,
        common_prefixes=["d/"],
        encoding_type="url",
        owner="me",
    )
    root = ET.fromstring(body)
    assert root.findtext(f"{NS}NextKeyMarker") == "a%20b"
    assert root.findtext(f"{NS}IsTruncated") == "true"
    version, marker = root.find(f"{NS}Version"), root.find(f"{NS}DeleteMarker")
    assert version is not None and marker is not None
    assert version.findtext(f"{NS}VersionId") == "null"
    assert version.findtext(f"{NS}ETag") == f'"{ETAG}"'
    assert version.findtext(f"{NS}StorageClass") == "STANDARD"
    assert marker.findtext(f"{NS}IsLatest") == "true"
    assert marker.find(f"{NS}Size") is None
    assert root.findtext(f"{NS}CommonPrefixes/{NS}Prefix") == "d/"
