"""Import sources as plain values (location, credentials, URL, errors) and the manifest's
segment format, without services."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from actors.source_bucket import entry_of
from core.errors import AccessDenied, InvalidInput, NotFound
from core.import_source import (
    SourceAccessDenied,
    SourceBucketMissing,
    SourceCredentials,
    SourceError,
    SourceLocation,
    SourceUnreachable,
    parse_source_url,
)
from jobs.import_manifest import MANIFEST_SCHEMA, ManifestLister, read_segment, segment_bytes
from schema.import_records import ManifestEntry


def test_source_urls() -> None:
    assert parse_source_url("s3://legacy") == ("legacy", "")
    assert parse_source_url("s3://legacy/") == ("legacy", "")
    assert parse_source_url("s3://legacy/photos/2024/") == ("legacy", "photos/2024/")
    assert parse_source_url("s3://b/odd?#%20 prefix") == ("b", "odd?#%20 prefix")
    for bad in ("legacy", "s3://", "s3:///x", "https://legacy/x", "S3://legacy"):
        with pytest.raises(InvalidInput):
            parse_source_url(bad)


def test_locations_are_checked() -> None:
    here = SourceLocation("https://s3.wasabisys.com", "legacy", "p/", "eu-central-1")
    assert (here.bucket, here.prefix, here.region) == ("legacy", "p/", "eu-central-1")
    for endpoint in ("s3.example.com", "ftp://h", "http://", "https://user:pw@host"):
        with pytest.raises(InvalidInput, match="endpoint"):
            SourceLocation(endpoint, "legacy")
    for bucket in ("", "a/b"):
        with pytest.raises(InvalidInput, match="bucket"):
            SourceLocation("http://h", bucket)


def test_credentials_never_show_their_secret() -> None:
    creds = SourceCredentials.from_opened(
        {"access_key": "AKID", "secret_key": "s3cr3t", "session_token": "tok3n"}
    )
    assert (creds.access_key, creds.secret_key, creds.session_token) == ("AKID", "s3cr3t", "tok3n")
    assert "s3cr3t" not in repr(creds) and "tok3n" not in repr(creds) and "AKID" in repr(creds)
    assert (
        SourceCredentials.from_opened({"access_key": "a", "secret_key": "b"}).session_token is None
    )


def test_the_error_kinds() -> None:
    for kind in (SourceUnreachable, SourceAccessDenied, SourceBucketMissing):
        assert issubclass(kind, SourceError)
    assert issubclass(SourceAccessDenied, AccessDenied)
    assert issubclass(SourceBucketMissing, NotFound)


def test_listing_items_become_entries() -> None:
    at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    item = {"Key": "k", "Size": 5, "ETag": '"abc-2"', "LastModified": at}
    assert entry_of(item) == ManifestEntry("k", 5, "abc-2", at, None)
    with_checksum = dict(item, ChecksumAlgorithm=["crc64nvme"], ChecksumType="FULL_OBJECT")
    assert entry_of(with_checksum).checksum == "CRC64NVME:"
    assert entry_of({"Key": "e", "Size": 0, "ETag": "d41d8cd98f00b204e9800998ecf8427e"}) == (
        ManifestEntry("e", 0, "d41d8cd98f00b204e9800998ecf8427e", None, None)
    )


def test_segments_round_trip_and_say_what_they_are() -> None:
    at = datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
    entries = [
        ManifestEntry("a b/ü", 0, "d41d8cd98f00b204e9800998ecf8427e", at, None),
        ManifestEntry("z", 2**40, "abc-9", None, "CRC32:"),
    ]
    data = segment_bytes(entries, run_id=7, seq=3)
    assert read_segment(data) == entries
    schema = pq.read_schema(io.BytesIO(data))
    assert schema.remove_metadata().equals(MANIFEST_SCHEMA.remove_metadata())
    assert schema.metadata[b"run_id"] == b"7" and schema.metadata[b"seq"] == b"3"
    plain = io.BytesIO()
    pq.write_table(pq.read_table(io.BytesIO(data)).replace_schema_metadata(None), plain)
    with pytest.raises(InvalidInput, match="not a Bulletproof manifest"):
        read_segment(plain.getvalue())


def test_page_size_is_bounded() -> None:
    for size in (0, 1001):
        with pytest.raises(InvalidInput, match="page_size"):
            ManifestLister(db=None, page_size=size)  # type: ignore[arg-type]
