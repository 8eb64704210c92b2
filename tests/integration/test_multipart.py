"""Multipart uploads over HTTP with boto3 (and raw signed requests for malformed documents),
against the real federation: moto backends, PostgreSQL, Redis, the gateway on Ray.

Tests run with ``BP_PART_SIZE`` = 1 MiB, so a 5 MiB part is stored as 5 chunks per replica.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import os
import threading
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from core.envelope import ciphertext_length
from tests.integration.test_s3_api import error_of
from tests.support.cluster import Federation
from tests.support.envelopes import bp1_header, fake_envelope

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
PART = 5 * MIB


@dataclasses.dataclass
class Client:
    key: str
    secret: str
    s3: Any


@pytest.fixture(scope="module")
def plain(cluster: Federation) -> Client:
    _, key, secret = cluster.create_tenant(allow_plaintext=True)
    return Client(key, secret, cluster.s3(key, secret))


@pytest.fixture
def bucket(plain: Client, bucket_name: str) -> str:
    plain.s3.create_bucket(Bucket=bucket_name)
    return bucket_name


# -- helpers ----------------------------------------------------------------------------------
def upload(
    s3: Any, bucket: str, key: str, parts: list[bytes], **create: Any
) -> tuple[str, list[dict[str, Any]]]:
    """Create an upload and upload ``parts`` as parts 1..N; (upload id, the Complete list)."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    listed = []
    for number, data in enumerate(parts, start=1):
        etag = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )["ETag"]
        listed.append({"PartNumber": number, "ETag": etag})
    return upload_id, listed


def complete(s3: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]]) -> Any:
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )


def expected_etag(parts: list[bytes]) -> str:
    """S3's multipart ETag, computed independently of the gateway."""
    digests = b"".join(hashlib.md5(p).digest() for p in parts)  # noqa: S324
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'  # noqa: S324


def backend_names(cluster: Federation) -> dict[int, int]:
    """backend id -> index of its moto server."""
    rows = cluster.sql("SELECT id, name FROM backends")
    # Other modules add backends of their own (other names); only b0..b2 are the session's.
    return {
        r["id"]: int(r["name"][1:])
        for r in rows
        if r["name"][:1] == "b" and r["name"][1:].isdigit() and int(r["name"][1:]) < 3
    }


def backend_listing(cluster: Federation, index: int) -> set[str]:
    s3 = cluster.backend_s3(index)
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=cluster.backend_bucket(index)):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


def stored(cluster: Federation, pieces: set[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of these (backend id, locator) pairs the moto backends still hold."""
    names = backend_names(cluster)
    listings = {names[b]: backend_listing(cluster, names[b]) for b in {b for b, _ in pieces}}
    return {(b, loc) for b, loc in pieces if loc in listings[names[b]]}


def upload_pieces(cluster: Federation, upload_id: str) -> set[tuple[int, str]]:
    rows = cluster.sql(
        "SELECT p.backend_id, p.locator FROM upload_pieces p JOIN uploads u ON u.id = p.upload_pk"
        " WHERE u.upload_id = $1",
        upload_id,
    )
    return {(r["backend_id"], r["locator"]) for r in rows}


def wait_gone(cluster: Federation, pieces: set[tuple[int, str]], what: str) -> None:
    cluster.wait_for(lambda: not stored(cluster, pieces), timeout_s=30, what=what)


def version_row(cluster: Federation, bucket: str, key: str) -> dict[str, Any]:
    rows = cluster.sql(
        "SELECT v.* FROM object_versions v JOIN buckets b ON b.id = v.bucket_id"
        " WHERE b.name = $1 AND v.key = $2 AND v.is_latest",
        bucket,
        key,
    )
    assert len(rows) == 1
    return rows[0]


def signed_request(
    cluster: Federation,
    client: Client,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A SigV4-signed raw request (the payload hash signed), for bodies boto3 would not send."""
    url = f"{cluster.endpoint}{path}"
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    S3SigV4Auth(Credentials(client.key, client.secret), "s3", cluster.settings.region).add_auth(
        request
    )
    return httpx.request(
        method, url, content=body, headers=dict(request.headers.items()), timeout=60
    )


# -- round trips ------------------------------------------------------------------------------
def test_upload_complete_and_read_back(cluster: Federation, plain: Client, bucket: str) -> None:
    s3 = plain.s3
    parts = [os.urandom(PART), os.urandom(PART), os.urandom(MIB + MIB // 2 + 7)]
    data = b"".join(parts)
    upload_id, listed = upload(
        s3, bucket, "big/object", parts, ContentType="x/y", Metadata={"colour": "blue"}
    )
    done = complete(s3, bucket, "big/object", upload_id, listed)
    assert done["ETag"] == expected_etag(parts)
    assert done["Key"] == "big/object" and done["Bucket"] == bucket
    assert "VersionId" not in done  # an unversioned bucket
    got = s3.get_object(Bucket=bucket, Key="big/object")
    assert got["Body"].read() == data
    assert got["ETag"] == expected_etag(parts)
    assert got["ContentType"] == "x/y"
    assert got["Metadata"] == {"colour": "blue"}
    assert s3.head_object(Bucket=bucket, Key="big/object")["ContentLength"] == len(data)
    for first, last in [
        (0, 0),
        (PART - 3, PART + 3),  # across the part boundary
        (MIB - 1, MIB),  # across a chunk boundary inside part 1
        (2 * PART - 1, 2 * PART),
        (PART + 17, len(data) - 1),
        (len(data) - 1, len(data) - 1),
    ]:
        ranged = s3.get_object(Bucket=bucket, Key="big/object", Range=f"bytes={first}-{last}")
        assert ranged["Body"].read() == data[first : last + 1], (first, last)
    suffix = s3.get_object(Bucket=bucket, Key="big/object", Range="bytes=-100")
    assert suffix["Body"].read() == data[-100:]
    # 5 + 5 + 2 chunks of at most 1 MiB, each on the three backends with its own checksum.
    row = version_row(cluster, bucket, "big/object")
    assert row["part_sizes"] == [MIB] * 11 + [MIB // 2 + 7]
    assert row["part_count"] == 12 and row["sha256"] is None and row["size"] == len(data)
    replicas = cluster.replicas(bucket, "big/object")
    assert len(replicas) == 36
    # A copy that fell behind (dropped by the quorum writer, or still in flight when its part
    # was committed) is pending, with its replication job queued by Complete.
    pending = {r["backend_id"] for r in replicas if r["status"] == "pending"}
    assert {r["status"] for r in replicas} <= {"ok", "pending"}
    assert len({r["backend_id"] for r in replicas if r["status"] == "ok"}) >= 2
    jobs = cluster.sql(
        "SELECT (payload->>'target_backend_id')::bigint AS target FROM jobs"
        " WHERE kind = 'replicate' AND (payload->>'version_pk')::bigint = $1",
        row["id"],
    )
    assert {j["target"] for j in jobs} <= {r["backend_id"] for r in replicas}
    assert pending <= {j["target"] for j in jobs}
    # The upload is gone: listing, its id, its rows.
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert cluster.sql("SELECT 1 FROM uploads WHERE upload_id = $1", upload_id) == []
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["big/object"]


def test_single_short_part_and_empty_part(plain: Client, bucket: str) -> None:
    s3 = plain.s3
    upload_id, listed = upload(s3, bucket, "small", [b"hello"])
    assert complete(s3, bucket, "small", upload_id, listed)["ETag"] == expected_etag([b"hello"])
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == b"hello"
    upload_id, listed = upload(s3, bucket, "empty", [b""])
    complete(s3, bucket, "empty", upload_id, listed)
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b"" and got["ContentLength"] == 0


def test_versioned_bucket_returns_the_version_id(plain: Client, bucket: str) -> None:
    s3 = plain.s3
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    put = s3.put_object(Bucket=bucket, Key="v", Body=b"first")
    assert put["VersionId"] not in ("", "null")
    upload_id, listed = upload(s3, bucket, "v", [b"second"])
    done = complete(s3, bucket, "v", upload_id, listed)
    assert done["VersionId"] not in ("", "null", put["VersionId"])
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"second"


# -- refusals ---------------------------------------------------------------------------------
def test_complete_refusals_leave_nothing_visible(
    cluster: Federation, plain: Client, bucket: str
) -> None:
    s3 = plain.s3
    small, tail = os.urandom(MIB), b"tail"
    upload_id, listed = upload(s3, bucket, "k", [small, tail])
    zero = '"' + "0" * 32 + '"'
    cases: list[tuple[list[dict[str, Any]], tuple[int, str]]] = [
        (listed, (400, "EntityTooSmall")),  # part 1 is only 1 MiB and not the last
        ([{"PartNumber": 1, "ETag": zero}], (400, "InvalidPart")),
        ([{"PartNumber": 3, "ETag": listed[0]["ETag"]}], (400, "InvalidPart")),
        ([listed[1], listed[0]], (400, "InvalidPartOrder")),
        ([listed[0], listed[0]], (400, "InvalidPartOrder")),
        ([], (400, "MalformedXML")),
    ]
    for parts, expected in cases:
        with pytest.raises(ClientError) as exc:
            complete(s3, bucket, "k", upload_id, parts)
        assert error_of(exc) == expected, parts
        with pytest.raises(ClientError) as missing:
            s3.head_object(Bucket=bucket, Key="k")
        assert error_of(missing)[0] == 404
    # The upload survived every refusal; ETags match without quotes too.
    unlisted = {
        p
        for p in upload_pieces(cluster, upload_id)
        if p
        in {
            (r["backend_id"], r["locator"])
            for r in cluster.sql(
                "SELECT backend_id, locator FROM upload_pieces WHERE part_number = 1"
            )
        }
    }
    assert len(unlisted) == 3  # 1 MiB = one chunk on each of three backends
    parts = [{"PartNumber": 2, "ETag": listed[1]["ETag"].strip('"')}]
    assert complete(s3, bucket, "k", upload_id, parts)["ETag"] == expected_etag([tail])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == tail
    # The unlisted part's pieces are garbage now, and leave the backends.
    wait_gone(cluster, unlisted, "unlisted part's pieces deleted")


def test_no_such_upload(cluster: Federation, plain: Client, bucket: str) -> None:
    s3 = plain.s3
    upload_id, listed = upload(s3, bucket, "k", [b"data"])

    def refused(
        client: Any,
        upload_id: str,
        key: str = "k",
        bucket: str = bucket,
        parts: list[dict[str, Any]] = listed,
    ) -> None:
        calls = [
            # A body no successful call sent: the same signed request again within the skew
            # window would be a replay (403, gateway/admission.py), not a NoSuchUpload.
            lambda: client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"refused"
            ),
            lambda: client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id),
            lambda: complete(client, bucket, key, upload_id, parts),
            lambda: client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id),
        ]
        for call in calls:
            with pytest.raises(ClientError) as exc:
                call()
            assert error_of(exc) == (404, "NoSuchUpload")

    refused(s3, "0" * 48)  # unknown
    refused(s3, upload_id, key="other")  # another key of the same bucket
    # Another tenant, with a bucket of the same name: the id means nothing there.
    _, key, secret = cluster.create_tenant(allow_plaintext=True)
    foreign = cluster.s3(key, secret)
    foreign.create_bucket(Bucket=bucket)
    refused(foreign, upload_id)
    assert foreign.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    # Still intact for its owner; once completed, the id is gone for good, except that a
    # retried Complete naming the same parts gets the first answer again (issue 17): another
    # part list is NoSuchUpload, as is every other call.
    first = complete(s3, bucket, "k", upload_id, listed)
    assert complete(s3, bucket, "k", upload_id, listed)["ETag"] == first["ETag"]
    refused(s3, upload_id, parts=[{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}])
    aborted, _ = upload(s3, bucket, "k2", [b"x"])
    s3.abort_multipart_upload(Bucket=bucket, Key="k2", UploadId=aborted)
    refused(s3, aborted, key="k2")


def test_reuploaded_part_replaces_the_old_one(
    cluster: Federation, plain: Client, bucket: str
) -> None:
    s3 = plain.s3
    first, second = os.urandom(2 * MIB), os.urandom(MIB + 5)
    upload_id, old_listed = upload(s3, bucket, "re", [first])
    old = upload_pieces(cluster, upload_id)
    assert len(old) == 6 and stored(cluster, old) == old
    _, new_listed = (
        upload_id,
        [
            {
                "PartNumber": 1,
                "ETag": s3.upload_part(
                    Bucket=bucket, Key="re", UploadId=upload_id, PartNumber=1, Body=second
                )["ETag"],
            }
        ],
    )
    new = upload_pieces(cluster, upload_id)
    assert len(new) == 6 and not new & old
    parts = s3.list_parts(Bucket=bucket, Key="re", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [
        (1, new_listed[0]["ETag"], len(second))
    ]
    wait_gone(cluster, old, "replaced part's pieces deleted from the backends")
    with pytest.raises(ClientError) as exc:
        complete(s3, bucket, "re", upload_id, old_listed)
    assert error_of(exc) == (400, "InvalidPart")
    complete(s3, bucket, "re", upload_id, new_listed)
    assert s3.get_object(Bucket=bucket, Key="re")["Body"].read() == second
    assert stored(cluster, new) == new


def test_abort_deletes_every_piece(cluster: Federation, plain: Client, bucket: str) -> None:
    s3 = plain.s3
    upload_id, _ = upload(s3, bucket, "gone", [os.urandom(PART), os.urandom(MIB)])
    pieces = upload_pieces(cluster, upload_id)
    assert len(pieces) == 3 * 6 and stored(cluster, pieces) == pieces
    response = s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=upload_id)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert upload_pieces(cluster, upload_id) == set()
    wait_gone(cluster, pieces, "aborted upload's pieces deleted from every backend")
    actions = cluster.sql(
        "SELECT action FROM audit_log WHERE result LIKE $1 ORDER BY seq", f"ok upload={upload_id}%"
    )
    assert [a["action"] for a in actions] == ["CreateMultipartUpload", "AbortMultipartUpload"]
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="gone")
    assert error_of(exc)[0] == 404


# -- listings ---------------------------------------------------------------------------------
def test_list_parts_pagination_and_checksums(
    cluster: Federation, plain: Client, bucket: str
) -> None:
    s3 = plain.s3
    key = "parts"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256")[
        "UploadId"
    ]
    datas = [os.urandom(PART) for _ in range(4)] + [os.urandom(1000)]
    sent = []
    for number, data in enumerate(datas, start=1):
        response = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="SHA256",
        )
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        assert response["ChecksumSHA256"] == checksum
        assert response["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'  # noqa: S324
        sent.append({"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum})
    seen: list[dict[str, Any]] = []
    marker = 0
    pages = 0
    while True:
        page = s3.list_parts(
            Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=2, PartNumberMarker=marker
        )
        pages += 1
        assert page["ChecksumAlgorithm"] == "SHA256"
        seen.extend(page["Parts"])
        if not page["IsTruncated"]:
            break
        marker = page["NextPartNumberMarker"]
        assert marker == page["Parts"][-1]["PartNumber"]
    assert pages == 3
    assert [(p["PartNumber"], p["ETag"], p["Size"], p["ChecksumSHA256"]) for p in seen] == [
        (s["PartNumber"], s["ETag"], len(d), s["ChecksumSHA256"])
        for s, d in zip(sent, datas, strict=True)
    ]
    assert all(p["LastModified"].year >= 2024 for p in seen)
    # A checksum that is not the part's is refused, and so is another algorithm.
    wrong = [dict(sent[0], ChecksumSHA256=sent[1]["ChecksumSHA256"]), *sent[1:]]
    with pytest.raises(ClientError) as exc:
        complete(s3, bucket, key, upload_id, wrong)
    assert error_of(exc) == (400, "InvalidPart")
    crc = [{"PartNumber": 1, "ETag": sent[0]["ETag"], "ChecksumCRC32": "AAAAAA=="}]
    with pytest.raises(ClientError) as exc:
        complete(s3, bucket, key, upload_id, crc)
    assert error_of(exc) == (400, "InvalidPart")
    done = complete(s3, bucket, key, upload_id, sent)
    raw = b"".join(hashlib.sha256(d).digest() for d in datas)
    composite = base64.b64encode(hashlib.sha256(raw).digest()).decode() + "-5"
    assert done["ChecksumSHA256"] == composite
    row = version_row(cluster, bucket, key)
    assert (row["checksum_algorithm"], row["checksum_value"], row["checksum_type"]) == (
        "sha256",
        composite,
        "COMPOSITE",
    )
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(datas)


def test_list_multipart_uploads_pagination(plain: Client, bucket: str) -> None:
    s3 = plain.s3
    keys = ["a/1", "a/2", "b", "c", "c", "d e"]
    ids: list[tuple[str, str]] = []
    for key in keys:
        ids.append((key, s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]))
    everything = s3.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in everything["Uploads"]] == ids
    assert everything["IsTruncated"] is False
    assert all(u["Initiator"]["ID"] == plain.key for u in everything["Uploads"])
    # Pages of two, resuming from NextKeyMarker / NextUploadIdMarker (between the two "c").
    got: list[tuple[str, str]] = []
    markers: dict[str, str] = {}
    while True:
        page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=2, **markers)
        got.extend((u["Key"], u["UploadId"]) for u in page.get("Uploads", []))
        if not page["IsTruncated"]:
            break
        markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    assert got == ids
    # KeyMarker alone skips every upload of that key.
    after_c = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="c")
    assert [u["Key"] for u in after_c["Uploads"]] == ["d e"]
    # Delimiter: a/ rolls up into one common prefix, which counts as one entry of a page.
    rolled = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["a/"]
    assert [u["Key"] for u in rolled["Uploads"]] == ["b", "c", "c", "d e"]
    entries: list[str] = []
    markers = {}
    while True:
        page = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/", MaxUploads=1, **markers)
        entries.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
        entries.extend(u["Key"] for u in page.get("Uploads", []))
        if not page["IsTruncated"]:
            break
        markers = {"KeyMarker": page["NextKeyMarker"]}
        if page.get("NextUploadIdMarker"):
            markers["UploadIdMarker"] = page["NextUploadIdMarker"]
    assert entries == ["a/", "b", "c", "c", "d e"]
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix="c")["Uploads"]] == [
        "c",
        "c",
    ]
    encoded = s3.list_multipart_uploads(Bucket=bucket, Prefix="d", EncodingType="url")
    assert [u["Key"] for u in encoded["Uploads"]] in (["d e"], [quote("d e")])
    for key, upload_id in ids:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# -- UploadPartCopy ---------------------------------------------------------------------------
def test_upload_part_copy(cluster: Federation, plain: Client, bucket: str) -> None:
    s3 = plain.s3
    whole, big = os.urandom(PART), os.urandom(7 * MIB + 11)
    s3.put_object(Bucket=bucket, Key="whole", Body=whole)
    s3.put_object(Bucket=bucket, Key="big", Body=big)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    copied = s3.upload_part_copy(
        Bucket=bucket,
        Key="dst",
        UploadId=upload_id,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "whole"},
    )["CopyPartResult"]
    assert copied["ETag"] == f'"{hashlib.md5(whole).hexdigest()}"'  # noqa: S324
    assert copied["LastModified"].year >= 2024
    first, last = MIB - 7, 6 * MIB + 2  # across the source's chunk boundaries
    ranged = s3.upload_part_copy(
        Bucket=bucket,
        Key="dst",
        UploadId=upload_id,
        PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "big"},
        CopySourceRange=f"bytes={first}-{last}",
    )["CopyPartResult"]
    piece = big[first : last + 1]
    assert ranged["ETag"] == f'"{hashlib.md5(piece).hexdigest()}"'  # noqa: S324
    tail = s3.upload_part(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=3, Body=b"!")
    refusals = [
        (f"bytes=0-{len(big)}", {"Key": "big"}, (416, "InvalidRange")),
        ("bytes=5-1", {"Key": "big"}, (416, "InvalidRange")),
        ("bytes=abc", {"Key": "big"}, (400, "InvalidArgument")),
        (None, {"Key": "missing"}, (404, "NoSuchKey")),
    ]
    for copy_range, source, expected in refusals:
        extra = {"CopySourceRange": copy_range} if copy_range else {}
        with pytest.raises(ClientError) as exc:
            s3.upload_part_copy(
                Bucket=bucket,
                Key="dst",
                UploadId=upload_id,
                PartNumber=4,
                CopySource={"Bucket": bucket, **source},
                **extra,
            )
        assert error_of(exc) == expected, (copy_range, source)
    complete(
        s3,
        bucket,
        "dst",
        upload_id,
        [
            {"PartNumber": 1, "ETag": copied["ETag"]},
            {"PartNumber": 2, "ETag": ranged["ETag"]},
            {"PartNumber": 3, "ETag": tail["ETag"]},
        ],
    )
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == whole + piece + b"!"


# -- clients ----------------------------------------------------------------------------------
def test_s3transfer_upload_file_with_default_checksums(
    cluster: Federation, plain: Client, bucket: str, tmp_path: Any
) -> None:
    s3 = plain.s3
    data = os.urandom(40 * MIB + 123)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    config = TransferConfig(
        multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB, max_concurrency=10
    )
    s3.upload_file(str(source), bucket, "transfer", Config=config)
    chunks = [data[i : i + 8 * MIB] for i in range(0, len(data), 8 * MIB)]
    head = s3.head_object(Bucket=bucket, Key="transfer")
    assert head["ETag"] == expected_etag(chunks) and head["ContentLength"] == len(data)
    target = tmp_path / "download.bin"
    s3.download_file(bucket, "transfer", str(target), Config=config)
    assert target.read_bytes() == data
    # s3transfer asked for CRC32 (botocore's default): the object has the composite checksum.
    raw = b"".join(zlib.crc32(c).to_bytes(4, "big") for c in chunks)
    composite = base64.b64encode(zlib.crc32(raw).to_bytes(4, "big")).decode() + f"-{len(chunks)}"
    row = version_row(cluster, bucket, "transfer")
    assert (row["checksum_algorithm"], row["checksum_value"], row["checksum_type"]) == (
        "crc32",
        composite,
        "COMPOSITE",
    )


def test_put_object_stores_its_checksum_and_honours_if_none_match(
    cluster: Federation, plain: Client, bucket: str
) -> None:
    s3 = plain.s3
    put = s3.put_object(Bucket=bucket, Key="p", Body=b"payload", ChecksumAlgorithm="SHA256")
    checksum = base64.b64encode(hashlib.sha256(b"payload").digest()).decode()
    assert put["ChecksumSHA256"] == checksum
    row = version_row(cluster, bucket, "p")
    assert (row["checksum_algorithm"], row["checksum_value"], row["checksum_type"]) == (
        "sha256",
        checksum,
        "FULL_OBJECT",
    )
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="p", Body=b"again", IfNoneMatch="*")
    assert error_of(exc) == (412, "PreconditionFailed")
    s3.put_object(Bucket=bucket, Key="fresh", Body=b"new", IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="p")["Body"].read() == b"payload"


# -- conditional Complete and races -----------------------------------------------------------
def test_if_none_match_on_complete_lets_exactly_one_racer_win(
    cluster: Federation, plain: Client, bucket: str
) -> None:
    clients = [cluster.s3(plain.key, plain.secret) for _ in range(2)]
    datas = [b"first racer", b"second racer"]
    uploads = [upload(c, bucket, "race", [d]) for c, d in zip(clients, datas, strict=True)]
    barrier = threading.Barrier(2)
    outcomes: list[Any] = [None, None]

    def run(i: int) -> None:
        upload_id, listed = uploads[i]
        barrier.wait()
        try:
            outcomes[i] = clients[i].complete_multipart_upload(
                Bucket=bucket,
                Key="race",
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},
                IfNoneMatch="*",
            )["ETag"]
        except ClientError as exc:
            meta, error = exc.response["ResponseMetadata"], exc.response["Error"]
            outcomes[i] = (meta["HTTPStatusCode"], error["Code"])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, o in enumerate(outcomes) if isinstance(o, str)]
    assert len(winners) == 1, outcomes
    loser = 1 - winners[0]
    assert outcomes[loser] == (412, "PreconditionFailed")
    body = plain.s3.get_object(Bucket=bucket, Key="race")["Body"].read()
    assert body == datas[winners[0]]
    # The loser's upload is still there (S3 keeps it): it can be aborted.
    loser_id = uploads[loser][0]
    plain.s3.abort_multipart_upload(Bucket=bucket, Key="race", UploadId=loser_id)
    # If-Match with the current ETag completes over the existing object.
    upload_id, listed = upload(plain.s3, bucket, "race", [b"third"])
    plain.s3.complete_multipart_upload(
        Bucket=bucket,
        Key="race",
        UploadId=upload_id,
        MultipartUpload={"Parts": listed},
        IfMatch=outcomes[winners[0]],
    )
    assert plain.s3.get_object(Bucket=bucket, Key="race")["Body"].read() == b"third"


def _race_complete_and_abort(cluster: Federation, plain: Client, bucket: str, key: str) -> None:
    upload_id, listed = upload(plain.s3, bucket, key, [os.urandom(2 * MIB)])
    pieces = upload_pieces(cluster, upload_id)
    clients = [cluster.s3(plain.key, plain.secret) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[Any] = [None, None]

    def run(i: int) -> None:
        barrier.wait()
        try:
            if i == 0:
                complete(clients[0], bucket, key, upload_id, listed)
            else:
                clients[1].abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            outcomes[i] = "ok"
        except ClientError as exc:
            outcomes[i] = exc.response["Error"]["Code"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["NoSuchUpload", "ok"], outcomes
    if outcomes[0] == "ok":
        assert len(plain.s3.get_object(Bucket=bucket, Key=key)["Body"].read()) == 2 * MIB
        assert stored(cluster, pieces) == pieces
    else:
        with pytest.raises(ClientError):
            plain.s3.head_object(Bucket=bucket, Key=key)
        wait_gone(cluster, pieces, "aborted pieces collected")


def test_concurrent_complete_and_abort_one_wins(
    cluster: Federation, plain: Client, bucket: str
) -> None:
    for attempt in range(3):
        _race_complete_and_abort(cluster, plain, bucket, f"ca-{attempt}")


def test_a_part_interrupted_before_its_commit_leaves_nothing(
    cluster: Federation, plain: Client, bucket: str
) -> None:
    s3 = plain.s3
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="cut")["UploadId"]
    before = {i: backend_listing(cluster, i) for i in range(3)}

    def body() -> Iterator[bytes]:
        for _ in range(3):
            yield os.urandom(MIB)
        raise ConnectionError("the client goes away mid-part")

    path = f"/{bucket}/cut?partNumber=1&uploadId={upload_id}"
    request = AWSRequest(
        method="PUT",
        url=f"{cluster.endpoint}{path}",
        headers={"Content-Length": str(PART), "x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
    )
    S3SigV4Auth(Credentials(plain.key, plain.secret), "s3", cluster.settings.region).add_auth(
        request
    )
    with pytest.raises((httpx.HTTPError, ConnectionError)):
        httpx.put(
            f"{cluster.endpoint}{path}",
            content=body(),
            headers=dict(request.headers.items()),
            timeout=30,
        )
    # No part was recorded, nothing is visible, and what reached the backends is collected.
    cluster.wait_for(
        lambda: all(backend_listing(cluster, i) <= before[i] for i in range(3)),
        timeout_s=30,
        what="the interrupted part's chunks deleted",
    )
    assert s3.list_parts(Bucket=bucket, Key="cut", UploadId=upload_id).get("Parts", []) == []
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="cut")
    s3.abort_multipart_upload(Bucket=bucket, Key="cut", UploadId=upload_id)


# -- malformed documents ----------------------------------------------------------------------
def test_malformed_complete_documents_are_malformed_xml(
    cluster: Federation, plain: Client, bucket: str
) -> None:
    s3 = plain.s3
    upload_id, listed = upload(s3, bucket, "x", [b"data"])
    etag = listed[0]["ETag"].strip('"')
    part = f"<Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part>"
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&lol3;</ETag></Part>"
        "</CompleteMultipartUpload>"
    )
    bodies = [
        b"not xml at all",
        b"<CompleteMultipartUpload><Part>",
        laughs.encode(),
        b"<Other>" + part.encode() + b"</Other>",
        b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>e</ETag></Part>"
        b"</CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part>"
        b"</CompleteMultipartUpload>",
        b"<CompleteMultipartUpload>"
        + b" " * (1024 * 1024)
        + part.encode()
        + b"</CompleteMultipartUpload>",
    ]
    for body in bodies:
        response = signed_request(
            cluster, plain, "POST", f"/{bucket}/x?uploadId={upload_id}", body=body
        )
        assert response.status_code == 400, (body[:60], response.text)
        assert b"<Code>MalformedXML</Code>" in response.content, body[:60]
    good = f"<CompleteMultipartUpload>{part}</CompleteMultipartUpload>".encode()
    response = signed_request(cluster, plain, "POST", f"/{bucket}/x?uploadId={upload_id}", good)
    assert response.status_code == 200, response.text
    assert s3.get_object(Bucket=bucket, Key="x")["Body"].read() == b"data"


# -- encrypted tenants ------------------------------------------------------------------------
def test_encrypted_multipart_upload(
    cluster: Federation, tenant: tuple[str, Any], bucket_name: str
) -> None:
    _, s3 = tenant
    s3.create_bucket(Bucket=bucket_name)
    plaintext_length = 6 * MIB + 1000
    total = ciphertext_length(plaintext_length, 16)
    envelope = fake_envelope()
    body = bp1_header(plaintext_length) + os.urandom(total - 112)
    parts = [body[:PART], body[PART:]]
    upload_id, listed = upload(s3, bucket_name, "sealed", parts, Metadata=envelope)
    complete(s3, bucket_name, "sealed", upload_id, listed)
    got = s3.get_object(Bucket=bucket_name, Key="sealed")
    assert got["Body"].read() == body
    assert got["Metadata"]["bp-key-id"] == envelope["bp-key-id"]
    assert got["Metadata"]["bp-content-id"] == envelope["bp-content-id"]

    # No envelope: refused at Create.
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=bucket_name, Key="plain")
    assert error_of(exc) == (400, "InvalidRequest")
    # Part 1 must start with a BP1 header.
    upload_id = s3.create_multipart_upload(Bucket=bucket_name, Key="bad", Metadata=envelope)[
        "UploadId"
    ]
    with pytest.raises(ClientError) as exc:
        s3.upload_part(
            Bucket=bucket_name, Key="bad", UploadId=upload_id, PartNumber=1, Body=os.urandom(500)
        )
    assert error_of(exc) == (400, "InvalidRequest")
    assert s3.list_parts(Bucket=bucket_name, Key="bad", UploadId=upload_id).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket=bucket_name, Key="bad", UploadId=upload_id)
    # A header whose length is not the assembled length: Complete refuses, nothing visible.
    wrong = bp1_header(plaintext_length + 1) + body[112:]
    upload_id, listed = upload(
        s3, bucket_name, "short", [wrong[:PART], wrong[PART:]], Metadata=envelope
    )
    with pytest.raises(ClientError) as exc:
        complete(s3, bucket_name, "short", upload_id, listed)
    assert error_of(exc) == (400, "InvalidRequest")
    assert "BP1" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket_name, Key="short")
    assert error_of(exc)[0] == 404
    # Part 1 left out: the object would not start with the header.
    with pytest.raises(ClientError) as exc:
        complete(s3, bucket_name, "short", upload_id, listed[1:])
    assert error_of(exc) == (400, "InvalidRequest")
    s3.abort_multipart_upload(Bucket=bucket_name, Key="short", UploadId=upload_id)

    # Copying parts of an encrypted object: only into an upload of the same key and envelope.
    other = s3.create_multipart_upload(Bucket=bucket_name, Key="elsewhere", Metadata=envelope)
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(
            Bucket=bucket_name,
            Key="elsewhere",
            UploadId=other["UploadId"],
            PartNumber=1,
            CopySource={"Bucket": bucket_name, "Key": "sealed"},
            CopySourceRange=f"bytes=0-{PART - 1}",
        )
    assert error_of(exc) == (400, "InvalidRequest")
    assert "bound" in exc.value.response["Error"]["Message"]
    s3.abort_multipart_upload(Bucket=bucket_name, Key="elsewhere", UploadId=other["UploadId"])
    again = s3.create_multipart_upload(Bucket=bucket_name, Key="sealed", Metadata=envelope)
    copies = []
    for number, (first, last) in enumerate([(0, PART - 1), (PART, total - 1)], start=1):
        result = s3.upload_part_copy(
            Bucket=bucket_name,
            Key="sealed",
            UploadId=again["UploadId"],
            PartNumber=number,
            CopySource={"Bucket": bucket_name, "Key": "sealed"},
            CopySourceRange=f"bytes={first}-{last}",
        )
        copies.append({"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]})
    complete(s3, bucket_name, "sealed", again["UploadId"], copies)
    assert s3.get_object(Bucket=bucket_name, Key="sealed")["Body"].read() == body


# -- expiry -----------------------------------------------------------------------------------
def test_expired_uploads_are_aborted_by_the_worker(
    cluster: Federation, plain: Client, bucket: str
) -> None:
    from actors.healing import HealingContext
    from jobs.catalog import build_worker

    s3 = plain.s3
    upload_id, _ = upload(s3, bucket, "forgotten", [os.urandom(PART), os.urandom(MIB)])
    pieces = upload_pieces(cluster, upload_id)
    assert stored(cluster, pieces) == pieces

    async def run(expiry_s: float) -> dict[str, Any]:
        ctx = await HealingContext.connect(cluster.settings, use_ray=False)
        try:
            return await build_worker("upload_expirer", ctx, expiry_s=expiry_s).run_once()
        finally:
            await ctx.close()

    # Not expired yet with the default expiry (7 days).
    assert asyncio.run(run(cluster.settings.upload_expiry_s))["aborted"] == 0
    assert upload_pieces(cluster, upload_id) == pieces
    report = asyncio.run(run(0.0))
    assert report["aborted"] >= 1 and report["pieces"] >= len(pieces)
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="forgotten", UploadId=upload_id)
    assert error_of(exc) == (404, "NoSuchUpload")
    wait_gone(cluster, pieces, "expired upload's pieces deleted")
    audit = cluster.sql(
        "SELECT actor, action FROM audit_log WHERE result LIKE $1", f"ok upload={upload_id}%"
    )
    assert {(a["actor"], a["action"]) for a in audit} >= {
        ("upload_expirer", "AbortMultipartUpload")
    }
