"""The pure parts of multipart uploads: the Complete document, validation of the listed parts,
assembling the object's stored parts, ETags and composite checksums, copy ranges, headers."""

from __future__ import annotations

import base64
import hashlib
import time
import zlib
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

import pytest

from actors import upload_completion as completion
from actors import uploads
from core import errors as domain
from core.checksums import composite_checksum, multipart_etag
from core.envelope import ciphertext_length
from core.errors import InvalidEnvelope
from core.settings import load_settings
from gateway.s3 import errors as s3e
from gateway.s3 import xml
from gateway.s3.copy_source import copy_range
from gateway.s3.handlers.multipart_complete import object_checksums
from gateway.s3.handlers.multipart_create import checksum_algorithm
from schema.uploads import Chunk, Upload, UploadedPart, UploadPiece
from tests.support.envelopes import bp1_header

MIB = 1024 * 1024
Part = completion.ListedPart
chosen = completion.chosen_parts


def check_sent(headers: dict[str, str], upload: Upload, composite: str | None) -> None:
    """Complete's object checksum headers, as the handler reads them, checked."""
    completion.check_requested_checksums(object_checksums(headers), upload, composite)


def doc(*parts: str, root: str = "CompleteMultipartUpload") -> bytes:
    return f"<{root}>{''.join(parts)}</{root}>".encode()


def part(number: object, etag: str = '"abc"', extra: str = "") -> str:
    return f"<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag>{extra}</Part>"


# -- the Complete document --------------------------------------------------------------------
def test_parse_complete_document() -> None:
    body = (
        f'<CompleteMultipartUpload xmlns="{xml.S3_NS}">'
        + part(1, "&quot;aa&quot;", "<ChecksumCRC32>AAAAAA==</ChecksumCRC32>")
        + part(3, "bb")
        + "</CompleteMultipartUpload>"
    ).encode()
    parsed = xml.parse_complete_document(body)
    assert parsed == [
        Part(1, "aa", (("crc32", "AAAAAA=="),)),
        Part(3, "bb"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage",
        b"<CompleteMultipartUpload>",
        doc(root="Other"),
        doc(),  # no part at all
        doc(part("x")),
        doc(part(0)),
        doc(part(10001)),
        doc(part("\u00b2")),  # a digit to str.isdigit, not to int()
        doc("<Part><PartNumber>1</PartNumber></Part>"),
        doc("<Part><ETag>e</ETag></Part>"),
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><CompleteMultipartUpload>'
        + part(1, "&e;").encode()
        + b"</CompleteMultipartUpload>",
        doc(" " * (1024 * 1024 + 1), part(1)),
    ],
)
def test_malformed_complete_documents(body: bytes) -> None:
    with pytest.raises(s3e.MalformedXML):
        xml.parse_complete_document(body)


@pytest.mark.parametrize("numbers", [(2, 1), (1, 1), (1, 3, 2)])
def test_part_order(numbers: tuple[int, ...]) -> None:
    with pytest.raises(s3e.InvalidPartOrder):
        xml.parse_complete_document(doc(*(part(n) for n in numbers)))


# -- validation of the listed parts -----------------------------------------------------------
def upload(**kwargs: Any) -> Upload:
    fields: dict[str, Any] = {
        "upload_id": "u",
        "tenant_id": 1,
        "bucket_id": 1,
        "key": "k",
        "initiator": "AK",
        "content_type": None,
        "user_metadata": {},
        "redundancy_class": "StandardClass",
        "encrypted": False,
        "id": 7,
    }
    fields.update(kwargs)
    return Upload(**fields)


def stored_part(number: int, size: int, checksum: str | None = None) -> UploadedPart:
    etag = hashlib.md5(str(number).encode()).hexdigest()  # noqa: S324
    chunks = tuple(Chunk(min(MIB, size - i), b"\x01" * 32) for i in range(0, max(size, 1), MIB))
    return UploadedPart(number, size, etag, b"\x00" * 32, chunks, checksum)


def test_chosen_parts_checks_etag_size_and_checksum() -> None:
    parts = {1: stored_part(1, 5 * MIB, "c1"), 2: stored_part(2, MIB, "c2"), 3: stored_part(3, 9)}
    plain = upload()
    listed = [Part(1, parts[1].etag), Part(3, parts[3].etag.upper())]
    assert [p.part_number for p in chosen(plain, listed, parts)] == [1, 3]
    with pytest.raises(domain.InvalidPart):
        chosen(plain, [Part(4, "00")], parts)
    with pytest.raises(domain.InvalidPart):  # not ASCII: still only a wrong ETag
        chosen(plain, [Part(1, "\u00e9t\u00e9")], parts)
    with pytest.raises(domain.InvalidPart):
        chosen(plain, [Part(1, parts[2].etag)], parts)
    with pytest.raises(domain.EntityTooSmall):
        chosen(plain, [Part(2, parts[2].etag), Part(3, parts[3].etag)], parts)
    summed = upload(checksum_algorithm="sha256")
    good = [Part(1, parts[1].etag, (("sha256", "c1"),))]
    assert chosen(summed, good, parts) == [parts[1]]
    for checksums in [(("sha256", "c2"),), (("crc32", "c1"),), (("sha256", "\u00e9"),)]:
        with pytest.raises(domain.InvalidPart):
            chosen(summed, [Part(1, parts[1].etag, checksums)], parts)
    with pytest.raises(domain.InvalidPart):  # the upload has no algorithm at all
        chosen(plain, good, parts)


def test_assemble_renumbers_chunks_across_parts() -> None:
    first = UploadedPart(
        1, 2 * MIB + 1, "e1", b"", (Chunk(MIB, b"a"), Chunk(MIB, b"b"), Chunk(1, b"c"))
    )
    second = UploadedPart(4, 10, "e4", b"", (Chunk(10, b"d"),))
    pieces = [
        UploadPiece(p, c, backend, -1, f"loc-{p}-{c}-{backend}", 1, b"s", status)
        for p, chunks, status in [(1, 3, "ok"), (4, 1, "pending"), (2, 1, "ok")]
        for c in range(chunks)
        for backend in (1, 2)
    ]
    sizes, replicas, layout = completion.assemble([first, second], pieces)
    assert sizes == [MIB, MIB, 1, 10]
    assert layout == []
    assert sorted((r.part_number, r.backend_id, r.locator, r.status) for r in replicas) == sorted(
        [(c, b, f"loc-1-{c}-{b}", "ok") for c in range(3) for b in (1, 2)]
        + [(3, b, f"loc-4-0-{b}", "pending") for b in (1, 2)]
    )


def test_assemble_erasure_layout_and_refuses_mixed_schemes() -> None:
    coded = UploadedPart(1, 8, "e", b"", (Chunk(8, b"x", 2, 1),))
    pieces = [UploadPiece(1, 0, b, b, f"l{b}", 4, b"s", "ok") for b in range(3)]
    sizes, replicas, layout = completion.assemble([coded], pieces)
    assert layout[0].part_number == 0 and (layout[0].k, layout[0].m) == (2, 1)
    assert {r.shard_index for r in replicas} == {0, 1, 2}
    plain = UploadedPart(2, 8, "e", b"", (Chunk(8, b"y"),))
    more = [*pieces, UploadPiece(2, 0, 0, -1, "p", 8, b"s", "ok")]
    with pytest.raises(domain.InvalidRequest):
        completion.assemble([coded, plain], more)


# -- ETag and checksums -----------------------------------------------------------------------
def test_multipart_etag() -> None:
    datas = [b"a" * 10, b"b" * 3]
    md5s = [hashlib.md5(d).hexdigest() for d in datas]  # noqa: S324
    joined = b"".join(hashlib.md5(d).digest() for d in datas)  # noqa: S324
    assert multipart_etag(md5s) == hashlib.md5(joined).hexdigest() + "-2"  # noqa: S324


def test_composite_checksums() -> None:
    datas = [b"hello", b"world", b"!"]
    crcs = [base64.b64encode(zlib.crc32(d).to_bytes(4, "big")).decode() for d in datas]
    raw = b"".join(zlib.crc32(d).to_bytes(4, "big") for d in datas)
    expected = base64.b64encode(zlib.crc32(raw).to_bytes(4, "big")).decode() + "-3"
    assert composite_checksum("crc32", crcs) == expected
    shas = [base64.b64encode(hashlib.sha256(d).digest()).decode() for d in datas]
    joined = b"".join(hashlib.sha256(d).digest() for d in datas)
    assert composite_checksum("sha256", shas) == (
        base64.b64encode(hashlib.sha256(joined).digest()).decode() + "-3"
    )


def test_requested_object_checksum_on_complete() -> None:
    summed = upload(checksum_algorithm="crc32")
    check_sent({"x-amz-checksum-crc32": "abc=-2"}, summed, "abc=-2")
    check_sent({"x-amz-checksum-crc32": "abc="}, summed, "abc=-2")
    check_sent({"x-amz-checksum-algorithm": "CRC32"}, summed, "abc=-2")
    with pytest.raises(domain.BadDigest):
        check_sent({"x-amz-checksum-crc32": "xyz="}, summed, "abc=-2")
    with pytest.raises(domain.InvalidRequest):
        check_sent({"x-amz-checksum-sha1": "x"}, summed, "abc=-2")


def test_checksum_algorithm_header() -> None:
    assert checksum_algorithm({}) is None
    assert checksum_algorithm({"x-amz-checksum-algorithm": "CRC32"}) == "crc32"
    assert checksum_algorithm({"x-amz-checksum-algorithm": "SHA256"}) == "sha256"
    with pytest.raises(s3e.InvalidRequest):
        checksum_algorithm({"x-amz-checksum-algorithm": "MD4"})
    with pytest.raises(s3e.NotImplemented):
        checksum_algorithm(
            {"x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-type": "FULL_OBJECT"}
        )


# -- copies, BP1, ids -------------------------------------------------------------------------
def test_copy_range() -> None:
    assert copy_range(None, 10) == (0, 9)
    assert copy_range("bytes=2-5", 10) == (2, 5)
    assert copy_range("bytes=0-9", 10) == (0, 9)
    for bad in ("bytes=0-10", "bytes=5-4"):
        with pytest.raises(s3e.InvalidRange):
            copy_range(bad, 10)
    for malformed in ("bytes=-5", "bytes=3-", "items=0-1", "bytes=0-1,3-4"):
        with pytest.raises(s3e.InvalidArgument):
            copy_range(malformed, 10)


def test_bp1_structure_is_checked_without_the_total_length() -> None:
    header = bp1_header(6 * MIB)
    assert uploads.check_bp1_structure(header + b"rest") == header
    for bad in (header[:100], b"XXXX" + header[4:], bp1_header(10, seg_log2=30)):
        with pytest.raises(InvalidEnvelope):
            uploads.check_bp1_structure(bad)
    assert ciphertext_length(6 * MIB, 16) == 112 + 6 * MIB + 16 * 96


def test_upload_ids_sort_by_creation() -> None:
    ids = []
    for _ in range(5):
        ids.append(uploads.new_upload_id())
        time.sleep(0.001)
    assert ids == sorted(ids) and len(set(ids)) == 5 and all(len(i) == 48 for i in ids)


# -- documents --------------------------------------------------------------------------------
def local(tree: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return [e for e in tree.iter() if xml.local_name(e) == name]


def test_response_documents_parse() -> None:
    now = datetime.now(UTC)
    parts = ElementTree.fromstring(
        xml.list_parts_document(
            bucket="b",
            key="k&<",
            upload_id="u",
            owner="o",
            initiator="i",
            part_number_marker=0,
            next_part_number_marker=2,
            max_parts=2,
            is_truncated=True,
            checksum_algorithm="crc32",
            parts=[(1, now, "e1", 5, "AAAAAA=="), (2, now, "e2", 6, None)],
        )
    )
    assert [e.text for e in local(parts, "Key")] == ["k&<"]
    assert [e.text for e in local(parts, "ChecksumCRC32")] == ["AAAAAA=="]
    assert [e.text for e in local(parts, "ETag")] == ['"e1"', '"e2"']
    uploads = ElementTree.fromstring(
        xml.list_multipart_uploads_document(
            bucket="b",
            owner="o",
            prefix="",
            delimiter="/",
            key_marker="",
            upload_id_marker="",
            next_key_marker="a b",
            next_upload_id_marker="u1",
            max_uploads=1,
            is_truncated=True,
            encoding_type="url",
            uploads=[("a b", "u1", "i", now, "sha256")],
            common_prefixes=["x/"],
        )
    )
    assert [e.text for e in local(uploads, "Key")] == ["a%20b"]
    assert [e.text for e in local(uploads, "ChecksumAlgorithm")] == ["SHA256"]
    assert [e.text for e in local(uploads, "Prefix")][-1] == "x/"
    done = ElementTree.fromstring(
        xml.complete_multipart_upload_document(
            location="http://h/b/k",
            bucket="b",
            key="k",
            etag="abc-2",
            checksum=("crc32", "xx==-2"),
            checksum_type="COMPOSITE",
        )
    )
    assert [e.text for e in local(done, "ChecksumCRC32")] == ["xx==-2"]
    assert [e.text for e in local(done, "ETag")] == ['"abc-2"']


# -- the expirer's registration ---------------------------------------------------------------
def test_upload_expirer_is_a_registered_worker() -> None:
    from cluster.cli_workers import _WORKER_NAMES
    from jobs.catalog import WORKERS, default_schedules
    from jobs.upload_expirer import UploadExpirer

    assert WORKERS["upload_expirer"] is UploadExpirer
    assert "upload_expirer" in _WORKER_NAMES
    settings = load_settings(env={"BP_UPLOAD_EXPIRY_INTERVAL_S": "60"})
    assert default_schedules(settings)["upload_expirer"] == 60.0
    assert load_settings(env={}).upload_expiry_s == 7 * 86400.0
